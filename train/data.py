"""Training data: the latent cache (shared by synthetic and real data) and the clip-window datasets.

Latent alignment
----------------
A clip of ``F`` video frames is encoded by the causal VAE (``asymk_core.vae.encode_video``,
normalised latents) as its first ``1 + 4 (N - 1)`` frames, ``N = 1 + (F - 1) // 4`` latents
(``r = 4`` = the VAE's temporal factor). Latent 0 covers video frame 0 alone ("first-frame
special"); latent ``i >= 1`` covers video frames ``r i - r + 1 .. r i`` (:func:`latent_video_frames`).
Training windows never include latent 0, so every window latent covers exactly ``r`` video frames
and its audio is the audio windows of those frames: ``windows(r i - r + 1, r) -> [r, W, L, D]``.
This matches inference, where each generated latent frame decodes to ``r`` video frames.

Cache format (``build_latent_cache`` writes it; real-data preprocessing writes the same)
-----------------------------------------------------------------------------------------
``out_dir/cache.json`` — format version and the parameters every clip shares (latent channels,
latent size, temporal factor, reference window, audio encoder, ...).
``out_dir/manifest.jsonl`` — one JSON line per clip: ``path`` (relative ``.safetensors``),
``identity`` (str), ``split``, ``num_frames`` (video frames encoded), ``fps``, ``num_latents``,
``num_references``, ``reference_sources`` and ``source`` (where the clip came from).
``out_dir/clips/<identity>/<name>.safetensors`` — tensors of one clip:

* ``latents``  float32 ``[C, N, h, w]`` normalised VAE latents of the clip;
* ``audio``    ``[T, L, D]`` the **raw 50 Hz audio features** of the clip's audio (``encode_audio``;
  ``T = samples // 320 + 1``), float32 or float16. Per-video-frame windows are cut at load time
  with exactly :class:`asymk_core.audio.FrameAudioFeatures`' rule (:func:`frame_audio_windows`),
  so the window length is a training choice and the cache stays ~W times smaller;
* ``reference_latents`` float32 ``[K, C, R, h, w]``: TRE encodings (``encode_reference``) of ``K``
  different frames of the same video (plus the neutral portrait first, when the source has one);
  ``R >= kernel_frames + chunk_frames`` (the causal VAE makes shorter windows exact prefixes).

Datasets
--------
:class:`LatentClipDataset` (cache) and :class:`SyntheticClipDataset` (on the fly from the
procedural generator; VAE-encodes every sample, so it is ~10x slower than the cache) return
samples ``{kernel_latents [C, tau, h, w], target_latents [C, num_chunks * n, h, w],
reference_latents [C, tau + n, h, w], audio_features [num_chunks * n, r, W, L, D], identity (int),
clip (int), start (int: first kernel latent)}``. ``dataset[i]`` is a pure function of ``(seed, i)``
for *any* ``i >= 0`` (clip order is a seeded permutation per epoch of ``len(dataset)`` indices).
:func:`make_dataloader` gives process ``rank`` of ``world_size`` the indices
``(b * world_size + rank) * batch_size + j`` for batch ``b``, so ranks see disjoint samples and
resuming at batch ``b`` reproduces the same data order (pass ``start_batch``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..asymk_core.audio import FEATURE_RATE, SAMPLE_RATE, encode_audio, encoder_dims
from ..asymk_core.kclg import (  # noqa: F401  (num_latents_for_frames, latent_video_frames: part of this API)
    audio_window_index,
    latent_video_frames,
    num_latents_for_frames,
    video_frames_for_latents,
)
from ..asymk_core.synthetic.appearance import IDENTITY_TRANSFORM, random_colour_transform
from ..asymk_core.tre import encode_reference
from ..asymk_core.vae import encode_video, spatial_factor, temporal_factor

CACHE_VERSION = 1
CACHE_META = "cache.json"
MANIFEST = "manifest.jsonl"


# ----------------------------------------------------------------------------------- alignment
def frame_audio_windows(features: torch.Tensor, fps: float, start_frame: int, num_frames: int,
                        window: int) -> torch.Tensor:
    """Per-video-frame windows from whole-clip 50 Hz features ``[T, L, D]`` -> float32 ``[n, W, L, D]``,
    zeros outside the audio; the frame -> feature rule is :func:`asymk_core.kclg.audio_window_index`,
    the one :meth:`asymk_core.audio.FrameAudioFeatures.windows` uses."""
    index = torch.from_numpy(audio_window_index(start_frame, num_frames, fps, window, FEATURE_RATE))  # [n, W]
    valid = (index >= 0) & (index < features.shape[0])
    out = features.float()[index.clamp(0, max(features.shape[0] - 1, 0))]
    return out * valid[:, :, None, None].to(out.dtype)


def latent_audio_windows(features: torch.Tensor, fps: float, first_latent: int, num_latents: int, window: int,
                         temporal: int = 4) -> torch.Tensor:
    """Audio for encoder latents ``first_latent .. first_latent + num_latents - 1`` (all ``>= 1``):
    ``[num_latents, r, W, L, D]``; latent ``i`` gets the windows of video frames ``r i - r + 1 .. r i``."""
    if first_latent < 1:
        raise ValueError("latent 0 covers a single video frame; training windows start at latent >= 1")
    start = temporal * first_latent - temporal + 1
    windows = frame_audio_windows(features, fps, start, num_latents * temporal, window)
    return windows.reshape(num_latents, temporal, *windows.shape[1:])


def split_window(latents: torch.Tensor, start: int, kernel_frames: int, target_frames: int):
    """``latents [C, N, ...]`` -> (kernel ``[C, tau, ...]`` = latents ``start .. start + tau - 1``,
    target ``[C, L, ...]`` = the ``target_frames`` latents right after the kernel)."""
    kernel = latents[:, start:start + kernel_frames]
    target = latents[:, start + kernel_frames:start + kernel_frames + target_frames]
    return kernel, target


# -------------------------------------------------------------------------------------- sources
@dataclass
class ClipRecord:
    """One clip to encode: frames uint8 ``[F, H, W, 3]``, audio float32 16 kHz mono, optional portrait."""

    identity: str
    name: str
    split: str
    frames: np.ndarray
    audio: np.ndarray
    fps: float
    portrait: np.ndarray | None = None
    source: str = ""


def _resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or (frames.shape[1] == size and frames.shape[2] == size):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.LANCZOS)) for f in frames])


def iter_corpus_dir(corpus_dir: str | os.PathLike, split: str = "all") -> Iterator[tuple[str, dict, callable]]:
    """Clips of a corpus folder written by ``asymk_core.synthetic.corpus.write_corpus`` (or any folder
    with the same ``manifest.jsonl`` + mp4 layout): ``(key, entry, load() -> ClipRecord)``."""
    from ..asymk_core.synthetic.corpus import read_manifest, select_split

    root = Path(corpus_dir)
    for entry in select_split(read_manifest(root), split):
        key = f"{entry['identity']}/{Path(entry['path']).stem}"

        def load(entry=entry, key=key):
            from PIL import Image

            from ..asymk_core.video_io import read_video

            frames, fps, audio, rate = read_video(root / entry["path"])
            if audio is None:
                raise ValueError(f"{root / entry['path']} has no audio track")
            if rate != SAMPLE_RATE:
                from ..asymk_core.audio import load_audio

                audio = load_audio(audio, rate)
            portrait = None
            if entry.get("portrait") and (root / entry["portrait"]).is_file():
                portrait = np.asarray(Image.open(root / entry["portrait"]).convert("RGB"))
            return ClipRecord(identity=str(entry["identity"]), name=key.split("/")[-1], split=entry.get("split", "train"),
                              frames=frames, audio=np.asarray(audio, np.float32), fps=float(fps), portrait=portrait,
                              source=str(entry["path"]))

        yield key, entry, load


def iter_corpus_spec(spec, split: str = "all") -> Iterator[tuple[str, dict, callable]]:
    """Clips of a ``CorpusSpec`` generated in memory (exact frames and audio, no files)."""
    from ..asymk_core.synthetic.corpus import select_split

    for clip in select_split(spec.clips(), split):
        key = f"{clip.identity}/{clip.utterance}"

        def load(clip=clip):
            sample = clip.sample()
            return ClipRecord(identity=clip.identity, name=clip.utterance, split=clip.split, frames=sample.frames,
                              audio=sample.audio, fps=sample.fps, portrait=sample.portrait,
                              source=f"synthetic:{clip.identity_seed}:{clip.utterance_seed}")

        yield key, clip.manifest_entry(), load


def _resolve_source(source, split: str):
    from ..asymk_core.synthetic.corpus import CorpusSpec

    if isinstance(source, CorpusSpec):
        return iter_corpus_spec(source, split)
    if isinstance(source, (str, os.PathLike)):
        return iter_corpus_dir(source, split)
    if isinstance(source, Iterable):  # ClipRecords
        return ((f"{r.identity}/{r.name}", {}, (lambda r=r: r)) for r in source)
    raise TypeError("source must be a corpus folder, a CorpusSpec or an iterable of ClipRecord")


def _resolve_models(models):
    """An ``AsymKPipeline`` (or anything with ``.vae``/``.audio_encoder``), a dict, or a tuple
    ``(vae, audio_encoder[, feature_extractor])`` -> ``(vae, audio_encoder, feature_extractor)``."""
    if isinstance(models, dict):
        return models["vae"], models["audio_encoder"], models.get("feature_extractor")
    if isinstance(models, (tuple, list)):
        return (*models, None)[:3] if len(models) == 2 else tuple(models[:3])
    return models.vae, models.audio_encoder, getattr(models, "feature_extractor", None)


# ---------------------------------------------------------------------------------------- encode
def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> float ``[1, 3, F, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
    return x.permute(3, 0, 1, 2).unsqueeze(0)


@torch.no_grad()
def encode_clip_latents(vae, frames: np.ndarray, max_frames_per_call: int | None = None) -> torch.Tensor:
    """Normalised latents ``[C, N, h, w]`` of a clip (``N = 1 + (F - 1) // 4``); one causal pass."""
    r = temporal_factor(vae)
    n = num_latents_for_frames(len(frames), r)
    video = video_tensor(frames[: 1 + r * (n - 1)]).to(vae.device)
    return encode_video(vae, video)[0].float().cpu()


def reference_frame_indices(num_frames: int, count: int, seed: int) -> list[int]:
    """``count`` distinct frames spread over the clip (one random frame per equal segment)."""
    count = max(1, min(count, num_frames))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, num_frames, count + 1)
    return sorted({int(rng.integers(int(edges[k]), max(int(edges[k]) + 1, int(edges[k + 1])))) for k in range(count)})


