"""Synthetic corpus: speech, articulation, avatar renderer, corpus writer (fast, deterministic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asymk_talker.asymk_core.synthetic.avatar import make_identity, motion_tracks, render_frames, render_portrait
from asymk_talker.asymk_core.synthetic.corpus import (
    CorpusSpec, is_heldout_seed, make_sample, random_sample, select_split, split_seed,
)
from asymk_talker.asymk_core.synthetic.speech import (
    SAMPLE_RATE, VOWELS, articulation_at, articulation_targets, phonetic_track, synthesize_speech,
)


def test_speech_is_deterministic_and_speech_like():
    a, track_a = synthesize_speech(7, 4.0)
    b, track_b = synthesize_speech(7, 4.0)
    c, _ = synthesize_speech(8, 4.0)
    assert a.dtype == np.float32 and a.shape == (4 * SAMPLE_RATE,)
    assert np.array_equal(a, b) and track_a == track_b
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0 and np.isfinite(a).all()
    # contiguous track covering the clip; vowels much louder than pauses
    assert track_a[0].start_s == 0.0 and track_a[-1].end_s == pytest.approx(4.0)
    assert all(abs(s.end_s - n.start_s) < 1e-5 for s, n in zip(track_a, track_a[1:]))

    def rms(phones):
        parts = [a[int(s.start_s * SAMPLE_RATE):int(s.end_s * SAMPLE_RATE)] for s in track_a if s.phone in phones]
        return float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))

    assert rms(VOWELS) > 20 * rms(("sil",))


def test_mouth_track_follows_phones():
    track = phonetic_track(3, 30.0)

    def mid(seg):
        return (seg.start_s + seg.end_s) / 2

    def values(phones, min_len=0.0):
        segs = [s for s in track if s.phone in phones and s.end_s - s.start_s >= min_len]
        assert segs, phones
        return articulation_at(track, [mid(s) for s in segs])

    pause_open, _ = values(("sil",), min_len=0.12)
    assert pause_open.max() < 0.05
    bilabial_open, _ = values(("p", "b", "m"))
    assert bilabial_open.max() < 0.15
    a_open, _ = values(("a",), min_len=0.1)
    assert a_open.mean() > 0.6 and a_open.min() > 0.35
    _, i_width = values(("i",))
    _, u_width = values(("u",))
    assert i_width.mean() > u_width.mean() + 0.4
    # frames at 25 fps with a 40 ms lip lead = the articulation 40 ms later
    o, w = articulation_targets(track, 25, 100)
    o2, w2 = articulation_at(track, np.arange(100) / 25 + 0.04)
    assert np.allclose(o, o2) and np.allclose(w, w2)
    assert o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1


def test_renderer_mouth_region_follows_track_and_is_deterministic():
    ident = make_identity(11)
    closed, opened, wide, narrow = render_frames(ident, [0, 1, 0.3, 0.3], [0.45, 0.45, 1, 0], size=64).astype(float)
    diff = np.abs(opened - closed).mean(-1)
    mouth_row = int(round((-0.06 + ident.mouth_y + 1) / 2 * 64))
    mouth = diff[mouth_row - 6:mouth_row + 8, 16:48]
    assert mouth.mean() > 5 and (mouth > 30).sum() >= 20  # dozens of pixels change strongly
    assert diff[:mouth_row - 10].mean() < 0.5  # eyes/hair/background do not change with the mouth
    width_diff = np.abs(wide - narrow).mean(-1)
    assert (width_diff[mouth_row - 6:mouth_row + 8] > 20).sum() >= 8
    a = render_frames(5, [0.2, 0.7], [0.5, 0.5], [0.01, -0.02], [0.0, 0.01], [0.05, -0.05], [0.0, 1.0])
    b = render_frames(5, [0.2, 0.7], [0.5, 0.5], [0.01, -0.02], [0.0, 0.01], [0.05, -0.05], [0.0, 1.0])
    assert a.dtype == np.uint8 and a.shape == (2, 64, 64, 3) and np.array_equal(a, b)
    assert not np.array_equal(render_portrait(5), render_portrait(6))
    for size in (128, 256):
        assert render_portrait(5, size).shape == (size, size, 3)


def test_motion_is_smooth_and_has_blinks():
    m = motion_tracks(1, 500, 25)
    assert set(m) == {"head_dx", "head_dy", "head_roll", "blink"}
    assert np.abs(np.diff(m["head_dx"])).max() < 0.01 and np.abs(m["head_roll"]).max() < 0.15
    assert m["blink"].max() > 0.9 and (m["blink"] == 0).mean() > 0.8
    assert np.array_equal(motion_tracks(1, 500, 25)["blink"], m["blink"])


def test_sample_is_deterministic_and_consistent():
    s1 = make_sample(4, 6, 2.0)
    s2 = make_sample(4, 6, 2.0)
    assert s1.frames.shape == (50, 64, 64, 3) and len(s1.audio) == 32000
    assert np.array_equal(s1.frames, s2.frames) and np.array_equal(s1.audio, s2.audio)
    assert all(len(s1.tracks[k]) == 50 for k in ("mouth_open", "mouth_width", "head_dx", "blink"))
    assert np.array_equal(s1.portrait, render_portrait(4))
    s3 = random_sample(np.random.default_rng(0), 0.4, split="heldout")
    assert is_heldout_seed(s3.identity_seed) and is_heldout_seed(s3.utterance_seed)
    s4 = random_sample(np.random.default_rng(0), 0.4, num_identities=10)
    assert not is_heldout_seed(s4.identity_seed) and not is_heldout_seed(s4.utterance_seed)


def test_splits_and_seeds():
    clips = CorpusSpec(identities=5, seconds=1.0, utterances_per_identity=3).clips()
    assert len(clips) == 15
    assert {c.identity for c in select_split(clips, "heldout_identity")} == {"id0004"}
    held_utt = select_split(clips, "heldout_utterance")
    assert {c.utterance for c in held_utt} == {"utt002"} and len(held_utt) == 4
    for c in clips:
        assert is_heldout_seed(c.utterance_seed) == (c.split != "train")
        assert is_heldout_seed(c.identity_seed) == (c.split == "heldout_identity")
    assert split_seed("identity", 1, 2) % 2 == 0 and split_seed("identity", 1, 2, heldout=True) % 2 == 1
    with pytest.raises(ValueError, match="seconds"):
        CorpusSpec(identities=2, seconds=0)
    with pytest.raises(ValueError, match="heldout_identities"):
        CorpusSpec(identities=2, seconds=1.0, heldout_identities=2)
    with pytest.raises(ValueError, match="variety"):
        CorpusSpec(identities=2, seconds=1.0, variety="pastel")
    mixed = CorpusSpec(identities=4, seconds=1.0, utterances_per_identity=1, variety="mixed")
    assert [c.variety for c in mixed.clips()] == ["classic", "wide", "classic", "wide"]
    assert mixed.to_json()["variety"] == "mixed" and "variety" not in CorpusSpec(identities=2, seconds=1.0).to_json()


def test_corpus_writer_layout_and_resume(tmp_path):
    pytest.importorskip("asymk_talker.asymk_core.video_io")
    from asymk_talker.asymk_core.synthetic.corpus import load_tracks, read_manifest, write_corpus
    from asymk_talker.asymk_core.video_io import read_video

    out = tmp_path / "corpus"
    entries = write_corpus(out, 3, 0.6, utterances_per_identity=2, progress=False)
    manifest = read_manifest(out)
    assert manifest == entries and len(manifest) == 6
    assert [e["split"] for e in manifest] == ["train", "heldout_utterance"] * 2 + ["heldout_identity"] * 2
    assert json.loads((out / "corpus.json").read_text())["heldout_identities"] == 1
    first = manifest[0]
    frames, fps, audio, sr = read_video(out / first["path"])
    assert frames.shape == (15, 64, 64, 3) and fps == pytest.approx(25)
    assert audio is not None and abs(len(audio) / sr - 0.6) < 0.1
    tracks, phones = load_tracks(out / first["tracks"])
    sample = make_sample(first["identity_seed"], first["utterance_seed"], 0.6, motion_seed=first["motion_seed"])
    assert np.array_equal(tracks["mouth_open"], sample.tracks["mouth_open"]) and phones == sample.phones
    assert np.abs(frames.astype(float) - sample.frames).mean() < 8  # lossy H.264 of the same render
    assert (out / "portraits" / "id0002.png").exists()
    assert not list(out.rglob("*.tmp"))
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    (out / manifest[1]["tracks"]).unlink()  # an unfinished clip is redone, finished ones skipped
    write_corpus(out, 3, 0.6, utterances_per_identity=2, progress=False)
    assert (out / manifest[1]["tracks"]).exists()
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    with pytest.raises(ValueError, match="out_dir"):
        write_corpus(out, 4, 0.6, progress=False)


def test_wide_variety_spans_colours_and_framing_and_classic_is_unchanged():
    from asymk_talker.asymk_core.synthetic.avatar import REGIONS, VARIETIES

    assert VARIETIES == ("classic", "wide")
    seeds = [split_seed("identity", "pool", k) for k in range(40)]
    wide = [make_identity(s, "wide") for s in seeds]
    classic = [make_identity(s) for s in seeds]
    # Same face shape, own colours; classic identities keep the original framing.
    assert all(w.face_w == c.face_w and w.mouth_y == c.mouth_y for w, c in zip(wide, classic))
    assert all(c.head_scale == 1.0 and c.head_x == 0.0 and c.variety == "classic" for c in classic)
    shirts = np.array([w.shirt for w in wide])
    assert shirts.min() < 0.1 and shirts.max() > 0.9
    assert {w.bg_kind for w in wide} >= {0, 4} and len({round(w.head_scale, 2) for w in wide}) > 10
    flat = next(w for w in wide if w.bg_kind == 4 and w.bg_noise == 0)
    portrait = render_portrait(flat.seed, 64, "wide")
    np.testing.assert_allclose(portrait[0, 0], np.round(flat.bg_a * 255), atol=1)
    with pytest.raises(ValueError, match="variety"):
        make_identity(1, "photo")


def test_region_labels_follow_what_is_drawn():
    from asymk_talker.asymk_core.synthetic.avatar import REGIONS, NEUTRAL_WIDTH

    ident = make_identity(split_seed("identity", "pool", 3), "wide")
    frames, labels = render_frames(ident, [0.0, 1.0], [NEUTRAL_WIDTH, 0.5], size=64, regions=True)
    assert labels.shape == (2, 64, 64) and labels.dtype == np.uint8
    assert np.array_equal(frames, render_frames(ident, [0.0, 1.0], [NEUTRAL_WIDTH, 0.5], size=64))
    for code in (REGIONS["background"], REGIONS["clothes"], REGIONS["skin"], REGIONS["mouth"]):
        assert (labels == code).any()
    # Pixels labelled background have the background colour (a flat or textured one around bg_a/bg_b).
    bg = frames[0][labels[0] == REGIONS["background"]].astype(float)
    shirt = frames[0][labels[0] == REGIONS["clothes"]].astype(float)
    assert np.abs(np.median(shirt, 0) - ident.shirt * 255).max() < 3
    assert len(bg) > 400
    # The open mouth covers more pixels than the closed one.
    assert (labels[1] == REGIONS["mouth"]).sum() > (labels[0] == REGIONS["mouth"]).sum()
