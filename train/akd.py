"""Stage 2: AKD, Asymmetric Kernel Distillation of the teacher into a few-step student.

The student and the critic start as copies of the teacher (``--teacher DIR``, a pipeline folder
from ``train/teacher.py``). Optionally the student first regresses the teacher's ODE outputs
with ground-truth kernels (``akd.ode_warmup_steps``). Then every step:

1. the student rolls out ``akd.num_chunks`` chunks with the KCLG loop from its own kernels (or GT
   kernels, per ``--kernel-mode``), random exit step per chunk, no gradient across chunks
   (:func:`asymk_core.akd.student_rollout`);
2. every ``akd.generator_every`` steps: DMD generator loss (teacher ``x_0`` with the kernel mode's
   kernels vs critic ``x_0`` with the student's kernels, :func:`asymk_core.akd.dmd_generator_loss`),
   student update, EMA of the student;
3. every step: critic flow-matching loss on the detached rollout (:func:`asymk_core.akd.critic_flow_loss`).

Runs anywhere accelerate does::

    python -m asymk_talker.train.akd --config train/configs/akd_synthetic.yaml --teacher runs/teacher-synthetic/pipeline
    accelerate launch --num_processes 2 --cpu train/akd.py --config train/configs/akd_synthetic_tiny.yaml \\
        --teacher runs/teacher-tiny/pipeline --kernel-mode asymmetric

Outputs in ``output_dir``: ``checkpoints/step-*`` (``--resume latest`` is the default),
``logs/`` (tensorboard + ``metrics.jsonl``), ``validation/`` and ``pipeline/``: a complete
``AsymKPipeline`` folder with the student's EMA weights, ``sampler="distilled"`` and
``num_inference_steps = akd.num_inference_steps`` (4), scheduler ``shift = akd.shift``, so
``AsymKPipeline.from_pretrained(output_dir / "pipeline")`` samples the distilled schedule.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: `accelerate launch train/akd.py`
    import pathlib
    import sys

    _here = pathlib.Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
    __package__ = "asymk_talker.train"
    import asymk_talker.train  # noqa: F401

import argparse
import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..asymk_core.akd import (
    KERNEL_MODES,
    AKDBatch,
    critic_flow_loss,
    dmd_generator_loss,
    ode_regression_loss,
    student_rollout,
)
from ..asymk_core.sampling import shifted_sigmas
from ..asymk_core.training_losses import sample_sigmas
from .common import (
    Config,
    EMA,
    add_common_args,
    append_jsonl,
    config_from_args,
    make_accelerator,
    make_lr_scheduler,
    make_optimizer,
    out_of_time,
    progress_bar,
    resume,
    save_checkpoint,
    write_json,
)
from .data import LatentClipDataset, SyntheticClipDataset, make_dataloader, read_cache_manifest
from .teacher import make_pipeline, render_validation, step_generator

logger = logging.getLogger("asymk_talker.train.akd")

DEFAULTS: dict = {
    "seed": 0,
    "output_dir": None,
    "model": {
        "teacher": None,              # teacher pipeline folder (train/teacher.py's output_dir/pipeline)
        "student": None,              # optional: initialise the student from another pipeline folder
        "gradient_checkpointing": False,
        "attention_backend": None,
    },
    "data": {
        "source": "cache",            # "cache" or "synthetic" (train/data.py)
        "cache_dir": None,
        "split": "train",
        "kernel_frames": None,        # None: the teacher pipeline's
        "chunk_frames": None,
        "batch_size": 4,
        "num_workers": 0,
        "in_memory": False,
        "reference": "random",
        "synthetic": {"size": 64, "fps": 25.0, "num_identities": None, "epoch_size": 1000},
    },
    "akd": {
        "kernel_mode": "asymmetric",  # asymmetric | teacher-forcing | self-forcing
        "num_chunks": 3,              # chunks per self-rollout
        "num_inference_steps": 4,     # the student's schedule
        "shift": None,                # schedule shift (None: the teacher scheduler's)
        "grad_chunks": "all",         # chunks whose exit step keeps gradient: all | last
        "generator_every": 5,         # generator update every N steps (critic every step)
        "guidance_scale": None,       # teacher audio CFG in the DMD loss (None: the teacher pipeline's)
        "dmd_sigma_min": 0.02,
        "dmd_sigma_max": 0.98,
        "dmd_sigma_shift": None,      # None: akd.shift
        "critic_sigma_sampling": "logit_normal",
        "critic_sigma_shift": None,   # None: akd.shift
        "ode_warmup_steps": 0,        # student regresses the teacher's ODE (GT kernels) first
        "ode_substeps": 4,            # teacher Euler steps between two student levels
        "ode_guidance_scale": None,   # None: akd.guidance_scale
    },
    "train": {
        "max_steps": 1600,            # DMD steps (critic steps), after the warm-up
        "max_minutes": None,          # stop (checkpoint + final pipeline) after this many minutes
        "learning_rate": 2e-5,        # student
        "critic_learning_rate": None, # None: train.learning_rate
        "weight_decay": 0.01,
        "adam_betas": [0.0, 0.999],
        "warmup_steps": 0,
        "lr_scheduler": "constant",
        "max_grad_norm": 1.0,
        "gradient_accumulation_steps": 1,
        "mixed_precision": "no",
        "num_threads": None,
    },
    "ema": {"decay": 0.99, "warmup": True},
    "checkpoint": {"every": 200, "keep": 3},
    "logging": {"report_to": "tensorboard", "log_every": 10},
    "validation": {
        "every": 0,
        "render": True,
        "seconds": 2.0,
        "identities": 2,
        "num_inference_steps": None,  # None: akd.num_inference_steps
        "guidance_scale": None,
        "synthetic_eval": True,
    },
    "pipeline": {},                   # extra generation defaults saved with the student
}


# ------------------------------------------------------------------------------------------ models
def load_teacher(config: Config) -> tuple[dict, dict]:
    """``(components, pipeline_config)`` of the teacher pipeline folder (``model.teacher``)."""
    from ..pipelines.pipeline_asymk import AsymKPipeline

    if not config.model.get("teacher"):
        raise ValueError("no teacher: pass --teacher DIR (a pipeline folder from train/teacher.py) or set model.teacher")
    pipe = AsymKPipeline.from_pretrained(config.model.teacher)
    components = dict(pipe.components)
    pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_") and k not in components}
    for name in ("vae", "audio_encoder"):
        components[name].requires_grad_(False).eval()
    return components, pipeline_config


def student_pipeline_config(config: Config, teacher_config: dict) -> dict:
    """The saved student's generation defaults: distilled sampler, few steps."""
    out = dict(teacher_config)
    out.update(config.get("pipeline") or {})
    out["kernel_frames"], out["chunk_frames"] = int(config.data.kernel_frames), int(config.data.chunk_frames)
    out["sampler"] = "distilled"
    out["num_inference_steps"] = int(config.akd.num_inference_steps)
    out["guidance_scale"] = 1.0  # the teacher's audio guidance is distilled into the student's single call
    return out