@torch.no_grad()
def encode_references(vae, images: np.ndarray, window: int) -> torch.Tensor:
    """uint8 ``[K, H, W, 3]`` -> TRE reference latents ``[K, C, window, h, w]``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0).permute(0, 3, 1, 2)
    return encode_reference(vae, x.to(vae.device), window).float().cpu()


def _stable_seed(*parts) -> int:
    import zlib

    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def build_latent_cache(models, source, out_dir: str | os.PathLike, *, reference_window: int = 7,
                       num_references: int = 4, include_portrait: bool = True, split: str = "all",
                       size: int | None = None, audio_dtype: torch.dtype = torch.float32, seed: int = 0,
                       rank: int = 0, world_size: int = 1, colour_jitter: float = 0.0,
                       progress: bool = True) -> list[dict]:
    """Encode clips into the latent cache (format: module docstring) and return the manifest entries.

    ``models``: an ``AsymKPipeline``, ``{"vae", "audio_encoder", "feature_extractor"}`` or a tuple.
    ``source``: a corpus folder (``manifest.jsonl`` + mp4, e.g. ``asymk-talker synth``), a
    ``CorpusSpec`` (generated in memory, exact) or an iterable of :class:`ClipRecord`.
    ``reference_window``: latent frames of each TRE reference (>= kernel + chunk frames of every
    model that will train on the cache). ``size``: resize frames to ``size`` x ``size`` if given.
    Resumable: existing clip files are kept; files are written under a temporary name and renamed.
    With ``world_size > 1`` process ``rank`` encodes every ``world_size``-th clip and only rank 0
    writes the manifest (call it again with ``rank=0, world_size=1`` after all ranks finished, it
    only reads the existing files). ``colour_jitter``: the probability that a clip gets a random
    colour transform (``synthetic.appearance``), applied alike to its frames and its portrait before
    encoding, so the video and its references keep agreeing; drawn from ``(seed, clip)``.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    vae, audio_encoder, feature_extractor = _resolve_models(models)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers, dim = encoder_dims(audio_encoder)
    meta = {
        "version": CACHE_VERSION, "latent_channels": int(vae.config.z_dim), "temporal_factor": temporal_factor(vae),
        "spatial_factor": spatial_factor(vae), "reference_window": int(reference_window),
        "audio": {"encoder": type(audio_encoder).__name__, "layers": layers, "dim": dim, "rate": FEATURE_RATE},
        "latents_mean": [float(v) for v in vae.config.latents_mean],
        "latents_std": [float(v) for v in vae.config.latents_std],
    }
    meta_path = out / CACHE_META
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old != meta:
            raise ValueError(f"{out} holds a cache made with other parameters ({old}); choose a new folder")
    elif rank == 0:
        _write_text(meta_path, json.dumps(meta, indent=2) + "\n")

    items = list(_resolve_source(source, split))
    entries = []
    for number, (key, _, load) in enumerate(tqdm(items, desc="latents", unit="clip", disable=not progress)):
        identity, name = key.split("/", 1)
        rel = f"clips/{identity}/{name}.safetensors"
        path = out / rel
        if not path.is_file():
            if number % world_size != rank:
                continue
            record = load()
            frames = _resize_frames(record.frames, size)
            portrait = record.portrait
            transform = IDENTITY_TRANSFORM
            if colour_jitter > 0:
                rng = np.random.default_rng(_stable_seed(seed, key, "colour"))
                transform = random_colour_transform(rng, probability=colour_jitter)
                frames = transform(frames)
                portrait = None if portrait is None else transform(portrait)
            latents = encode_clip_latents(vae, frames)
            audio = encode_audio(audio_encoder, record.audio, feature_extractor).to(audio_dtype)
            frame_ids = reference_frame_indices(len(frames), num_references, _stable_seed(seed, key))
            images = [frames[i] for i in frame_ids]
            sources = [f"frame:{i}" for i in frame_ids]
            if include_portrait and portrait is not None:
                images.insert(0, _resize_frames(portrait[None], size or frames.shape[1])[0])
                sources.insert(0, "portrait")
            references = encode_references(vae, np.stack(images), reference_window)
            num_frames = video_frames_for_latents(latents.shape[1], temporal_factor(vae))
            metadata = {"identity": record.identity, "split": record.split, "fps": repr(float(record.fps)),
                        "num_frames": str(num_frames), "reference_sources": json.dumps(sources),
                        "source": record.source,
                        "colour_transform": json.dumps([transform.matrix.tolist(), transform.offset.tolist()])}
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            save_file({"latents": latents.contiguous(), "audio": audio.contiguous(),
                       "reference_latents": references.contiguous()}, str(temporary), metadata=metadata)
            os.replace(temporary, path)
        with safe_open(str(path), "pt") as handle:
            m = handle.metadata()
            shape = handle.get_slice("latents").get_shape()
            refs = handle.get_slice("reference_latents").get_shape()
        entries.append({"path": rel, "identity": m["identity"], "split": m["split"], "num_frames": int(m["num_frames"]),
                        "fps": float(m["fps"]), "num_latents": int(shape[1]), "num_references": int(refs[0]),
                        "reference_sources": json.loads(m["reference_sources"]), "source": m.get("source", "")})
    if rank == 0 and world_size == 1:
        _write_text(out / MANIFEST, "".join(json.dumps(e) + "\n" for e in entries))
    return entries


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def read_cache_manifest(cache_dir: str | os.PathLike) -> tuple[dict, list[dict]]:
    """``(cache.json, manifest entries)`` of a latent cache folder."""
    root = Path(cache_dir)
    if not (root / MANIFEST).is_file() or not (root / CACHE_META).is_file():
        raise FileNotFoundError(f"{root} is not a latent cache (needs {CACHE_META} and {MANIFEST}); build it with "
                                "`python -m asymk_talker.train.data --help`")
    meta = json.loads((root / CACHE_META).read_text())
    entries = [json.loads(line) for line in (root / MANIFEST).read_text().splitlines() if line.strip()]
    return meta, entries


