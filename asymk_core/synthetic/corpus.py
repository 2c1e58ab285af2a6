"""The synthetic talking-avatar corpus: samples in memory, and an HDTF-like folder on disk.

Seeds and splits. Every seed is a 31-bit integer; *train* seeds are even and *held-out* seeds are
odd, for identities and utterances alike (:func:`split_seed`). So a model trained on samples from
:func:`random_sample` (``split="train"``) never sees a held-out identity or utterance, whichever
corpus is written later. A written corpus has three splits:

* ``train`` — train identity, train utterance;
* ``heldout_utterance`` — train identity, held-out utterance;
* ``heldout_identity`` — held-out identity (all of its utterances are held out too).

Folder layout written by :func:`write_corpus`::

    out_dir/corpus.json                      parameters of the corpus
    out_dir/manifest.jsonl                   one line per clip (see ClipSpec.manifest_entry)
    out_dir/portraits/<identity>.png         neutral reference image of each identity
    out_dir/clips/<identity>/<utterance>.mp4 H.264 video + AAC audio
    out_dir/clips/<identity>/<utterance>.npz per-frame tracks + phonetic track (JSON)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import input_error
from .avatar import NEUTRAL_WIDTH, VARIETIES, make_identity, motion_tracks, render_frames, render_portrait
from .speech import (
    SAMPLE_RATE, Segment, articulation_targets, derive_seed, synthesize_speech, track_to_json, voice_for_seed,
)

SPLITS = ("train", "heldout_utterance", "heldout_identity")
TRACK_KEYS = ("mouth_open", "mouth_width", "head_dx", "head_dy", "head_roll", "blink")


def split_seed(kind: str, *parts: int | str, heldout: bool = False) -> int:
    """A seed derived from ``(kind, *parts)``: even for train, odd for held-out."""
    base = derive_seed(kind, *parts) & ~1
    return base | 1 if heldout else base


def is_heldout_seed(seed: int) -> bool:
    return int(seed) % 2 == 1


@dataclass
class Sample:
    """One clip in memory.

    ``frames`` uint8 [N, H, W, 3]; ``audio`` float32 [round(seconds * 16000)]; ``tracks``: float32
    [N] arrays :data:`TRACK_KEYS` plus ``identity`` [29]; ``phones``: the phonetic track;
    ``portrait`` uint8 [H, W, 3] (neutral reference of the identity). Frame k is at time k / fps.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    tracks: dict[str, np.ndarray]
    phones: list[Segment]
    portrait: np.ndarray
    identity_seed: int
    utterance_seed: int
    motion_seed: int
    variety: str = "classic"
    regions: np.ndarray | None = None  # uint8 [N, H, W] avatar.REGIONS codes, when asked for
    portrait_regions: np.ndarray | None = None  # uint8 [H, W] the same for the portrait

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def make_sample(identity_seed: int, utterance_seed: int, seconds: float, *, size: int = 64, fps: float = 25.0,
                motion_seed: int | None = None, render: bool = True, variety: str = "classic",
                regions: bool = False) -> Sample:
    """Generate a clip in memory (no files). The voice comes from the identity, the words and
    prosody from the utterance; ``motion_seed`` defaults to one derived from both. ``render=False``
    skips the frames (``frames`` is then an empty [0, H, W, 3] array) for audio/track-only use.
    ``variety`` picks the appearance distribution (``avatar.VARIETIES``); ``regions=True`` also
    returns the per-pixel region labels of every frame."""
    if not isinstance(seconds, (int, float)) or not seconds > 0:
        raise input_error("seconds", f"got {seconds!r}", "pass a positive duration in seconds")
    if not fps or fps <= 0:
        raise input_error("fps", f"got {fps!r}", "pass a positive frame rate such as 25")
    num_frames = int(round(seconds * fps))
    if num_frames < 1:
        raise input_error("seconds", f"{seconds} s at {fps} fps is less than one frame", "pass a longer duration")
    if motion_seed is None:
        motion_seed = derive_seed("motion", identity_seed, utterance_seed)
    audio, phones = synthesize_speech(utterance_seed, float(seconds), voice=voice_for_seed(identity_seed))
    mouth_open, mouth_width = articulation_targets(phones, fps, num_frames)
    motion = motion_tracks(motion_seed, num_frames, fps)
    ident = make_identity(identity_seed, variety)
    labels = None
    if render and regions:
        frames, labels = render_frames(ident, mouth_open, mouth_width, size=size, regions=True, **motion)
    elif render:
        frames = render_frames(ident, mouth_open, mouth_width, size=size, **motion)
    else:
        frames = np.zeros((0, size, size, 3), np.uint8)
    tracks = {"mouth_open": mouth_open, "mouth_width": mouth_width, **motion, "identity": ident.vector()}
    return Sample(frames=frames, audio=audio, sample_rate=SAMPLE_RATE, fps=float(fps), tracks=tracks, phones=phones,
                  portrait=render_portrait(identity_seed, size, variety), identity_seed=int(identity_seed),
                  utterance_seed=int(utterance_seed), motion_seed=int(motion_seed), variety=variety, regions=labels,
                  portrait_regions=render_frames(ident, [0.0], [NEUTRAL_WIDTH], size=size, regions=True)[1][0]
                  if regions else None)