def resolve_config(config: Config, teacher_components: dict, teacher_config: dict) -> Config:
    """Fill ``None`` entries from the teacher and check the kernel mode."""
    data, akd = config.data, config.akd
    if akd.kernel_mode not in KERNEL_MODES:
        raise ValueError(f"akd.kernel_mode must be one of {KERNEL_MODES}, got {akd.kernel_mode!r}")
    for key in ("kernel_frames", "chunk_frames"):
        if data.get(key) is None:
            data[key] = int(teacher_config[key])
    if akd.get("shift") is None:
        akd.shift = float(teacher_components["scheduler"].config.get("shift", 3.0))
    if akd.get("guidance_scale") is None:
        akd.guidance_scale = float(teacher_config.get("guidance_scale", 1.0))
    for key in ("dmd_sigma_shift", "critic_sigma_shift"):
        if akd.get(key) is None:
            akd[key] = float(akd.shift)
    if akd.get("ode_guidance_scale") is None:
        akd.ode_guidance_scale = float(akd.guidance_scale)
    if config.validation.get("num_inference_steps") is None:
        config.validation.num_inference_steps = int(akd.num_inference_steps)
    if int(akd.generator_every) < 1 or int(akd.num_chunks) < 1:
        raise ValueError("akd.generator_every and akd.num_chunks must be >= 1")
    return config


