"""train/teacher.py + train/common.py: loss, overfitting, checkpoint/resume, DDP on CPU, the saved pipeline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asymk_talker.train import teacher
from asymk_talker.train.common import Config, deep_merge, latest_checkpoint, list_checkpoints, load_config
from asymk_talker.train.data import make_dataloader
from asymk_talker.train.pipeline_trainer import build_clip_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "train" / "configs" / "synthetic_tiny.yaml"


def read_metrics(output_dir: Path) -> dict[int, float]:
    lines = (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def test_config_loading_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("a: {b: 1, c: [1, 2]}\nname: x\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\na: {b: 2}\n")
    config = load_config(child, ["a.d=1e-4", "name=none", "e.f=true"])
    assert config.a.b == 2 and config.a.c == [1, 2] and config.a.d == pytest.approx(1e-4)
    assert config.name is None and config.e.f is True
    assert config.get_path("a.missing", 5) == 5
    merged = deep_merge(teacher.DEFAULTS, load_config(TINY))
    assert merged.model.preset == "tiny" and merged.train.max_grad_norm == 1.0  # defaults kept
    assert isinstance(merged, Config)


def test_a_pretrained_transformer_takes_architecture_overrides(tmp_path):
    """Warm-starting with ``model.transformer_overrides`` (e.g. block-causal kernel attention) keeps the weights."""
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    source = AsymKTransformer.from_preset("tiny")
    source.save_pretrained(tmp_path / "transformer")
    config = deep_merge(teacher.DEFAULTS, load_config(TINY, [f"model.transformer={tmp_path / 'transformer'}",
                                                             "model.transformer_overrides.kernel_attention=block_causal"]))
    transformer = teacher.build_components(config)[0]["transformer"]
    assert transformer.config.kernel_attention == "block_causal"
    for (name, value), (_, expected) in zip(transformer.state_dict().items(), source.state_dict().items()):
        assert torch.equal(value, expected), name


@pytest.fixture(scope="module")
def tiny_setup():
    config = deep_merge(teacher.DEFAULTS, load_config(TINY))
    components, _ = teacher.build_components(config)
    dataset = build_clip_dataset(config, components)
    batch = next(iter(make_dataloader(dataset, 2)))
    return config, components, batch


def test_loss_finite_and_overfits_fixed_batch(tiny_setup):
    config, components, batch = tiny_setup
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    torch.manual_seed(0)
    model = AsymKTransformer.from_preset("tiny").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        generator = teacher.step_generator(0, 0, 0)  # the same noise, sigma and dropout every step
        out = teacher.training_loss(model, batch, config.flow, generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_drift_kernels_blur_and_shift_only_the_chosen_samples():
    from asymk_talker.asymk_core.training_losses import drift_kernels

    kernel = torch.randn(64, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert drift_kernels(kernel, 0.0, 0.3, torch.Generator()) is kernel
    a = drift_kernels(kernel, 0.5, 0.3, torch.Generator().manual_seed(1))
    b = drift_kernels(kernel, 0.5, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # all randomness from the generator
    changed = (a - kernel).flatten(1).abs().amax(1) > 0
    assert 16 < int(changed.sum()) < 48  # about half the samples
    shift = (a - kernel)[changed]
    # The appearance shift is steady over the kernel frames, apart from the blur's share.
    blurred = torch.nn.functional.avg_pool2d(kernel[changed].transpose(1, 2).reshape(-1, 4, 8, 8), 3, 1, 1,
                                             count_include_pad=False).reshape(-1, 3, 4, 8, 8).transpose(1, 2)
    detail = (blurred - kernel[changed])
    weight = ((shift[:, :, 1] - shift[:, :, 0]) * (detail[:, :, 1] - detail[:, :, 0])).flatten(1).sum(1) / \
        (detail[:, :, 1] - detail[:, :, 0]).flatten(1).pow(2).sum(1)
    steady = shift - weight.view(-1, 1, 1, 1, 1) * detail
    torch.testing.assert_close(steady[:, :, 0], steady[:, :, 2], atol=1e-4, rtol=0)
    assert float(steady.abs().amax()) <= 0.3 * 6  # U(0, scale) x (offset + field) of N(0, 1) draws


def test_audio_dropout_uses_unconditional_branch(tiny_setup):
    """Dropped samples get exactly the ``audio_features=None`` prediction used by guidance."""
    config, components, batch = tiny_setup
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer
    from asymk_talker.asymk_core.sampling import ChunkConditions, predict_velocity
    from asymk_talker.asymk_core.training_losses import flow_matching_loss

    torch.manual_seed(0)
    model = AsymKTransformer.from_preset("tiny").eval()
    for block in model.blocks:  # make audio matter
        torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.5)
    clean = batch["target_latents"]
    conditions = ChunkConditions(batch["kernel_latents"], batch["reference_latents"], batch["audio_features"])
    sigma, noise = torch.tensor([0.5, 0.5]), torch.randn_like(clean)
    keep = torch.tensor([True, False])
    with torch.no_grad():
        out = flow_matching_loss(model, clean, conditions, sigma, noise, keep)
        noisy = 0.5 * clean + 0.5 * noise
        cond = predict_velocity(model, noisy, sigma, conditions)
        uncond = predict_velocity(model, noisy, sigma, conditions, audio=False)
    assert torch.allclose(out.velocity[0], cond[0], atol=1e-5)
    assert torch.allclose(out.velocity[1], uncond[1], atol=1e-5)
    assert not torch.allclose(cond[1], uncond[1], atol=1e-4)
    assert torch.allclose(out.target, noise - clean)


def run_teacher(output_dir: Path, *extra: str) -> dict:
    return teacher.main(["--config", str(TINY), "--output-dir", str(output_dir), "--report-to", "none", *extra])


def test_checkpoint_resume_reproduces_next_loss(tmp_path):
    first = tmp_path / "first"
    summary = run_teacher(first, "--max-steps", "4", "--checkpoint-every", "2", "--set", "validation.render=false")
    assert summary["step"] == 4 and math.isfinite(summary["loss"])
    steps = [step for step, _ in list_checkpoints(first)]
    assert steps == [2, 4]
    assert json.loads((latest_checkpoint(first) / "progress.json").read_text())["step"] == 4
    original = read_metrics(first)

    # A second run resuming from the step-2 checkpoint continues at step 3 with the same losses.
    second = tmp_path / "second"
    (second / "checkpoints").mkdir(parents=True)
    os.symlink(first / "checkpoints" / "step-0000002", second / "checkpoints" / "step-0000002")
    run_teacher(second, "--max-steps", "4", "--checkpoint-every", "0", "--set", "validation.render=false")
    resumed = read_metrics(second)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(original[step], rel=1e-5, abs=1e-6)

    # --resume latest (the default) on a finished run does nothing more; --resume none restarts.
    again = run_teacher(first, "--max-steps", "4", "--set", "validation.render=false")
    assert again["step"] == 4


def test_time_budget_stops_with_checkpoint_and_pipeline(tmp_path):
    """``train.max_minutes`` ends the run early exactly like ``max_steps`` would: a checkpoint at
    the step reached and a complete pipeline folder."""
    out = tmp_path / "budget"
    summary = run_teacher(out, "--max-steps", "50", "--checkpoint-every", "0", "--set", "validation.render=false",
                          "--set", "train.max_minutes=1e-9")
    assert summary["step"] == 1
    assert [step for step, _ in list_checkpoints(out)] == [1]
    assert (out / "pipeline" / "model_index.json").is_file()


def test_saved_pipeline_loads_and_generates(tmp_path, speech):
    from asymk_talker import AsymKPipeline

    out = tmp_path / "run"
    summary = run_teacher(out, "--max-steps", "2", "--set", "validation.loss_batches=0")
    pipe = AsymKPipeline.from_pretrained(summary["pipeline_dir"])
    assert pipe.config.sampler == "teacher"
    assert pipe.config.kernel_frames == 2 and pipe.config.chunk_frames == 3 and pipe.config.height == 32
    result = pipe(image=np.full((32, 32, 3), 128, np.uint8), audio=speech(0.6), sample_rate=16000,
                  num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
    assert result.frames.shape == (15, 32, 32, 3) and np.isfinite(result.frames).all()
    assert list((out / "validation").glob("step-*.mp4"))  # the final validation render
    # the EMA weights went into the saved pipeline
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    saved = AsymKTransformer.from_pretrained(Path(summary["pipeline_dir"]) / "transformer")
    from safetensors.torch import load_file

    raw = load_file(str(latest_checkpoint(out) / "model.safetensors"))
    name = "proj_out.weight"
    assert not torch.allclose(saved.state_dict()[name], raw[name])


def test_distributed_two_processes_cpu(tmp_path):
    """`accelerate launch` with two real (gloo) processes: disjoint data, one checkpoint, one pipeline."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "train" / "teacher.py"), "--config", str(TINY), "--max-steps", "3", "--output-dir", str(out),
               "--report-to", "none", "--set", "validation.render=false", "--set", "validation.loss_batches=0"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 processes" in result.stdout + result.stderr
    checkpoints = list_checkpoints(out)
    assert [step for step, _ in checkpoints] == [3]
    assert {p.name for p in checkpoints[0][1].glob("random_states_*.pkl")} == {"random_states_0.pkl",
                                                                               "random_states_1.pkl"}
    assert sorted(read_metrics(out)) == [1, 2, 3]  # logged once (main process)
    assert (out / "pipeline" / "model_index.json").is_file()
