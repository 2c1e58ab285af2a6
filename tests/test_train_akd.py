"""Stage 2 (AKD): rollout kernel wiring, DMD/critic losses, the training script, multi-process, saving.

Tiny and CPU-only: the teacher is a randomly initialised ``tiny`` pipeline (mechanics only), the
data are generated on the fly by ``train/data.py``'s ``SyntheticClipDataset``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asymk_talker.asymk_core.akd import (
    KERNEL_MODES,
    AKDBatch,
    critic_flow_loss,
    dmd_generator_loss,
    kernel_wiring,
    ode_regression_loss,
    student_rollout,
)
from asymk_talker.asymk_core.kclg import next_kernel
from asymk_talker.asymk_core.sampling import shifted_sigmas

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "train" / "configs" / "akd_synthetic_tiny.yaml"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    path = tmp_path_factory.mktemp("teacher")
    AsymKPipeline.from_preset("tiny", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_models(teacher_dir):
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(teacher_dir)
    teacher = pipe.transformer.requires_grad_(False).eval()
    # Give the audio path non-zero weights so audio matters (a fresh model zero-initialises it).
    torch.manual_seed(1)
    for block in teacher.blocks:
        torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.05)
    return pipe, teacher


@pytest.fixture(scope="module")
def akd_batch(tiny_models):
    from asymk_talker.train.data import SyntheticClipDataset, make_dataloader

    pipe, _ = tiny_models
    dataset = SyntheticClipDataset(pipe.vae, pipe.audio_encoder, kernel_frames=2, chunk_frames=3, num_chunks=3,
                                   size=32, num_identities=4, epoch_size=8)
    batch = next(iter(make_dataloader(dataset, 2)))
    assert batch["target_latents"].shape[2] == 9 and batch["audio_features"].shape[1] == 9
    return AKDBatch.from_dict(batch)


class KernelRecorder:
    """Forward hooks recording the kernel frames of every ``[kernel | chunk]`` window a model sees."""

    def __init__(self, **models):
        self.calls = {name: [] for name in models}
        self.handles = [model.register_forward_hook(self._hook(name), with_kwargs=True)
                        for name, model in models.items()]

    def _hook(self, name):
        def hook(module, args, kwargs, output):
            window = args[0]
            self.calls[name].append(window[:, :, : kwargs["kernel_frames"]].detach().clone())
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _same(a, b):
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------------------------ rollout
@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_rollout_and_scoring_use_the_kernels_of_the_mode(mode, tiny_models, akd_batch):
    _, teacher = tiny_models
    student, critic = copy.deepcopy(teacher).requires_grad_(True), copy.deepcopy(teacher).requires_grad_(True)
    sigmas = shifted_sigmas(4, 3.0)
    recorder = KernelRecorder(student=student, teacher=teacher, critic=critic)
    try:
        chunks = student_rollout(student, akd_batch, 3, sigmas, mode, torch.Generator().manual_seed(0),
                                 exit_step=[3, 1, 2], grad=True)
        student_calls = list(recorder.calls["student"])
        size = akd_batch.target_latents.shape[0]
        sigma = torch.full((3 * size,), 0.5)
        noise = torch.randn(3 * size, *chunks[0].output.shape[1:], generator=torch.Generator().manual_seed(1))
        out = dmd_generator_loss(chunks, teacher, critic, mode, sigma, noise, guidance_scale=2.0)
    finally:
        recorder.remove()

    gt = [akd_batch.gt_kernel(k, 3) for k in range(3)]
    own = [akd_batch.kernel_latents]
    for chunk in chunks[:-1]:
        own.append(next_kernel(own[-1], chunk.output.detach(), 2))
    wiring = kernel_wiring(mode)
    expected_student = own if wiring.student == "student" else gt
    for k, chunk in enumerate(chunks):
        assert _same(chunk.gt_kernel, gt[k])
        assert _same(chunk.student_kernel, expected_student[k])
        assert not chunk.student_kernel.requires_grad  # no gradient across chunk boundaries
        assert chunk.output.requires_grad and chunk.exit_step == [3, 1, 2][k]
    # The generated kernels really differ from the ground truth (so the checks below mean something).
    assert not _same(own[1], gt[1]) and not _same(own[2], gt[2])
    # Every student call of chunk k (no-grad steps, then the batched grad step) saw the chunk's kernel.
    no_grad_calls = [c for c in student_calls if c.shape[0] == size]
    per_chunk = [3 + 1, 1 + 1, 2 + 1]  # exit_step + 1 transformer calls per chunk
    start = 0
    for k, count in enumerate(per_chunk):
        for call in no_grad_calls[start:start + count]:
            assert _same(call, expected_student[k])
        start += count
    assert _same(student_calls[-1], torch.cat(expected_student))

    teacher_expected = torch.cat(gt if wiring.teacher == "gt" else expected_student)
    critic_expected = torch.cat(expected_student)
    assert _same(out.teacher_kernel, teacher_expected) and _same(out.critic_kernel, critic_expected)
    assert len(recorder.calls["teacher"]) == 2  # audio CFG: conditional + unconditional
    assert all(_same(c, teacher_expected) for c in recorder.calls["teacher"])
    assert len(recorder.calls["critic"]) == 1 and _same(recorder.calls["critic"][0], critic_expected)
    if mode == "asymmetric":  # the method: the student conditions on its own kernels, the teacher on GT
        assert not _same(out.teacher_kernel, out.critic_kernel)

    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in critic.parameters()) and all(p.grad is None for p in teacher.parameters())
    critic_loss = critic_flow_loss(chunks, critic, mode, torch.full((3 * size,), 0.3), noise)
    critic_loss.loss.backward()
    assert torch.isfinite(critic_loss.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_drifted_initial_kernel_reaches_only_the_student(mode, tiny_models, akd_batch):
    from asymk_talker.asymk_core.training_losses import drift_kernels

    _, teacher = tiny_models
    student = copy.deepcopy(teacher)
    drifted = drift_kernels(akd_batch.kernel_latents, 1.0, 0.5, torch.Generator().manual_seed(3))
    assert not _same(drifted, akd_batch.kernel_latents)
    chunks = student_rollout(student, akd_batch, 3, shifted_sigmas(4, 3.0), mode, torch.Generator().manual_seed(0),
                             exit_step=1, initial_kernel=drifted)
    expected = drifted if kernel_wiring(mode).student == "student" else akd_batch.kernel_latents
    assert _same(chunks[0].student_kernel, expected)
    assert _same(chunks[0].gt_kernel, akd_batch.kernel_latents)  # what the teacher scores with stays clean


def test_dmd_gradient_matches_its_definition(tiny_models, akd_batch):
    _, teacher = tiny_models
    student, critic = copy.deepcopy(teacher).requires_grad_(True), copy.deepcopy(teacher)
    with torch.no_grad():  # make the critic differ from the teacher
        for p in critic.parameters():
            p.add_(0.01 * torch.randn_like(p))
    chunks = student_rollout(student, akd_batch, 1, shifted_sigmas(4, 3.0), "asymmetric",
                             torch.Generator().manual_seed(0), exit_step=0, grad=True)
    x = chunks[0].output
    x.retain_grad()
    sigma, noise = torch.full((x.shape[0],), 0.4), torch.randn_like(x)
    out = dmd_generator_loss(chunks, teacher, critic, "asymmetric", sigma, noise)
    out.loss.backward()
    normaliser = (x.detach() - out.real_x0).abs().flatten(1).mean(1).view(-1, 1, 1, 1, 1)
    expected = (out.fake_x0 - out.real_x0) / normaliser / x.numel()
    assert torch.allclose(x.grad, expected, atol=1e-6, rtol=1e-4)


def test_rollout_without_grad_and_ode_warmup(tiny_models, akd_batch):
    _, teacher = tiny_models
    student = copy.deepcopy(teacher).requires_grad_(True)
    chunks = student_rollout(student, akd_batch, 3, shifted_sigmas(4, 3.0), "asymmetric",
                             torch.Generator().manual_seed(0))
    assert all(not c.output.requires_grad for c in chunks)
    assert all(0 <= c.exit_step < 4 for c in chunks)
    # Same generator -> same rollout (exit steps and noise are drawn from it).
    again = student_rollout(student, akd_batch, 3, shifted_sigmas(4, 3.0), "asymmetric",
                            torch.Generator().manual_seed(0))
    assert all(torch.equal(a.output, b.output) for a, b in zip(chunks, again))
    loss = ode_regression_loss(student, teacher, akd_batch, shifted_sigmas(4, 3.0), 1, 3,
                               torch.Generator().manual_seed(0), substeps=2)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in student.parameters())
    with pytest.raises(ValueError, match="kernel_mode"):
        kernel_wiring("forcing")


# ---------------------------------------------------------------------------------- training
def _run(teacher_dir, out_dir, *extra):
    from asymk_talker.train.akd import main

    return main(["--config", str(CONFIG), "--teacher", str(teacher_dir), "--output-dir", str(out_dir),
                 "--num-threads", "1", *extra])


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "logs" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_training_steps_update_student_and_critic(mode, teacher_dir, tmp_path):
    summary = _run(teacher_dir, tmp_path, "--kernel-mode", mode, "--max-steps", "3", "--generator-every", "2")
    assert summary["step"] == 3 and summary["kernel_mode"] == mode
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["critic_loss"]) for r in records)
    assert [("generator_loss" in r) for r in records] == [True, False, True]  # generator every 2 steps
    assert all(math.isfinite(r["generator_loss"]) for r in records if "generator_loss" in r)

    teacher = _tensors(teacher_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    checkpoint = tmp_path / "checkpoints" / "step-0000003"
    student, critic = _tensors(checkpoint / "model.safetensors"), _tensors(checkpoint / "model_1.safetensors")
    assert any(not torch.equal(student[k], teacher[k]) for k in teacher), "the generator did not update"
    assert any(not torch.equal(critic[k], teacher[k]) for k in teacher), "the critic did not update"
    assert any(not torch.equal(critic[k], student[k]) for k in teacher)


def test_resume_and_saved_student_defaults_to_four_distilled_steps(teacher_dir, tmp_path, speech):
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    _run(teacher_dir, tmp_path, "--max-steps", "2", "--ode-warmup-steps", "1")
    records = _metrics(tmp_path)
    assert records[0]["phase"] == "ode" and math.isfinite(records[0]["ode_loss"])
    summary = _run(teacher_dir, tmp_path, "--max-steps", "3", "--ode-warmup-steps", "1")  # --resume latest
    assert summary["step"] == 4
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3, 4]

    pipe = AsymKPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.config.sampler == "distilled" and pipe.config.num_inference_steps == 4
    assert pipe.config.guidance_scale == 1.0  # guidance is distilled in
    assert pipe.scheduler.config.shift == 3.0
    saved = _tensors(tmp_path / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
    teacher = _tensors(teacher_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(saved[k], teacher[k]) for k in teacher)
    # the student's EMA weights went into the pipeline, not its live ones
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    last = tmp_path / "checkpoints" / "step-0000004"
    ema = torch.load(last / "custom_checkpoint_0.pkl", weights_only=False)["shadow_params"]
    student = AsymKTransformer.from_pretrained(tmp_path / "pipeline" / "transformer")
    assert all(torch.equal(p, s) for p, s in zip(student.parameters(), ema, strict=True))
    live = _tensors(last / "model.safetensors")
    assert any(not torch.equal(saved[k], live[k]) for k in live)
    steps = []
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(image=torch.rand(3, 32, 32), audio=speech(0.5), sample_rate=16000, output_type="np",
                  callback_on_step_end=lambda p, i, t, kw: steps.append(t) or {}).frames
    assert frames.shape[1:] == (32, 32, 3) and len(frames) == round(0.5 * 25)
    assert max(steps) == 3 and len(steps) % 4 == 0  # 4 distilled steps per chunk


def test_two_process_launch(teacher_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO.parent) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    # On a CPU-only machine `--multi_gpu` + the scripts' cpu=True gives accelerate's MULTI_CPU (gloo).
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "train" / "akd.py"), "--config", str(CONFIG), "--teacher", str(teacher_dir),
               "--output-dir", str(tmp_path), "--max-steps", "2", "--num-threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 processes" in result.stdout + result.stderr
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["critic_loss"]) for r in records)
    assert (tmp_path / "pipeline" / "model_index.json").is_file()


# --------------------------------------------------------------------------------------- demo
def _demo_parser():
    import argparse

    from asymk_talker.cli import demo as demo_command

    parser = argparse.ArgumentParser(prog="asymk-talker")
    demo_command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_demo_without_default_model_names_the_flag(tmp_path, monkeypatch):
    from asymk_talker.cli import demo
    from asymk_talker.asymk_core.errors import InputError

    monkeypatch.setattr(demo, "DEFAULT_MODEL_DIR", tmp_path / "missing")
    args = _demo_parser().parse_args(["demo", "--output", str(tmp_path / "demo.mp4")])
    with pytest.raises(InputError, match="--model") as info:
        args.func(args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "demo.mp4").exists()


def test_demo_renders_video_side_by_side_and_metrics(teacher_dir, tmp_path, capsys):
    output = tmp_path / "demo.mp4"
    args = _demo_parser().parse_args(["demo", "--model", str(teacher_dir), "--output", str(output), "--seed", "7",
                                      "--seconds", "1", "--steps", "2", "--quiet", "--device", "cpu"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert output.is_file() and (tmp_path / "demo_vs_ground_truth.mp4").is_file()
    assert "FPS" in printed and "sync r =" in printed and "identity distance" in printed

    from asymk_talker.asymk_core.video_io import read_video

    frames, fps, audio, _ = read_video(tmp_path / "demo_vs_ground_truth.mp4")
    assert frames.shape[0] == 25 and frames.shape[2] == 2 * frames.shape[1] and audio is not None