def build_dataset(config: Config, components: dict, split: str | None = None, seed: int | None = None):
    """Windows of ``tau`` GT kernel latents + ``akd.num_chunks`` chunks (train/data.py)."""
    data = config.data
    window = int(components["transformer"].config.audio_window)
    seed = int(config.seed) if seed is None else seed
    tau, n, chunks = int(data.kernel_frames), int(data.chunk_frames), int(config.akd.num_chunks)
    if data.source == "cache":
        if not data.get("cache_dir"):
            raise ValueError("data.cache_dir is not set (build a cache with `python -m asymk_talker.train.data`)")
        meta, _ = read_cache_manifest(data.cache_dir)
        for key in ("latents_mean", "latents_std"):
            if not np.allclose(meta[key], list(components["vae"].config[key]), atol=1e-6):
                raise ValueError(f"the latent cache {data.cache_dir} was made with another VAE normalisation ({key})")
        return LatentClipDataset(data.cache_dir, tau, n, chunks, split=split or data.split, seed=seed,
                                 audio_window=window, reference=data.get("reference", "random"),
                                 in_memory=bool(data.get("in_memory")))
    if data.source == "synthetic":
        synthetic = data.synthetic
        return SyntheticClipDataset(
            components["vae"], components["audio_encoder"], tau, n, chunks,
            split="heldout" if (split or "train").startswith("heldout") else "train", seed=seed, audio_window=window,
            size=int(synthetic.size), fps=float(synthetic.fps), num_identities=synthetic.get("num_identities"),
            reference=data.get("reference", "random"), epoch_size=int(synthetic.get("epoch_size", 1000)),
            feature_extractor=components.get("feature_extractor"))
    raise ValueError(f"data.source must be 'cache' or 'synthetic', got {data.source!r}")


def _grad_chunks(config: Config) -> list[int] | None:
    mode = config.akd.get("grad_chunks", "all")
    if mode in (None, "all"):
        return None
    if mode == "last":
        return [int(config.akd.num_chunks) - 1]
    return [int(i) for i in mode]


# -------------------------------------------------------------------------------------------- step
def dmd_sigmas(config: Config, size: int, generator: torch.Generator, device) -> torch.Tensor:
    akd = config.akd
    sigma = sample_sigmas(size, generator, mode="uniform", shift=float(akd.dmd_sigma_shift))
    return sigma.clamp(float(akd.dmd_sigma_min), float(akd.dmd_sigma_max)).to(device)


def akd_step(config: Config, batch: AKDBatch, student, critic, teacher, generator: torch.Generator, *,
             train_generator: bool, grad_student=None, grad_critic=None, sigmas=None) -> dict:
    """One AKD step's losses (no backward, no optimiser): ``{"rollout", "generator": DMDOutput | None,
    "critic": FlowLossOutput}``. ``student``/``critic`` are the plain modules; ``grad_*`` the wrapped
    ones used for the calls that carry gradient."""
    akd = config.akd
    sigmas = sigmas or shifted_sigmas(int(akd.num_inference_steps), float(akd.shift))
    rollout = student_rollout(student, batch, int(akd.num_chunks), sigmas, akd.kernel_mode, generator,
                              chunk_frames=int(config.data.chunk_frames), grad=train_generator,
                              grad_chunks=_grad_chunks(config), grad_student=grad_student)
    out = {"rollout": rollout, "generator": None}
    trained = [c for c in rollout if c.output.requires_grad] if train_generator else []
    device = batch.target_latents.device
    if trained:
        x = torch.cat([c.output for c in trained])
        sigma = dmd_sigmas(config, x.shape[0], generator, device)
        noise = torch.randn(x.shape, generator=generator).to(device=device, dtype=x.dtype)
        out["generator"] = dmd_generator_loss(trained, teacher, critic, akd.kernel_mode, sigma, noise,
                                              guidance_scale=float(akd.guidance_scale))
    size = sum(c.output.shape[0] for c in rollout)
    sigma = sample_sigmas(size, generator, mode=akd.critic_sigma_sampling, shift=float(akd.critic_sigma_shift)
                          ).to(device)
    noise = torch.randn((size, *rollout[0].output.shape[1:]), generator=generator).to(device)
    out["critic"] = critic_flow_loss(rollout, grad_critic or critic, akd.kernel_mode, sigma, noise)
    return out