# -------------------------------------------------------------------------------------- datasets
class _WindowDataset(Dataset):
    """Index bookkeeping shared by the datasets: ``dataset[i]`` for any ``i >= 0``."""

    seed: int
    num_items: int

    def __len__(self) -> int:
        return self.num_items

    def _item(self, index: int) -> tuple[int, np.random.Generator]:
        """(item within the epoch's seeded permutation, per-index RNG)."""
        if index < 0:
            raise IndexError(index)
        epoch, position = divmod(int(index), self.num_items)
        cached = getattr(self, "_order", None)
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.num_items))
            self._order = cached
        return int(cached[1][position]), np.random.default_rng([self.seed, int(index)])


def _check_frames(kernel_frames: int, chunk_frames: int, num_chunks: int) -> None:
    for name, value in (("kernel_frames", kernel_frames), ("chunk_frames", chunk_frames), ("num_chunks", num_chunks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class LatentClipDataset(_WindowDataset):
    """Windows of cached clips: ``tau`` kernel latents, then ``num_chunks * n`` target latents.

    ``LatentClipDataset(cache_dir, kernel_frames, chunk_frames, num_chunks=1, split="train", seed=0)``.
    The window starts at a random latent ``s >= 1`` (never the first-frame latent 0); sample keys and
    shapes are in the module docstring. ``kernel_latents`` is the ground-truth kernel of chunk 0;
    for chunk ``k > 0`` the GT kernel is the last ``tau`` latents before it in
    ``[kernel_latents | target_latents]`` (:func:`gt_kernel`). The reference is one of the clip's
    cached TRE encodings chosen at random (``reference="random"``), always the first one
    (``"first"``: the portrait when the cache has it) or the ``"portrait"``.

    ``split``: a manifest split name, ``"heldout"`` (every ``heldout*`` split) or ``"all"``.
    ``identity`` is the index of the clip's identity in the sorted identities of the whole cache.
    ``in_memory=True`` loads every clip once (small caches); otherwise each sample reads its slices
    lazily with safetensors.
    """

    def __init__(self, cache_dir: str | os.PathLike, kernel_frames: int, chunk_frames: int, num_chunks: int = 1,
                 split: str = "train", seed: int = 0, audio_window: int = 5, reference: str = "random",
                 in_memory: bool = False):
        _check_frames(kernel_frames, chunk_frames, num_chunks)
        if reference not in ("random", "first", "portrait"):
            raise ValueError(f"reference must be 'random', 'first' or 'portrait', got {reference!r}")
        self.root = Path(cache_dir)
        self.meta, entries = read_cache_manifest(self.root)
        self.kernel_frames, self.chunk_frames, self.num_chunks = kernel_frames, chunk_frames, num_chunks
        self.target_frames = chunk_frames * num_chunks
        self.window_frames = kernel_frames + self.target_frames
        self.reference_frames = kernel_frames + chunk_frames
        if self.reference_frames > int(self.meta["reference_window"]):
            raise ValueError(f"the cache's references have {self.meta['reference_window']} latent frames, fewer than "
                             f"kernel_frames + chunk_frames = {self.reference_frames}; rebuild it with a larger "
                             "reference_window")
        self.temporal = int(self.meta["temporal_factor"])
        self.audio_window, self.reference, self.seed = int(audio_window), reference, int(seed)
        identities = sorted({e["identity"] for e in entries})
        self.identity_index = {name: k for k, name in enumerate(identities)}
        if split == "all":
            chosen = entries
        elif split == "heldout":
            chosen = [e for e in entries if str(e["split"]).startswith("heldout")]
        else:
            chosen = [e for e in entries if e["split"] == split]
        # Latent 0 is excluded, so a clip needs 1 + window latents.
        self.entries = [e for e in chosen if e["num_latents"] >= 1 + self.window_frames]
        self.skipped = len(chosen) - len(self.entries)
        if not self.entries:
            raise ValueError(f"no clip of split {split!r} in {self.root} has the {1 + self.window_frames} latents "
                             f"a window of {kernel_frames} + {num_chunks} x {chunk_frames} needs")
        if reference == "portrait" and any("portrait" not in e.get("reference_sources", []) for e in self.entries):
            raise ValueError("reference='portrait' needs a cache built from a source with portraits")
        self.num_items = len(self.entries)
        self._memory = [self._load(e) for e in self.entries] if in_memory else None

    def _load(self, entry: dict) -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.root / entry["path"]))

    def __getitem__(self, index: int) -> dict:
        from safetensors import safe_open

        item, rng = self._item(index)
        entry = self.entries[item]
        start = int(rng.integers(1, entry["num_latents"] - self.window_frames + 1))
        sources = entry.get("reference_sources") or []
        if self.reference == "random":
            ref = int(rng.integers(entry["num_references"]))
        else:
            ref = sources.index("portrait") if self.reference == "portrait" else 0
        stop = start + self.window_frames
        if self._memory is not None:
            tensors = self._memory[item]
            window = tensors["latents"][:, start:stop]
            reference = tensors["reference_latents"][ref, :, :self.reference_frames]
            audio = tensors["audio"]
        else:
            with safe_open(str(self.root / entry["path"]), "pt") as handle:
                window = handle.get_slice("latents")[:, start:stop]
                reference = handle.get_slice("reference_latents")[ref:ref + 1, :, :self.reference_frames][0]
                audio = handle.get_tensor("audio")
        kernel, target = split_window(window, 0, self.kernel_frames, self.target_frames)
        audio_features = latent_audio_windows(audio, entry["fps"], start + self.kernel_frames, self.target_frames,
                                              self.audio_window, self.temporal)
        return {"kernel_latents": kernel.float().contiguous(), "target_latents": target.float().contiguous(),
                "reference_latents": reference.float().contiguous(), "audio_features": audio_features,
                "identity": self.identity_index[entry["identity"]], "clip": item, "start": start}