def random_sample(rng: np.random.Generator, seconds: float, *, split: str = "train", num_identities: int | None = None,
                  size: int = 64, fps: float = 25.0, variety: str = "classic", regions: bool = False) -> Sample:
    """A random clip for on-the-fly training (``split="train"``: even seeds only) or evaluation
    (``"heldout"``: odd seeds). ``num_identities`` limits the identity pool to that many
    identities (``None``: effectively unlimited)."""
    if split not in ("train", "heldout"):
        raise input_error("split", f"got {split!r}", "use 'train' or 'heldout'")
    heldout = split == "heldout"
    k = int(rng.integers(num_identities if num_identities else 2**30))
    identity = split_seed("identity", "pool", k, heldout=heldout)
    utterance = split_seed("utterance", "pool", int(rng.integers(2**30)), heldout=heldout)
    return make_sample(identity, utterance, seconds, size=size, fps=fps, variety=variety, regions=regions)


@dataclass(frozen=True)
class ClipSpec:
    """One clip of a written corpus."""

    identity: str
    identity_seed: int
    utterance: str
    utterance_seed: int
    motion_seed: int
    split: str
    seconds: float
    fps: float
    size: int
    variety: str = "classic"

    @property
    def video_path(self) -> str:
        return f"clips/{self.identity}/{self.utterance}.mp4"

    @property
    def tracks_path(self) -> str:
        return f"clips/{self.identity}/{self.utterance}.npz"

    @property
    def portrait_path(self) -> str:
        return f"portraits/{self.identity}.png"

    def manifest_entry(self) -> dict:
        return {"path": self.video_path, "tracks": self.tracks_path, "portrait": self.portrait_path,
                "identity": self.identity, "identity_seed": self.identity_seed, "utterance": self.utterance,
                "utterance_seed": self.utterance_seed, "motion_seed": self.motion_seed, "split": self.split,
                "duration": self.seconds, "num_frames": int(round(self.seconds * self.fps)), "fps": self.fps,
                "size": self.size, "sample_rate": SAMPLE_RATE}

    def sample(self, render: bool = True, regions: bool = False) -> Sample:
        return make_sample(self.identity_seed, self.utterance_seed, self.seconds, size=self.size, fps=self.fps,
                           motion_seed=self.motion_seed, render=render, variety=self.variety, regions=regions)


CORPUS_VARIETIES = (*VARIETIES, "mixed")


def resolve_variety(variety: str, index: int) -> str:
    """The ``avatar.VARIETIES`` name of item ``index`` of a ``variety`` corpus ("mixed": classic for
    even indices, wide for odd ones)."""
    return VARIETIES[index % 2] if variety == "mixed" else variety


