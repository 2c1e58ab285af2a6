"""Evaluation probe and metrics: exact on ground truth, sensitive to typical failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asymk_talker.asymk_core.eval.metrics import (
    boundary_jump, evaluate_frames, identity_drift, pearson, summarize, sync_metrics, visual_quality,
)
from asymk_talker.asymk_core.eval.probe import SHIPPED_PROBE, AvatarProbe, load_probe
from asymk_talker.asymk_core.synthetic.corpus import make_sample, split_seed

SECONDS = 12.0


@pytest.fixture(scope="module")
def probe():
    return load_probe()


@pytest.fixture(scope="module")
def clip():
    """A held-out identity speaking a held-out utterance."""
    return make_sample(split_seed("identity", "test-eval", 0, heldout=True),
                       split_seed("utterance", "test-eval", 0, heldout=True), SECONDS)


@pytest.fixture(scope="module")
def gt_result(clip, probe):
    return evaluate_frames(clip.frames, clip.tracks, clip.portrait, np.arange(0, clip.num_frames, 12),
                           gt_frames=clip.frames, probe=probe)


def test_shipped_probe_is_small_and_recovers_mouth_on_heldout(probe):
    size = sum(p.stat().st_size for p in SHIPPED_PROBE.iterdir() if p.suffix == ".safetensors")
    assert 0 < size < 5e6 and (SHIPPED_PROBE / "config.json").exists()
    samples = [make_sample(split_seed("identity", "test-probe", i, heldout=True),
                           split_seed("utterance", "test-probe", i, heldout=True), 6.0) for i in range(3)]
    pred = np.concatenate([probe.predict(s.frames)["mouth_open"] for s in samples])
    true = np.concatenate([s.tracks["mouth_open"] for s in samples])
    assert pearson(pred, true) >= 0.9
    # identity: a frame is much closer to its own portrait than to another identity's
    emb = probe.predict(np.stack([samples[0].frames[40], samples[0].portrait, samples[1].portrait]))["embedding"]
    assert 1 - emb[0] @ emb[1] < 0.5 * (1 - emb[0] @ emb[2])


def test_probe_save_load_roundtrip(tmp_path):
    model = AvatarProbe(channels=(4, 8, 8, 8), hidden=16, embedding_dim=8).eval()
    model.save_pretrained(tmp_path)
    again = load_probe(tmp_path)
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
    a, b = model.predict(frames), again.predict(frames)
    assert np.allclose(a["mouth_open"], b["mouth_open"]) and a["embedding"].shape == (2, 8)
    with pytest.raises(ValueError, match="frames"):
        model.predict(np.zeros((2, 48, 48)))


def test_metrics_on_ground_truth(gt_result):
    sync = gt_result["sync"]
    assert sync["pearson"] > 0.9 and sync["offset"] == 0 and sync["mae"] < 0.1
    assert gt_result["identity"]["mean"] < 0.1
    assert abs(gt_result["identity"]["slope_per_minute"]) < 0.2  # 12 s of head sway/blinks: noise only
    assert 0.7 < gt_result["boundary"]["ratio"] < 1.4
    assert gt_result["quality"]["psnr"] == 100.0 and gt_result["quality"]["l1"] == 0.0
    assert len(gt_result["identity"]["per_10s"]) == 2 and len(gt_result["identity"]["per_minute"]) == 1
    json.dumps({k: v for k, v in gt_result.items()})  # JSON-ready


def test_sync_detects_audio_video_offset(clip, probe, gt_result):
    shifted = np.concatenate([np.repeat(clip.frames[:1], 3, axis=0), clip.frames[:-3]])  # video 3 frames late
    r = evaluate_frames(shifted, clip.tracks, clip.portrait, probe=probe)
    assert r["sync"]["offset"] == 3
    assert r["sync"]["pearson"] < gt_result["sync"]["pearson"] - 0.2
    assert r["sync"]["pearson_at_offset"] > 0.9
    early = evaluate_frames(np.concatenate([clip.frames[2:], np.repeat(clip.frames[-1:], 2, axis=0)]), clip.tracks,
                            clip.portrait, probe=probe)
    assert early["sync"]["offset"] == -2


def test_identity_drift_detects_slow_colour_drift(clip, probe, gt_result):
    ramp = np.linspace(0, 1, clip.num_frames)[:, None, None, None] * np.array([70.0, -30.0, -50.0])
    drifted = np.clip(clip.frames + ramp, 0, 255).astype(np.uint8)
    r = evaluate_frames(drifted, clip.tracks, clip.portrait, probe=probe)
    slope = r["identity"]["slope_per_minute"]
    assert slope > 1.0 and slope > 10 * abs(gt_result["identity"]["slope_per_minute"])
    assert r["identity"]["per_10s"][-1] > r["identity"]["per_10s"][0]


def test_sync_drops_on_frozen_frames(clip, probe, gt_result):
    frozen = np.repeat(clip.frames[:1], clip.num_frames, axis=0)
    assert abs(evaluate_frames(frozen, clip.tracks, clip.portrait, probe=probe)["sync"]["pearson"]) < 0.1
    held = clip.frames[(np.arange(clip.num_frames) // 8) * 8]  # each frame held for 8 frames
    r = evaluate_frames(held, clip.tracks, clip.portrait, probe=probe)
    assert r["sync"]["pearson"] < gt_result["sync"]["pearson"] - 0.15


def test_boundary_jump_detects_seams(clip):
    starts = np.arange(0, clip.num_frames, 12)
    offset = np.where((np.arange(clip.num_frames) // 12) % 2 == 0, 6.0, -6.0)[:, None, None, None]
    seamed = np.clip(clip.frames + offset, 0, 255).astype(np.uint8)
    assert boundary_jump(seamed, starts)["ratio"] > 2.0
    assert boundary_jump(clip.frames, [])["ratio"] is None


def test_metric_functions_directly():
    t = np.sin(np.arange(200) / 5.0)
    s = sync_metrics(np.roll(t, 2), t)
    assert s["offset"] == 2 and s["by_offset"]["2"] > 0.99
    assert pearson(np.ones(5), np.arange(5)) == 0.0
    e = np.tile([1.0, 0.0], (1500, 1))
    d = identity_drift(e, [1.0, 0.0], fps=25)
    assert d["mean"] == pytest.approx(0, abs=1e-9) and len(d["per_minute"]) == 1 and len(d["per_10s"]) == 6
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    q = visual_quality(frames + 10, frames)
    assert q["l1"] == pytest.approx(10 / 255, rel=1e-4) and 20 < q["psnr"] < 30
    assert summarize([{"sync": {"pearson": 0.5}}, {"sync": {"pearson": 1.0}}])["sync_pearson"] == 0.75


def test_report_and_ground_truth_evaluation(tmp_path, probe):
    from asymk_talker.asymk_core.eval.evaluate import evaluate_model

    results = evaluate_model("ground-truth", seconds=3.0, identities=2, out_dir=tmp_path, probe=probe, progress=False)
    summary = results["summary"]
    assert summary["clips"] == 2 and summary["sync_pearson"] > 0.85 and summary["identity_distance"] < 0.15
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["summary"] == summary and "series" not in saved["clips"][0]
    from PIL import Image

    assert Image.open(tmp_path / "eval.png").size[0] > 500


def test_ground_truth_seams_are_measured_at_a_models_chunk_starts(probe):
    """Without chunk starts the truth has no seams; with a model's, its frame changes across them
    against those inside, exactly as ``boundary_jump`` gives them on the renders."""
    from asymk_talker.asymk_core.eval.evaluate import evaluate_model, evaluation_clips
    from asymk_talker.asymk_core.eval.metrics import boundary_jump

    plain = evaluate_model("ground-truth", seconds=2.0, identities=2, probe=probe, progress=False)
    assert plain["summary"].get("boundary_ratio") is None and plain["clips"][0]["chunk_starts"] == [0]
    starts = [[0, 13, 29], [0, 16, 32]]
    seams = evaluate_model("ground-truth", seconds=2.0, identities=2, probe=probe, progress=False, chunk_starts=starts)
    for clip, clip_starts, result in zip(evaluation_clips("heldout", 2, 2.0), starts, seams["clips"]):
        expected = boundary_jump(clip.sample().frames, clip_starts)["ratio"]
        assert result["chunk_starts"] == clip_starts
        assert result["boundary"]["ratio"] == pytest.approx(expected) and 0.3 < expected < 3.0
    assert seams["summary"]["boundary_ratio"] == pytest.approx(np.mean([c["boundary"]["ratio"] for c in seams["clips"]]))


def test_eval_command_on_a_saved_pipeline(tmp_path, capsys):
    pipeline = pytest.importorskip("asymk_talker.pipelines.pipeline_asymk")
    from asymk_talker.cli.main import main

    model_dir = tmp_path / "model"
    pipeline.AsymKPipeline.from_preset("tiny", seed=0).save_pretrained(model_dir)
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_dir), "--seconds", "1", "--identities", "1", "--out", str(out),
                 "--quiet"]) == 0
    saved = json.loads((out / "eval.json").read_text())
    clip = saved["clips"][0]
    assert clip["num_frames"] == 25 and clip["boundary"]["num_boundaries"] >= 1
    for key in ("sync_pearson", "identity_distance", "boundary_ratio", "psnr"):
        assert np.isfinite(saved["summary"][key])
    assert "sync_pearson" in capsys.readouterr().out


def test_command_constants_match_evaluate():
    from asymk_talker.asymk_core.eval import evaluate
    from asymk_talker.cli import eval as command

    assert command.EVAL_SPLITS == evaluate.EVAL_SPLITS and command.GROUND_TRUTH == evaluate.GROUND_TRUTH