class SyntheticClipDataset(_WindowDataset):
    """The same samples as :class:`LatentClipDataset`, generated on the fly from the procedural corpus.

    Each sample renders a fresh clip (``asymk_core.synthetic.corpus.random_sample``: train split =
    even seeds only), VAE-encodes it (plus a random prefix of 0..3 latents so the window does not
    always follow the first-frame latent) and TRE-encodes the identity's portrait (``reference=
    "portrait"``) or a random frame (``"random"``: portrait or frame, 50/50). Unlimited variety, but
    every sample costs a VAE pass: use the cache for long runs. ``len()`` is ``epoch_size``.
    """

    def __init__(self, vae, audio_encoder, kernel_frames: int, chunk_frames: int, num_chunks: int = 1,
                 split: str = "train", seed: int = 0, audio_window: int = 5, size: int = 64, fps: float = 25.0,
                 num_identities: int | None = None, reference: str = "random", epoch_size: int = 1000,
                 feature_extractor=None):
        _check_frames(kernel_frames, chunk_frames, num_chunks)
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        self.vae, self.audio_encoder, self.feature_extractor = vae, audio_encoder, feature_extractor
        self.kernel_frames, self.chunk_frames, self.num_chunks = kernel_frames, chunk_frames, num_chunks
        self.target_frames = chunk_frames * num_chunks
        self.window_frames = kernel_frames + self.target_frames
        self.reference_frames = kernel_frames + chunk_frames
        self.temporal = temporal_factor(vae)
        self.split, self.seed, self.audio_window, self.size, self.fps = split, int(seed), int(audio_window), size, fps
        self.num_identities, self.reference, self.num_items = num_identities, reference, int(epoch_size)

    @torch.no_grad()
    def __getitem__(self, index: int) -> dict:
        from ..asymk_core.synthetic.corpus import random_sample

        _, rng = self._item(index)
        prefix = int(rng.integers(0, 4))
        num_latents = 1 + prefix + self.window_frames
        num_frames = 1 + self.temporal * (num_latents - 1)
        sample = random_sample(rng, num_frames / self.fps, split=self.split, num_identities=self.num_identities,
                               size=self.size, fps=self.fps)
        frames = sample.frames[:num_frames]
        latents = encode_clip_latents(self.vae, frames)
        audio = encode_audio(self.audio_encoder, sample.audio, self.feature_extractor)
        start = 1 + prefix
        if self.reference == "portrait" or rng.random() < 0.5:
            image = sample.portrait
        else:
            image = frames[int(rng.integers(len(frames)))]
        reference = encode_references(self.vae, image[None], self.reference_frames)[0]
        kernel, target = split_window(latents, start, self.kernel_frames, self.target_frames)
        audio_features = latent_audio_windows(audio, sample.fps, start + self.kernel_frames, self.target_frames,
                                              self.audio_window, self.temporal)
        return {"kernel_latents": kernel.contiguous(), "target_latents": target.contiguous(),
                "reference_latents": reference.contiguous(), "audio_features": audio_features,
                "identity": int(sample.identity_seed % (2**31)), "clip": int(index), "start": start}


