"""Benchmark scripts and helpers on the tiny preset: result structure and invariants, never speed."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asymk_talker.asymk_core.benchmark import (
    STAGES, STUDENT, current_rss_mb, peak_rss_mb, preset_of, record_entry, render, teacher_settings,
    transformer_calls_per_chunk, write_speech_wav,
)

REPO = Path(__file__).resolve().parent.parent
PORTRAIT = str(REPO / "assets" / "examples" / "portrait.png")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_pipe():
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_speech_wav_has_the_requested_length(tmp_path):
    import soundfile as sf

    path = write_speech_wav(tmp_path / "a.wav", 1.3, piece_seconds=0.5)
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == round(1.3 * 16000)


def test_render_counts_every_frame_and_stage(tmp_path, tiny_pipe):
    from asymk_talker.asymk_core.video_io import probe_video

    wav = write_speech_wav(tmp_path / "a.wav", 1.0)
    result = render(tiny_pipe, PORTRAIT, wav, tmp_path / "out.mp4", **STUDENT)
    assert result["frames"] == round(1.0 * 25) == probe_video(tmp_path / "out.mp4")["num_frames"]
    assert set(result["stages"]) == {*STAGES, "other"} and min(result["stages"].values()) >= 0
    assert sum(result["stages"].values()) == pytest.approx(result["seconds"], rel=1e-6)
    assert result["stages"]["video encoding"] > 0 and result["stages"]["transformer"] > 0
    assert result["transformer_calls"] == result["chunks"] * 4
    assert 0 < result["first_frame_s"] <= result["seconds"]
    assert result["fps"] == pytest.approx(result["frames"] / result["seconds"])

    first = render(tiny_pipe, PORTRAIT, wav, None, max_chunks=1, **STUDENT)
    assert first["chunks"] == 1 and first["transformer_calls"] == 4 and first["stages"]["video encoding"] == 0.0


def test_settings_follow_the_model(tiny_pipe):
    assert preset_of(tiny_pipe) == "tiny"
    assert teacher_settings(tiny_pipe) == dict(sampler="teacher", num_inference_steps=4, guidance_scale=1.0)
    assert teacher_settings(tiny_pipe, steps=7, guidance=2.5)["num_inference_steps"] == 7
    assert transformer_calls_per_chunk(dict(sampler="teacher", num_inference_steps=20, guidance_scale=3.0)) == 40
    assert transformer_calls_per_chunk(STUDENT) == 4


def test_record_entry_keeps_older_entries(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    record_entry(path, "speed", "Speed", "### first\n\nold numbers\n")
    record_entry(path, "memory", "Memory", "### memory run\n")
    record_entry(path, "speed", "Speed", "### second\n\nnew numbers\n")
    text = path.read_text()
    assert text.count("## Speed") == 1 and text.count("## Memory") == 1
    assert text.index("### second") < text.index("### first") < text.index("## Memory")
    assert "old numbers" in text and "new numbers" in text


def test_peak_rss_is_this_process_high_water_mark():
    assert peak_rss_mb() >= current_rss_mb() > 0


def test_speed_script_end_to_end(tmp_path):
    speed = load_script("speed")
    threads = torch.get_num_threads()
    try:
        result = speed.main(["--preset", "tiny", "--seconds", "1", "--ttff-seconds", "1", "3", "--repeats", "1",
                             "--teacher-guidance", "3", "--threads", "1", "--out", str(tmp_path),
                             "--record", str(tmp_path / "B.md")])
    finally:
        torch.set_num_threads(threads)
    assert [run["role"] for run in result["runs"]] == ["student", "teacher"]
    for run in result["runs"]:
        assert run["frames"] == 25 and run["fps"] > 0
        assert run["transformer_calls"] == run["chunks"] * run["transformer_calls_per_chunk"]
    assert result["runs"][1]["transformer_calls_per_chunk"] == 4 * 2  # tiny teacher: 4 steps, guided
    assert result["summary"]["speedup"] > 0 and result["summary"]["calls_ratio"] == 2
    assert [x["audio_seconds"] for x in result["first_frame"]] == [1.0, 3.0]
    assert result["profile"]["top"] and all(0 <= row["percent"] <= 100 for row in result["profile"]["top"])
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["summary"] == result["summary"]
    assert "### " in (tmp_path / "B.md").read_text() and "| student |" in (tmp_path / "B.md").read_text()


def test_memory_script_end_to_end(tmp_path):
    memory = load_script("memory")
    result = memory.main(["--seconds", "1", "--threads", "1", "--out", str(tmp_path), "--no-record"])
    assert sorted((r["mode"], r["audio_seconds"]) for r in result["runs"]) == [("cli", 1.0), ("stream", 1.0)]
    for run in result["runs"]:
        assert run["frames"] == run["expected_frames"] == round(run["audio_seconds"] * 25)
        assert run["peak_rss_mib"] > 50 and run["wall_s"] > run["render_s"] > 0
    assert all(0 < r["rss_after_load_mib"] <= r["peak_rss_mib"] for r in result["runs"] if r["mode"] == "stream")
    for mode in ("cli", "stream"):
        summary = result["summary"][mode]
        assert summary["frames_exact"] and summary["peak_rss_growth"] == 0.0
    assert memory.linear_fit([10, 20, 40], [1.5, 2.5, 4.5]) == dict(intercept=0.5, slope=0.1, r2=1.0,
                                                                     max_relative_residual=0.0)
    assert "| cli | 1 |" in memory.report(result) and (tmp_path / "memory.json").is_file()


def test_onednn_causal_convolution_matches_the_reference_kernel():
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    from asymk_talker.asymk_core.vae import OneDNNCausalConv3d, use_onednn_convolutions, vae_from_preset

    torch.manual_seed(0)
    conv = WanCausalConv3d(8, 6, 3, padding=1)
    x, cache = torch.randn(1, 8, 1, 10, 12), torch.randn(1, 8, 2, 10, 12)
    with torch.no_grad():
        reference = conv(x, cache)
        conv.__class__ = OneDNNCausalConv3d
        fast = conv(x, cache)
    assert torch.allclose(fast, reference, atol=1e-5)
    with torch.enable_grad():  # anything that needs gradients keeps the stock kernel
        assert torch.equal(conv(x, cache), reference)
    vae = use_onednn_convolutions(vae_from_preset("tiny"))
    kinds = {type(m) for m in vae.modules() if isinstance(m, WanCausalConv3d)}
    assert kinds == ({OneDNNCausalConv3d} if torch.backends.mkldnn.is_available() else {WanCausalConv3d})


def test_fast_rms_norm_matches_the_stock_norm():
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    from asymk_talker.asymk_core.vae import FastRMSNorm, use_onednn_convolutions, vae_from_preset

    torch.manual_seed(0)
    norm = WanRMS_norm(6, images=False)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 3, 5, 7)
    x[0, :, 0, 0, 0] = 0.0  # a zero vector: both give 0, not NaN
    x_last = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = norm(x)
        norm.__class__ = FastRMSNorm
        fast, fast_last = norm(x), norm(x_last)
    assert torch.allclose(fast, reference, atol=1e-6) and torch.allclose(fast_last, reference, atol=1e-6)
    assert torch.equal(fast[0, :, 0, 0, 0], torch.zeros(6))
    with torch.enable_grad():  # with gradients the stock function runs
        assert torch.equal(norm(x), reference)
    vae = use_onednn_convolutions(vae_from_preset("tiny"))
    assert {type(m) for m in vae.modules() if isinstance(m, WanRMS_norm)} == {FastRMSNorm}


def test_vae_fast_paths_decode_like_the_stock_modules():
    """The whole streaming decode (channels-last convolutions and fast norms together) matches diffusers'."""
    import copy

    from asymk_talker.asymk_core.vae import StreamingDecoder, use_onednn_convolutions, vae_from_preset

    torch.manual_seed(0)
    stock = vae_from_preset("tiny").eval()
    fast = use_onednn_convolutions(copy.deepcopy(stock))
    latents = torch.randn(1, stock.config.z_dim, 4, 8, 8)
    with torch.no_grad():
        reference = stock.decode(latents).sample
        decoder = StreamingDecoder(fast)  # identity latent statistics: raw = normalised latents
        streamed = torch.cat([decoder.decode(latents[:, :, :1]), decoder.decode(latents[:, :, 1:])], dim=2)
    assert streamed.shape == reference.shape
    assert torch.allclose(streamed, reference, atol=1e-5)


