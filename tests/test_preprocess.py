"""Real-data preprocessing on tiny videos made here (offline, seconds on CPU).

The face videos show the project's synthetic avatar (identity seeds 0 and 3 at 128 px), which
OpenCV's bundled Haar frontal-face cascade detects in practically every frame, so the real
detector is used (no injected detector). Skipped if OpenCV (the ``preprocess`` extra) is missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "CascadeClassifier"):
    pytest.skip("OpenCV without Haar cascades (OpenCV 5); install opencv-python-headless<5", allow_module_level=True)

from asymk_talker.asymk_core.preprocess import (  # noqa: E402
    FaceBox,
    iter_frames_at_fps,
    plan_clips,
    read_audio_track,
    smooth_boxes,
    valid_segments,
)
from asymk_talker.asymk_core.video_io import VideoWriter  # noqa: E402

CANVAS_W, CANVAS_H, FACE = 192, 160, 128


def _speech(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    return (0.3 * envelope * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))).astype(np.float32)


def _avatar_frames(seed: int, n: int, fps: float, x: int, y: int, background: int) -> np.ndarray:
    from asymk_talker.asymk_core.synthetic.avatar import render_clip

    mouth = (0.5 + 0.4 * np.sin(np.arange(n) / fps * 2 * np.pi * 3.0)).astype(np.float32)
    faces, _ = render_clip(seed, mouth, np.full(n, 0.5, np.float32), motion_seed=1, fps=fps, size=FACE)
    canvas = np.full((n, CANVAS_H, CANVAS_W, 3), background, np.uint8)
    canvas[:, y:y + FACE, x:x + FACE] = faces
    return canvas


def _write(path, frames, fps, audio, rate):
    with VideoWriter(str(path), fps, frames.shape[2], frames.shape[1], audio=audio, audio_sample_rate=rate) as w:
        w.write(frames)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    # 4 s at 25 fps with a hard cut at frame 50 (another person, elsewhere, other background)
    frames = np.concatenate([_avatar_frames(0, 50, 25.0, 10, 16, 40), _avatar_frames(3, 50, 25.0, 54, 24, 200)])
    _write(root / "speaker_a.mp4", frames, 25.0, _speech(4.0, 16000), 16000)
    # 30 fps video with 44.1 kHz audio, 2.4 s
    (root / "sub").mkdir()
    _write(root / "sub" / "speaker_b.mp4", _avatar_frames(3, 72, 30.0, 30, 20, 90), 30.0, _speech(2.4, 44100), 44100)
    # no face: a slowly changing gradient
    ramp = np.linspace(0, 255, CANVAS_W, dtype=np.float32)[None, None, :, None]
    noface = np.clip(ramp + np.arange(50)[:, None, None, None] * 2, 0, 255).astype(np.uint8)
    noface = np.broadcast_to(noface, (50, CANVAS_H, CANVAS_W, 3)).copy()
    _write(root / "empty_room.mp4", noface, 25.0, _speech(2.0, 16000), 16000)
    # corrupt: a truncated header
    good = (root / "speaker_a.mp4").read_bytes()
    (root / "broken.mp4").write_bytes(good[:200])
    return root


def test_decode_resamples_frames_and_audio(video_dir):
    frames = list(iter_frames_at_fps(video_dir / "sub" / "speaker_b.mp4", 25.0))
    assert [k for k, _ in frames] == list(range(60))  # 2.4 s at 25 fps
    assert frames[0][1].shape == (CANVAS_H, CANVAS_W, 3)
    small = next(iter(iter_frames_at_fps(video_dir / "sub" / "speaker_b.mp4", 25.0, max_side=96, gray=True)))[1]
    assert small.shape == (80, 96)
    audio = read_audio_track(video_dir / "sub" / "speaker_b.mp4")
    assert abs(audio.size / 16000 - 2.4) < 0.1  # 44.1 kHz -> 16 kHz, aligned to the video


def test_boxes_and_segments():
    faces = [FaceBox(50 + i * 0.5, 40, 40, 40) if i not in (5, 6, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42)
             else None for i in range(60)]
    boxes = smooth_boxes(faces, (192, 160), 25.0, max_gap_s=0.2)
    assert not np.isnan(boxes[5:7]).any()  # short gap interpolated
    assert np.isnan(boxes[30:43]).all()  # long gap dropped
    side = boxes[~np.isnan(boxes[:, 0]), 2]
    assert np.allclose(side, 72.0, atol=1e-6)  # 1.8 x 40, square
    assert (boxes[:30, 0] - boxes[:30, 2] / 2 >= 0).all() and (boxes[:30, 1] + boxes[:30, 2] / 2 <= 160).all()
    segments = valid_segments(~np.isnan(boxes[:, 0]), cuts=[20])
    assert segments == [(0, 20), (20, 30), (43, 60)]
    assert plan_clips(segments, 9) == [(0, 9), (9, 18), (20, 29), (43, 52)]
    assert plan_clips(segments, 9, trim=1) == [(1, 10), (10, 19), (44, 53)]


def test_preprocess_end_to_end(video_dir, tmp_path, tiny_components):
    from asymk_talker.train.data import LatentClipDataset, read_cache_manifest
    from asymk_talker.train.preprocess import PreprocessConfig, preprocess_videos

    components, _ = tiny_components
    models = (components["vae"], components["audio_encoder"], None)
    config = PreprocessConfig(size=32, clip_frames=25, reference_window=5, num_references=2)
    out = tmp_path / "cache"
    summary = preprocess_videos([video_dir], out, models=models, config=config, progress=False)

    assert summary["videos_processed"] == 4 and summary["videos_ok"] == 2
    failed = {item["video"].split("/")[-1]: item["status"] for item in summary["failed"]}
    assert failed == {"broken.mp4": "corrupt", "empty_room.mp4": "no_face"}
    meta, entries = read_cache_manifest(out)
    assert meta["latent_channels"] == 4 and meta["reference_window"] == 5
    by_video = {}
    for entry in entries:
        by_video.setdefault(entry["identity"], []).append(entry)
    assert sorted(by_video) == ["speaker_a", "sub__speaker_b"]
    assert len(by_video["speaker_a"]) == 2 and len(by_video["sub__speaker_b"]) == 2
    for entry in entries:
        assert entry["fps"] == 25.0 and entry["num_frames"] == 25 and entry["num_latents"] == 7
        assert entry["num_references"] == 2 and entry["split"] == "train"
    # no clip spans the scene cut at frame 50
    for entry in by_video["speaker_a"]:
        start, stop = (int(v) for v in entry["source"].split("#frames=")[1].split("-"))
        assert stop <= 50 or start >= 50
    from safetensors.torch import load_file

    tensors = load_file(str(out / entries[0]["path"]))
    assert tensors["latents"].shape == (4, 7, 8, 8)
    assert tensors["audio"].shape == (25 * 16000 // 25 // 320 + 1, 1, 80)
    assert tensors["reference_latents"].shape == (2, 4, 5, 8, 8)

    dataset = LatentClipDataset(out, kernel_frames=2, chunk_frames=3)
    sample = dataset[0]
    assert sample["target_latents"].shape == (4, 3, 8, 8)
    assert sample["audio_features"].shape == (3, 4, 5, 1, 80)

    # a second run skips everything that is done (including the reported failures)
    again = preprocess_videos([video_dir], out, models=models, config=config, progress=False)
    assert again["videos_processed"] == 0 and again["videos_skipped_done"] == 4
    assert again["clips_in_cache"] == 4 and len(again["previously_failed"]) == 2
    # a video whose marker is gone is redone, but its clip files are kept (not re-encoded)
    mtime = (out / entries[0]["path"]).stat().st_mtime_ns
    (out / "preprocess" / "done" / "speaker_a.json").unlink()
    third = preprocess_videos([video_dir], out, models=models, config=config, progress=False)
    assert third["videos_processed"] == 1 and third["clips_in_cache"] == 4
    assert (out / entries[0]["path"]).stat().st_mtime_ns == mtime
    assert json.loads((out / "preprocess" / "summary.json").read_text())["videos_ok"] == 1

    # teacher training runs on the preprocessed shards unchanged
    from asymk_talker.train import teacher

    result = teacher.main([
        "--config", "train/configs/synthetic_tiny.yaml", "--output-dir", str(tmp_path / "run"),
        "--cache-dir", str(out), "--max-steps", "2", "--report-to", "none", "--resume", "none",
        "--set", "data.source=cache", "--set", "validation.render=false", "--set", "validation.loss_batches=0",
        "--set", "checkpoint.every=0", "--set", "train.num_threads=1",
    ])
    assert result["step"] == 2 and np.isfinite(result["loss"])