# ---------------------------------------------------------------------------------------------- main
def train(config: Config, resume_from: str | None = "latest") -> dict:
    """Distil the teacher; returns ``{"step", "pipeline_dir", "output_dir", ...}``."""
    from accelerate.utils import DistributedType

    teacher_components, teacher_config = load_teacher(config)
    config = resolve_config(config, teacher_components, teacher_config)
    accelerator = make_accelerator(config, "asymk-akd")
    output_dir = Path(config.output_dir)
    device = accelerator.device

    teacher = teacher_components["transformer"].requires_grad_(False).eval().to(device)
    if config.model.get("student"):
        from ..asymk_core.models.transformer import AsymKTransformer

        student = AsymKTransformer.from_pretrained(Path(config.model.student) / "transformer")
    else:
        student = copy.deepcopy(teacher)
    critic = copy.deepcopy(teacher)
    for model in (student, critic):
        model.requires_grad_(True).train()
        if config.model.get("attention_backend"):
            model.set_attention_backend(config.model.attention_backend)
        if config.model.get("gradient_checkpointing"):
            model.enable_gradient_checkpointing()
    for name in ("vae", "audio_encoder"):
        teacher_components[name].to(device)

    dataset = build_dataset(config, teacher_components)
    pipeline_config = student_pipeline_config(config, teacher_config)
    from ..asymk_core.vae import spatial_factor

    latent_h, latent_w = dataset[0]["target_latents"].shape[-2:]
    pipeline_config["height"] = int(latent_h) * spatial_factor(teacher_components["vae"])
    pipeline_config["width"] = int(latent_w) * spatial_factor(teacher_components["vae"])
    components = dict(teacher_components)
    components["scheduler"] = type(teacher_components["scheduler"]).from_config(
        teacher_components["scheduler"].config, shift=float(config.akd.shift))

    student_optimizer = make_optimizer(student.parameters(), config)
    critic_config = copy.deepcopy(config)
    critic_config.train.learning_rate = float(config.train.get("critic_learning_rate") or config.train.learning_rate)
    critic_optimizer = make_optimizer(critic.parameters(), critic_config)
    student_scheduler = make_lr_scheduler(student_optimizer, config, accelerator.num_processes)
    critic_scheduler = make_lr_scheduler(critic_optimizer, critic_config, accelerator.num_processes)
    (student_model, critic_model, student_optimizer, critic_optimizer, student_scheduler,
     critic_scheduler) = accelerator.prepare(student, critic, student_optimizer, critic_optimizer,
                                             student_scheduler, critic_scheduler)
    student_plain, critic_plain = accelerator.unwrap_model(student_model), accelerator.unwrap_model(critic_model)
    # FSDP needs its wrapper for every call; DDP for the calls that carry gradient only.
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    student_call = student_model if fsdp else student_plain
    critic_call = critic_model if fsdp else critic_plain
    ema = EMA(student_plain, decay=float(config.ema.decay), warmup=bool(config.ema.get("warmup", True)))
    accelerator.register_for_checkpointing(ema)
    step = resume(accelerator, output_dir, resume_from)

    akd = config.akd
    warmup_steps = int(akd.get("ode_warmup_steps", 0) or 0)
    max_steps = int(config.train.max_steps) + warmup_steps  # one counter: warm-up steps, then DMD steps
    accumulation = int(config.train.get("gradient_accumulation_steps", 1) or 1)
    batch_size = int(config.data.batch_size)
    loader = make_dataloader(dataset, batch_size, accelerator=accelerator, start_batch=step * accumulation,
                             num_workers=int(config.data.get("num_workers", 0) or 0))
    sigmas = shifted_sigmas(int(akd.num_inference_steps), float(akd.shift))
    metrics_path = output_dir / "logs" / "metrics.jsonl"
    log_every = int(config.logging.get("log_every", 10) or 10)
    checkpoint_every = int(config.checkpoint.get("every", 0) or 0)
    validation_every = int(config.validation.get("every", 0) or 0)
    max_norm = config.train.get("max_grad_norm")

    logger.info("AKD (%s): %d-step student, %d chunks per rollout, generator every %d, ODE warm-up %d, "
                "batch %d x %d processes, steps %d -> %d", akd.kernel_mode, int(akd.num_inference_steps),
                int(akd.num_chunks), int(akd.generator_every), warmup_steps, batch_size, accelerator.num_processes,
                step, max_steps)
    bar = progress_bar(accelerator, max_steps, initial=step, desc=f"akd-{akd.kernel_mode}")
    micro_step = step * accumulation
    window: dict[str, list] = {}
    last: dict = {}
    started = time.perf_counter()
    data_iter = iter(loader)
    while step < max_steps:
        batch = AKDBatch.from_dict(next(data_iter), device=device)
        generator = step_generator(int(config.seed), micro_step, accelerator.process_index)
        warming_up = step < warmup_steps
        dmd_step = step - warmup_steps
        train_generator = warming_up or dmd_step % int(akd.generator_every) == 0
        with accelerator.accumulate(student_model, critic_model):
            with accelerator.autocast():
                if warming_up:
                    chunk = int(torch.randint(0, int(akd.num_chunks), (1,), generator=generator))
                    losses = {"ode_loss": ode_regression_loss(
                        student_plain, teacher, batch, sigmas, chunk, int(config.data.chunk_frames), generator,
                        substeps=int(akd.ode_substeps), guidance_scale=float(akd.ode_guidance_scale),
                        grad_student=student_model)}
                    generator_loss, critic_loss = losses["ode_loss"], None
                else:
                    out = akd_step(config, batch, student_call, critic_call, teacher, generator,
                                   train_generator=train_generator, grad_student=student_model,
                                   grad_critic=critic_model, sigmas=sigmas)
                    generator_loss = out["generator"].loss if out["generator"] is not None else None
                    critic_loss = out["critic"].loss
                    losses = {"critic_loss": critic_loss}
                    if generator_loss is not None:
                        losses["generator_loss"] = generator_loss
                        losses["dmd_grad_norm"] = out["generator"].grad_norm
            if generator_loss is not None:
                # Gradient of the generator loss must not reach the critic (its outputs are detached).
                accelerator.backward(generator_loss)
                if accelerator.sync_gradients and max_norm:
                    accelerator.clip_grad_norm_(student_model.parameters(), float(max_norm))
                student_optimizer.step()
                student_scheduler.step()
                student_optimizer.zero_grad(set_to_none=True)
            if critic_loss is not None:
                accelerator.backward(critic_loss)
                if accelerator.sync_gradients and max_norm:
                    accelerator.clip_grad_norm_(critic_model.parameters(), float(max_norm))
                critic_optimizer.step()
                critic_scheduler.step()
                critic_optimizer.zero_grad(set_to_none=True)
        micro_step += 1
        for key, value in losses.items():
            window.setdefault(key, []).append(value.detach().float())
        if not accelerator.sync_gradients:
            continue
        step += 1
        if generator_loss is not None:
            ema.step(student_plain)
        record = {"step": step, "phase": "ode" if warming_up else "dmd",
                  "lr": student_scheduler.get_last_lr()[0]}
        for key, values in window.items():
            record[key] = accelerator.reduce(torch.stack(values).mean(), "mean").item()
        window = {}
        last.update(record)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k.endswith("loss")})
        if accelerator.is_main_process:
            append_jsonl(metrics_path, {**record, "time": time.perf_counter() - started})
        if step % log_every == 0 or step == max_steps:
            accelerator.log({f"train/{k}": v for k, v in record.items() if isinstance(v, float)}, step=step)
        stop = out_of_time(accelerator, started, config.train.get("max_minutes"))
        if checkpoint_every and step % checkpoint_every == 0 and step < max_steps and not stop:
            save_checkpoint(accelerator, output_dir, step, keep=config.checkpoint.get("keep", 3))
        if validation_every and step % validation_every == 0 and step < max_steps and not stop:
            run_validation(accelerator, config, components, pipeline_config, student_model, ema, step)
        if stop:
            logger.info("time budget of %s minutes reached at step %d", config.train.max_minutes, step)
            break
    bar.close()

    save_checkpoint(accelerator, output_dir, step, keep=config.checkpoint.get("keep", 3))
    pipeline_dir = output_dir / "pipeline"
    save_student_pipeline(accelerator, components, pipeline_config, student_model, ema, pipeline_dir)
    scalars = run_validation(accelerator, config, components, pipeline_config, student_model, ema, step,
                             pipeline_dir=pipeline_dir)
    summary = {"step": step, "kernel_mode": akd.kernel_mode, "pipeline_dir": str(pipeline_dir),
               "output_dir": str(output_dir), "last": last, "validation": scalars}
    if accelerator.is_main_process:
        write_json(output_dir / "summary.json", summary)
    accelerator.end_training()
    return summary