def test_bf16_pipeline_renders(tmp_path):
    """The GPU row runs in bf16; half-precision loading keeps fp32 modules that must still fit together."""
    from asymk_talker import AsymKPipeline

    AsymKPipeline.from_preset("tiny", seed=0).save_pretrained(tmp_path / "tiny")
    pipe = AsymKPipeline.from_pretrained(tmp_path / "tiny", torch_dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    wav = write_speech_wav(tmp_path / "a.wav", 0.5)
    result = render(pipe, PORTRAIT, wav, None, stages=False, **STUDENT)
    assert result["frames"] == round(0.5 * 25)


def test_drift_scores_of_a_prefix_equal_scoring_only_that_prefix():
    from asymk_talker.asymk_core.eval.probe import load_probe
    from asymk_talker.asymk_core.synthetic.corpus import make_sample

    drift = load_script("drift")
    probe = load_probe()
    sample = make_sample(3, 3, 6.0, size=64)
    chunk = 4
    whole, prefix = drift.StreamingScores(stride=2), drift.StreamingScores(stride=2)
    for start in range(0, len(sample.frames), chunk):
        whole.update(probe, sample.frames[start:start + chunk], start)
        if start + chunk <= 80:
            prefix.update(probe, sample.frames[start:start + chunk], start)
    reference = probe.predict(sample.portrait)["embedding"][0]
    truth = sample.tracks["mouth_open"]
    from_whole = whole.result(truth, reference, 25.0, num_frames=80)
    alone = prefix.result(truth, reference, 25.0)
    assert from_whole["num_frames"] == 80 and alone["num_frames"] == len(truth)
    for key in ("sync_pearson", "identity_mean", "identity_slope_per_minute", "boundary_ratio", "num_boundaries"):
        assert from_whole[key] == pytest.approx(alone[key], rel=1e-6), key
    assert from_whole["num_boundaries"] == 80 // chunk - 1
    assert whole.result(truth, reference, 25.0)["sync_pearson"] > 0.8  # ground truth is in sync
    assert 0.7 < from_whole["boundary_ratio"] < 1.3  # ground truth has no seams

    seamed = drift.StreamingScores()
    for start in range(0, 80, chunk):
        shift = 40 if (start // chunk) % 2 else 0  # a brightness jump at every chunk start
        frames = np.clip(sample.frames[start:start + chunk].astype(int) + shift, 0, 255).astype(np.uint8)
        seamed.update(probe, frames, start)
    assert seamed.result(truth, reference, 25.0)["boundary_ratio"] > 3


def test_drift_script_end_to_end(tmp_path):
    from asymk_talker import AsymKPipeline

    drift = load_script("drift")
    AsymKPipeline.from_preset("tiny", seed=0).save_pretrained(tmp_path / "tiny")
    result = drift.main(["--teacher", str(tmp_path / "tiny"), "--student", f"asymmetric={tmp_path / 'tiny'}",
                         "--minutes", "0.1", "0.05", "--identities", "1", "--stride", "2", "--num-threads", "1",
                         "--out", str(tmp_path / "out")])
    rows = result["results"]
    assert [(r["model"], r["minutes"]) for r in rows] == [
        ("teacher", 0.05), ("teacher", 0.1), ("student:asymmetric", 0.05), ("student:asymmetric", 0.1)]
    for short, long in (rows[0:2], rows[2:4]):
        assert short["runs"][0]["num_frames"] == 75 and long["runs"][0]["num_frames"] == 150
        assert short["summary"]["fps"] == long["summary"]["fps"] > 0  # one video, scored twice
        assert len(long["summary"]["identity_per_10s"]) == 1
    saved = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert [r["minutes"] for r in saved] == [0.05, 0.1, 0.05, 0.1]
    assert "| student:asymmetric | 4 | 0.1 |" in (tmp_path / "out" / "drift.md").read_text()
    from PIL import Image

    assert Image.open(tmp_path / "out" / "drift.png").size[0] == 900
    again = drift.main(["--student", f"self-forcing={tmp_path / 'tiny'}", "--minutes", "0.05", "--identities", "1",
                        "--stride", "4", "--num-threads", "1", "--out", str(tmp_path / "out"), "--append"])
    assert [(r["model"], r["minutes"]) for r in again["results"]] == [
        (r["model"], r["minutes"]) for r in rows] + [("student:self-forcing", 0.05)]
    (tmp_path / "out" / "drift.md").unlink()
    report = drift.main(["--report-only", "--out", str(tmp_path / "out")])
    assert len(report["results"]) == 5 and "on cpu, 1 thread;" in report["table"]
    assert "| worst min | mean |" in (tmp_path / "out" / "drift.md").read_text()


def test_fidelity_benchmark_scores_identities_and_cartoons(tmp_path, tiny_pipe):
    fidelity = load_script("fidelity")
    size, fps = int(tiny_pipe.config.height), float(tiny_pipe.config.fps)
    subjects = list(fidelity.subjects(1, 1, 2.0, size, fps))
    assert [s[0] for s in subjects] == ["classic0", "wide0", "cartoon0"]
    name, portrait, audio, sample = subjects[1]
    scored = fidelity.score_subject(tiny_pipe, portrait, audio, sample, fps)
    assert scored["num_frames"] == 50 and set(scored["sheet_frames"]) == {0.0, 1.0}
    windows = scored["standard"]["windows"]
    assert [w["window"] for w in windows] == ["0-1 s", "1-4 s"] and windows[1]["stop_s"] == 2.0
    assert "region_error" in windows[0] and "portrait_error" in windows[0] and "psnr" in windows[0]
    assert not scored["standard"]["passed"]  # an untrained model does not keep the colours
    cartoon = fidelity.score_subject(tiny_pipe, *subjects[2][1:], fps)
    assert "region_error" not in cartoon["standard"]["windows"][0]
    assert [w["window"] for w in cartoon["per_5s"]["windows"]] == ["0-2 s"]
    fidelity.write_sheet(tmp_path / "sheet.png", [(name, portrait, scored["sheet_frames"])])
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size == (6 * size * 3, size * 3 + 14)
    # a video longer than the last sheet time also shows its end
    assert fidelity.sheet_times(60.0) == fidelity.SHEET_TIMES and fidelity.sheet_times(600.0)[-1] == 600.0
    ending = fidelity.score_subject(tiny_pipe, portrait, audio, sample, fps, times=(0.0, 2.0))
    assert set(ending["sheet_frames"]) == {0.0, 2.0}
    fidelity.write_sheet(tmp_path / "end.png", [(name, portrait, ending["sheet_frames"])], times=(0.0, 2.0))
    assert Image.open(tmp_path / "end.png").size == (3 * size * 3, size * 3 + 14)


def test_live_first_frame_is_timed_from_the_push_of_the_first_sample():
    """The feeder's first-push time precedes the stamp the session gives that sample, so the
    utterance's frame 0 (not frame 1, 40 ms later) is its first frame."""
    import threading

    live_bench = load_script("live")

    class StampingSession:  # stamps each block as LiveSession.push does, inside the call
        def __init__(self):
            self.stamps = []

        def push(self, samples, rate):
            time.sleep(0.002)
            self.stamps.append(time.monotonic())

        def interrupt(self):
            pass

    session, firsts, interrupts = StampingSession(), [], []
    schedule = [(0.0, np.zeros(1600, np.float32), False), (0.15, np.zeros(1600, np.float32), True)]
    live_bench.feed(session, schedule, time.monotonic(), firsts, interrupts, threading.Event())
    assert len(firsts) == 2 and firsts[0] <= session.stamps[0] and firsts[1] <= session.stamps[5]
    # frames: idle, then utterance frames whose first samples were stamped at the block times
    pushed_at = np.array([np.nan, session.stamps[0], session.stamps[2], np.nan, session.stamps[5]])
    speaking = ~np.isnan(pushed_at)
    shown = np.array([1.0, 2.0, 2.04, 3.0, 4.0])
    delays = live_bench.first_frame_delays(firsts, pushed_at, speaking, shown)
    assert [pushed for pushed, _ in delays] == firsts
    assert [round(d, 6) for _, d in delays] == [round(2.0 - firsts[0], 6), round(4.0 - firsts[1], 6)]


def test_live_collector_pauses_are_timed_per_generation_and_listed_past_20_ms():
    import gc

    live_bench = load_script("live")
    with live_bench.CollectorPauses() as pauses:
        started = time.monotonic()
        gc.collect()
        gc.collect(0)
    assert pauses not in gc.callbacks
    generations = [generation for _, generation, _ in pauses.pauses]
    assert generations[-2:] == [2, 0] and all(seconds >= 0 for _, _, seconds in pauses.pauses)
    pauses.pauses.append((started + 3.0, 2, 0.5))  # a long full collection 3 s into the run
    pauses.pauses.append((started - 1.0, 2, 0.7))  # and one before the run started
    summary = pauses.summary(started)
    assert summary["generation_2"]["count"] == generations.count(2) + 1
    assert summary["generation_2"]["max_s"] >= 0.5
    assert {"at_s": 3.0, "generation": 2, "s": 0.5} in summary["over_20ms"]
    assert all(pause["at_s"] >= 0 for pause in summary["over_20ms"])
    assert summary["before_start"]["generation_2_max_s"] == 0.7