def gt_kernel(kernel_latents: torch.Tensor, target_latents: torch.Tensor, chunk_index: int,
              chunk_frames: int) -> torch.Tensor:
    """Ground-truth kernel of chunk ``chunk_index`` of a batch: the last ``tau`` latents before it in
    ``[kernel | target]`` (dim 2 is time; chunk 0 -> ``kernel_latents``)."""
    tau = kernel_latents.shape[2]
    window = torch.cat([kernel_latents, target_latents], dim=2)
    start = chunk_index * chunk_frames
    return window[:, :, start:start + tau]


def chunk_slice(tensor: torch.Tensor, chunk_index: int, chunk_frames: int, dim: int = 2) -> torch.Tensor:
    """Chunk ``chunk_index`` of ``target_latents`` (``dim=2``) or ``audio_features`` (``dim=1``)."""
    return tensor.narrow(dim, chunk_index * chunk_frames, chunk_frames)


# ------------------------------------------------------------------------------------ loading
class ShardedBatchSampler(Sampler):
    """Infinite batches of dataset indices: batch ``b`` of process ``rank`` is
    ``[(b * world_size + rank) * batch_size + j for j < batch_size]``, for ``b >= start_batch``."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1, start_batch: int = 0):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sharding: batch_size={batch_size} rank={rank} world_size={world_size}")
        self.batch_size, self.rank, self.world_size, self.start_batch = batch_size, rank, world_size, start_batch

    def batch_indices(self, batch: int) -> list[int]:
        first = (batch * self.world_size + self.rank) * self.batch_size
        return list(range(first, first + self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        while True:
            yield self.batch_indices(batch)
            batch += 1


def make_dataloader(dataset: Dataset, batch_size: int, *, accelerator=None, rank: int | None = None,
                    world_size: int | None = None, start_batch: int = 0, num_workers: int = 0) -> DataLoader:
    """An infinite, deterministic, sharded ``DataLoader`` over ``dataset`` (not to be passed to
    ``accelerator.prepare``: sharding is already done). ``rank``/``world_size`` default to the
    accelerator's process index/count (or 0/1). Resume with ``start_batch`` = micro-batches done."""
    if rank is None:
        rank = accelerator.process_index if accelerator is not None else 0
    if world_size is None:
        world_size = accelerator.num_processes if accelerator is not None else 1
    sampler = ShardedBatchSampler(batch_size, rank, world_size, start_batch)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


