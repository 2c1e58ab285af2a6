"""The shipped default model (``models/asymk-synthetic``): the distilled AKD student. A small,
complete folder that ``from_pretrained()`` with no path, ``generate`` without ``--model`` and
``asymk-talker demo`` use, and that lip-syncs held-out speech in 4 steps where an untrained twin
does not."""

from __future__ import annotations

import json
import re

import pytest
import torch

from asymk_talker.cli.main import main as cli
from asymk_talker.asymk_core.model_folder import DEFAULT_MODEL_DIR, PACKAGE_ROOT

EXAMPLES = PACKAGE_ROOT / "assets" / "examples"


@pytest.fixture(scope="module")
def default_pipe():
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_folder_is_a_small_distilled_student_with_a_model_card(default_pipe):
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    assert default_pipe.config.sampler == "distilled" and default_pipe.config.num_inference_steps == 4
    assert (default_pipe.config.height, default_pipe.config.width) == (64, 64)
    card = (DEFAULT_MODEL_DIR / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers") and "synthetic avatar domain only" in card
    rows = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["rows"]
    assert rows["student"]["sync_pearson"] > rows["untrained"]["sync_pearson"] + 0.3
    assert rows["student"]["psnr"] > rows["untrained"]["psnr"]
    # the steady-state VAE (colours hold in long streams), with the card's absolute colour numbers
    steady = json.loads((PACKAGE_ROOT / "assets" / "vae-synthetic-colour" / "config.json").read_text())
    assert list(default_pipe.vae.config.latents_mean) == pytest.approx(steady["latents_mean"])
    assert rows["student"]["portrait_error_worst"] < rows["untrained"]["portrait_error_worst"]


def test_lip_syncs_a_held_out_clip_in_four_steps_and_an_untrained_twin_does_not(default_pipe):
    from asymk_talker import AsymKTransformer
    from asymk_talker.asymk_core.eval.evaluate import evaluate_model

    trained = evaluate_model(default_pipe, seconds=3.0, identities=1, progress=False)["summary"]
    student = default_pipe.transformer
    try:
        torch.manual_seed(0)
        default_pipe.transformer = AsymKTransformer.from_config(student.config)
        untrained = evaluate_model(default_pipe, seconds=3.0, identities=1, progress=False)["summary"]
    finally:
        default_pipe.transformer = student
    # a random network still maps loud audio to some pixel change, so over 3 s its mouth can
    # correlate by chance (about +-0.45 across seeds); the trained student is far above that
    assert trained["sync_pearson"] > 0.8
    assert trained["sync_pearson"] > untrained["sync_pearson"] + 0.3
    assert trained["identity_distance"] < untrained["identity_distance"]
    assert trained["psnr"] > untrained["psnr"] + 3


def test_generate_without_model_uses_the_default(tmp_path):
    from asymk_talker.asymk_core.video_io import probe_video

    out = tmp_path / "out.mp4"
    assert cli(["generate", "--image", str(EXAMPLES / "portrait.png"), "--audio", str(EXAMPLES / "speech.wav"),
                "--output", str(out), "--quiet"]) == 0
    info = probe_video(out)
    assert info["num_frames"] == 100 and (info["width"], info["height"]) == (64, 64)


def test_demo_writes_both_videos_and_reports_the_metrics(tmp_path, capsys):
    from asymk_talker.asymk_core.video_io import probe_video

    out = tmp_path / "demo.mp4"
    assert cli(["demo", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert probe_video(out)["num_frames"] == 100
    pair = probe_video(tmp_path / "demo_vs_ground_truth.mp4")
    assert (pair["width"], pair["height"], pair["num_frames"]) == (128, 64, 100)
    sync = float(re.search(r"sync r = (-?[0-9.]+)", printed).group(1))
    fps = float(re.search(r"speed: ([0-9.]+) FPS", printed).group(1))
    assert sync > 0.4 and fps > 0
    assert "/min" not in printed  # no per-minute slope fitted to 4 s