@dataclass(frozen=True)
class CorpusSpec:
    """Parameters of a corpus; :meth:`clips` lists its clips (deterministic)."""

    identities: int
    seconds: float
    size: int = 64
    fps: float = 25.0
    seed: int = 0
    heldout_identities: int | None = None   # default: max(1, identities // 5) when identities >= 2
    utterances_per_identity: int = 4
    heldout_utterances: int = 1             # per train identity
    variety: str = "classic"                # an ``avatar.VARIETIES`` name, or "mixed" (alternate per identity)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.identities, int) or self.identities < 1:
            raise input_error("identities", f"got {self.identities!r}", "pass a positive number of identities")
        if not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
            raise input_error("seconds", f"got {self.seconds!r}", "pass a positive clip length in seconds")
        if not isinstance(self.size, int) or self.size < 16:
            raise input_error("size", f"got {self.size!r}",
                              "pass an image size of at least 16 pixels (64 is the default)")
        if not self.fps or self.fps <= 0:
            raise input_error("fps", f"got {self.fps!r}", "pass a positive frame rate such as 25")
        if not isinstance(self.utterances_per_identity, int) or self.utterances_per_identity < 1:
            raise input_error("utterances_per_identity", f"got {self.utterances_per_identity!r}", "pass at least 1")
        if not 0 <= self.heldout_utterances < self.utterances_per_identity and self.utterances_per_identity > 1:
            raise input_error("heldout_utterances", f"got {self.heldout_utterances!r}",
                              f"pass 0 .. {self.utterances_per_identity - 1} (fewer than utterances_per_identity)")
        if self.variety not in CORPUS_VARIETIES:
            raise input_error("variety", f"got {self.variety!r}", f"use one of {list(CORPUS_VARIETIES)}")
        if self.num_heldout_identities >= self.identities and self.identities > 1:
            raise input_error("heldout_identities", f"got {self.heldout_identities!r} of {self.identities}",
                              "keep at least one training identity")

    @property
    def num_heldout_identities(self) -> int:
        if self.heldout_identities is not None:
            return int(self.heldout_identities)
        return max(1, self.identities // 5) if self.identities >= 2 else 0

    def clips(self) -> list[ClipSpec]:
        out = []
        n_train = self.identities - self.num_heldout_identities
        held_utts = self.heldout_utterances if self.utterances_per_identity > 1 else 0
        for i in range(self.identities):
            id_held = i >= n_train
            identity_seed = split_seed("identity", self.seed, i, heldout=id_held)
            for j in range(self.utterances_per_identity):
                utt_held = id_held or j >= self.utterances_per_identity - held_utts
                utterance_seed = split_seed("utterance", self.seed, i, j, heldout=utt_held)
                split = "heldout_identity" if id_held else ("heldout_utterance" if utt_held else "train")
                out.append(ClipSpec(identity=f"id{i:04d}", identity_seed=identity_seed, utterance=f"utt{j:03d}",
                                    utterance_seed=utterance_seed,
                                    motion_seed=derive_seed("motion", self.seed, identity_seed, utterance_seed),
                                    split=split, seconds=float(self.seconds), fps=float(self.fps), size=self.size,
                                    variety=self.identity_variety(i)))
        return out

    def identity_variety(self, index: int) -> str:
        """The appearance variety of identity ``index`` (:func:`resolve_variety`)."""
        return resolve_variety(self.variety, index)

    def to_json(self) -> dict:
        d = asdict(self)
        d["heldout_identities"] = self.num_heldout_identities
        d.pop("extra")
        if d["variety"] == "classic":  # corpora written before varieties existed keep resuming
            d.pop("variety")
        return d


def select_split(clips, split: str):
    """Filter clips (ClipSpec or manifest dicts) by split: one of :data:`SPLITS`, ``"heldout"``
    (both held-out kinds) or ``"all"``."""
    if split not in SPLITS + ("heldout", "all"):
        raise input_error("split", f"got {split!r}", f"use one of {', '.join(SPLITS + ('heldout', 'all'))}")
    get = (lambda c: c["split"]) if clips and isinstance(clips[0], dict) else (lambda c: c.split)
    if split == "all":
        return list(clips)
    if split == "heldout":
        return [c for c in clips if get(c).startswith("heldout")]
    return [c for c in clips if get(c) == split]


def write_corpus(out_dir, identities: int, seconds: float, *, size: int = 64, fps: float = 25.0, seed: int = 0,
                 heldout_identities: int | None = None, utterances_per_identity: int = 4, heldout_utterances: int = 1,
                 progress: bool = True) -> list[dict]:
    """Write the corpus folder (layout in the module docstring) and return the manifest entries.

    Deterministic from the arguments. Resumable: clips whose ``.mp4`` and ``.npz`` both exist are
    skipped; every file is written to a temporary name and renamed, so an interrupted run leaves no
    partial file. Re-running into a folder made with different parameters is refused.
    """
    from tqdm.auto import tqdm

    from ..video_io import VideoWriter

    spec = CorpusSpec(identities=identities, seconds=seconds, size=size, fps=fps, seed=seed,
                      heldout_identities=heldout_identities, utterances_per_identity=utterances_per_identity,
                      heldout_utterances=heldout_utterances)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise input_error("out_dir", f"{out} is a file", "pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "corpus.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old != spec.to_json():
            raise input_error("out_dir", f"{out} holds a corpus with other parameters ({old})",
                              "choose a new folder, or repeat the original parameters to resume")
    else:
        _atomic_write_text(meta_path, json.dumps(spec.to_json(), indent=2) + "\n")
    clips = spec.clips()
    for clip in tqdm(clips, desc="synth", unit="clip", disable=not progress):
        portrait = out / clip.portrait_path
        if not portrait.exists():
            portrait.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_png(portrait, render_portrait(clip.identity_seed, size))
        video, tracks = out / clip.video_path, out / clip.tracks_path
        if video.exists() and tracks.exists():
            continue
        video.parent.mkdir(parents=True, exist_ok=True)
        sample = clip.sample()
        if not video.exists():
            with VideoWriter(str(video), clip.fps, size, size, audio=sample.audio,
                             audio_sample_rate=SAMPLE_RATE) as writer:
                writer.write(sample.frames)
        arrays = {k: sample.tracks[k] for k in TRACK_KEYS + ("identity",)}
        arrays["phones_json"] = np.array(json.dumps(track_to_json(sample.phones)))
        tmp = tracks.with_name(tracks.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, tracks)
    entries = [c.manifest_entry() for c in clips]
    _atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(e) + "\n" for e in entries))
    return entries


def read_manifest(corpus_dir) -> list[dict]:
    """The manifest entries of a written corpus."""
    path = Path(corpus_dir) / "manifest.jsonl"
    if not path.exists():
        raise input_error("corpus_dir", f"{path} does not exist",
                          "write the corpus first (asymk-talker synth --out DIR)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_tracks(path) -> tuple[dict[str, np.ndarray], list[Segment]]:
    """Read a clip's ``.npz``: (tracks dict, phonetic track)."""
    from .speech import track_from_json

    with np.load(path) as data:
        tracks = {k: data[k] for k in data.files if k != "phones_json"}
        phones = track_from_json(json.loads(str(data["phones_json"])))
    return tracks, phones


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