def run_validation(accelerator, config, components, pipeline_config, model, ema, step,
                   pipeline_dir: Path | None = None) -> dict:
    """Render held-out clips with the student's EMA weights (distilled sampler) on the main process."""
    from accelerate.utils import DistributedType

    scalars: dict = {}
    if (accelerator.is_main_process and config.validation.get("render", True)
            and accelerator.distributed_type != DistributedType.FSDP):
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        try:
            out_dir = Path(config.output_dir) / "validation"
            if pipeline_dir is not None:
                from ..pipelines.pipeline_asymk import AsymKPipeline

                pipe = AsymKPipeline.from_pretrained(pipeline_dir)
                pipe.to(accelerator.device)
                scalars.update(render_validation(pipe, config, step, out_dir))
            else:
                with ema.averaged(unwrapped):
                    pipe = make_pipeline(components, unwrapped, pipeline_config)
                    scalars.update(render_validation(pipe, config, step, out_dir))
        finally:
            unwrapped.train()
        if scalars:
            accelerator.log(scalars, step=step)
            append_jsonl(Path(config.output_dir) / "logs" / "validation.jsonl", {"step": step, **scalars})
            logger.info("validation at step %d: %s", step,
                        ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if isinstance(v, float)))
    accelerator.wait_for_everyone()
    return scalars