# -------------------------------------------------------------------------------------------- CLI
def main(argv=None) -> None:
    """``python -m asymk_talker.train.data --vae VAE_DIR --out CACHE_DIR (--corpus DIR | --identities N ...)``"""
    import argparse

    from diffusers import AutoencoderKLWan

    from ..asymk_core.audio import LogMelAudioEncoder
    from ..asymk_core.synthetic.corpus import CORPUS_VARIETIES, CorpusSpec

    parser = argparse.ArgumentParser(description="Build the latent cache (VAE latents, audio features, TRE "
                                                 "references) from a corpus folder or the synthetic generator.")
    parser.add_argument("--out", required=True, help="cache folder (resumable)")
    parser.add_argument("--vae", help="AutoencoderKLWan folder (e.g. runs/vae-synthetic/vae)")
    parser.add_argument("--pipeline", help="or a pipeline folder: uses its vae, audio_encoder, feature_extractor")
    parser.add_argument("--corpus", help="corpus folder with manifest.jsonl (asymk-talker synth); else generate")
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=4, help="utterances per identity")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--corpus-seed", type=int, default=0)
    parser.add_argument("--variety", default="classic", choices=list(CORPUS_VARIETIES),
                        help="appearance distribution of generated identities (mixed: classic and wide alternate)")
    parser.add_argument("--heldout-identities", type=int, help="held-out identities (default: a fifth)")
    parser.add_argument("--colour-jitter", type=float, default=0.0,
                        help="probability of a random colour transform per clip, applied alike to video and references")
    parser.add_argument("--split", default="all")
    parser.add_argument("--reference-window", type=int, default=7)
    parser.add_argument("--num-references", type=int, default=4)
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world-size", type=int, default=1)
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.pipeline:
        from ..pipelines.pipeline_asymk import AsymKPipeline

        models = AsymKPipeline.from_pretrained(args.pipeline)
    elif args.vae:
        models = (AutoencoderKLWan.from_pretrained(args.vae).eval(), LogMelAudioEncoder())
    else:
        parser.error("pass --vae or --pipeline")
    source = args.corpus or CorpusSpec(identities=args.identities, seconds=args.seconds, size=args.size, fps=args.fps,
                                       seed=args.corpus_seed, utterances_per_identity=args.utterances,
                                       heldout_identities=args.heldout_identities, variety=args.variety)
    if not 0.0 <= args.colour_jitter <= 1.0:
        parser.error(f"--colour-jitter must be a probability in [0, 1], got {args.colour_jitter}")
    entries = build_latent_cache(models, source, args.out, reference_window=args.reference_window,
                                 num_references=args.num_references, split=args.split,
                                 size=args.size if args.corpus else None, rank=args.rank, world_size=args.world_size,
                                 colour_jitter=args.colour_jitter)
    print(f"{len(entries)} clips in {args.out}")


if __name__ == "__main__":
    main()