def save_student_pipeline(accelerator, components, pipeline_config, model, ema, pipeline_dir: Path) -> None:
    """A complete ``AsymKPipeline`` folder: teacher's VAE/audio encoder, the student's EMA weights,
    ``sampler="distilled"``, few steps, the distilled schedule's shift in the scheduler config."""
    from ..asymk_core.models.transformer import AsymKTransformer

    unwrapped = accelerator.unwrap_model(model)
    with ema.averaged(unwrapped):
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        transformer = AsymKTransformer.from_config(unwrapped.config)
        transformer.load_state_dict({k: v.detach().float().cpu() for k, v in state.items()})
        pipe = make_pipeline({k: v.to("cpu") if hasattr(v, "to") else v for k, v in components.items()},
                             transformer.eval(), pipeline_config)
        pipe.save_pretrained(str(pipeline_dir))
        for name in ("vae", "audio_encoder"):
            components[name].to(accelerator.device)
        logger.info("saved student pipeline %s (sampler=distilled, %d steps)", pipeline_dir,
                    pipeline_config["num_inference_steps"])
    accelerator.wait_for_everyone()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="AsymK-Talker stage 2: asymmetric kernel distillation (DMD).")
    add_common_args(parser)
    parser.add_argument("--teacher", help="teacher pipeline folder (sets model.teacher)")
    parser.add_argument("--kernel-mode", dest="kernel_mode", choices=KERNEL_MODES,
                        help="asymmetric (the method), teacher-forcing or self-forcing (sets akd.kernel_mode)")
    parser.add_argument("--ode-warmup-steps", dest="ode_warmup_steps", type=int,
                        help="ODE-regression warm-up steps before DMD (sets akd.ode_warmup_steps)")
    parser.add_argument("--generator-every", dest="generator_every", type=int,
                        help="generator update every N steps (sets akd.generator_every)")
    args = parser.parse_args(argv)
    config = config_from_args(args, DEFAULTS)
    for flag, key in (("teacher", "model.teacher"), ("kernel_mode", "akd.kernel_mode"),
                      ("ode_warmup_steps", "akd.ode_warmup_steps"), ("generator_every", "akd.generator_every")):
        if getattr(args, flag) is not None:
            config.set_path(key, getattr(args, flag))
    return train(config, resume_from=args.resume)


if __name__ == "__main__":
    main()
