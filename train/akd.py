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

# Absolute imports: this file also runs as a script (`accelerate launch train/akd.py`).
import argparse
import copy
import logging
from pathlib import Path

import torch
from accelerate.utils import DistributedType

from asymk_talker.asymk_core.akd import (
    KERNEL_MODES,
    AKDBatch,
    critic_flow_loss,
    dmd_generator_loss,
    ode_regression_loss,
    student_rollout,
)
from asymk_talker.asymk_core.models.transformer import AsymKTransformer
from asymk_talker.asymk_core.sampling import shifted_sigmas
from asymk_talker.asymk_core.training_losses import drift_kernels, sample_sigmas
from asymk_talker.train.common import (
    Config,
    add_common_args,
    config_from_args,
    eval_mode,
    make_lr_scheduler,
    make_optimizer,
    optimizer_step,
    step_generator,
)
from asymk_talker.train.pipeline_trainer import PipelineTrainer, build_clip_dataset, load_pipeline_parts

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
        "kernel_drift": 0.0,          # per-rollout-sample probability of a drifted first student kernel
        "kernel_drift_scale": 0.3,    # (asymk_core.training_losses.drift_kernels); the teacher keeps GT kernels
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
    if not config.model.get("teacher"):
        raise ValueError("no teacher: pass --teacher DIR (a pipeline folder from train/teacher.py) or set model.teacher")
    return load_pipeline_parts(config.model.teacher)


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
    drifted = drift_kernels(batch.kernel_latents, float(akd.kernel_drift), float(akd.kernel_drift_scale), generator)
    rollout = student_rollout(student, batch, int(akd.num_chunks), sigmas, akd.kernel_mode, generator,
                              chunk_frames=int(config.data.chunk_frames), grad=train_generator,
                              grad_chunks=_grad_chunks(config), grad_student=grad_student,
                              initial_kernel=drifted)
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


# ------------------------------------------------------------------------------------------- stage
class AKDTrainer(PipelineTrainer):
    """Stage 2 on the shared loop: student and critic start as copies of the teacher; each
    micro-batch is an ODE warm-up step or an AKD step (:func:`akd_step`); the EMA follows the
    student's updates; validation renders with the distilled sampler."""

    project = "asymk-akd"
    logger = logger

    def __init__(self, config: Config):
        self.teacher_components, self.teacher_config = load_teacher(config)
        super().__init__(resolve_config(config, self.teacher_components, self.teacher_config))
        self.warmup_steps = int(self.config.akd.get("ode_warmup_steps", 0) or 0)
        self.sigmas = shifted_sigmas(int(self.config.akd.num_inference_steps), float(self.config.akd.shift))
        self.generator_updated = False

    @property
    def label(self) -> str:
        return f"akd-{self.config.akd.kernel_mode}"

    def total_steps(self) -> int:
        return int(self.config.train.max_steps) + self.warmup_steps  # one counter: warm-up steps, then DMD steps

    def setup(self) -> None:
        config, accelerator = self.config, self.accelerator
        teacher_components = self.teacher_components
        device = accelerator.device
        self.teacher = teacher_components["transformer"].requires_grad_(False).eval().to(device)
        if config.model.get("student"):
            student = AsymKTransformer.from_pretrained(Path(config.model.student) / "transformer")
        else:
            student = copy.deepcopy(self.teacher)
        critic = copy.deepcopy(self.teacher)
        for model in (student, critic):
            model.requires_grad_(True).train()
            if config.model.get("attention_backend"):
                model.set_attention_backend(config.model.attention_backend)
            if config.model.get("gradient_checkpointing"):
                model.enable_gradient_checkpointing()
        for name in ("vae", "audio_encoder"):
            teacher_components[name].to(device)

        self.dataset = build_clip_dataset(config, teacher_components, int(config.akd.num_chunks))
        self.pipeline_config = student_pipeline_config(config, self.teacher_config)
        self.components = dict(teacher_components)
        self.components["scheduler"] = type(teacher_components["scheduler"]).from_config(
            teacher_components["scheduler"].config, shift=float(config.akd.shift))
        self.set_frame_size(self.dataset)

        student_optimizer = make_optimizer(student.parameters(), config)
        critic_config = copy.deepcopy(config)
        critic_config.train.learning_rate = float(config.train.get("critic_learning_rate") or config.train.learning_rate)
        critic_optimizer = make_optimizer(critic.parameters(), critic_config)
        student_scheduler = make_lr_scheduler(student_optimizer, config, accelerator.num_processes)
        critic_scheduler = make_lr_scheduler(critic_optimizer, critic_config, accelerator.num_processes)
        (self.model, self.critic_model, self.student_optimizer, self.critic_optimizer, self.student_scheduler,
         self.critic_scheduler) = accelerator.prepare(student, critic, student_optimizer, critic_optimizer,
                                                      student_scheduler, critic_scheduler)
        self.models = (self.model, self.critic_model)
        self.student_plain = accelerator.unwrap_model(self.model)
        self.critic_plain = accelerator.unwrap_model(self.critic_model)
        # FSDP needs its wrapper for every call; DDP for the calls that carry gradient only.
        self.fsdp = accelerator.distributed_type == DistributedType.FSDP
        self.student_call = self.model if self.fsdp else self.student_plain
        self.critic_call = self.critic_model if self.fsdp else self.critic_plain

    def describe(self, step: int, max_steps: int) -> str:
        akd = self.config.akd
        return (f"AKD ({akd.kernel_mode}): {int(akd.num_inference_steps)}-step student, {int(akd.num_chunks)} chunks "
                f"per rollout, generator every {int(akd.generator_every)}, ODE warm-up {self.warmup_steps}, "
                f"batch {int(self.config.data.batch_size)} x {self.accelerator.num_processes} processes, "
                f"steps {step} -> {max_steps}")

    def train_step(self, batch, micro_step: int, step: int) -> dict[str, torch.Tensor]:
        config, accelerator, akd = self.config, self.accelerator, self.config.akd
        batch = AKDBatch.from_dict(batch, device=accelerator.device)
        generator = step_generator(int(config.seed), micro_step, accelerator.process_index)
        warming_up = step < self.warmup_steps
        train_generator = warming_up or (step - self.warmup_steps) % int(akd.generator_every) == 0
        with accelerator.autocast():
            if warming_up:
                chunk = int(torch.randint(0, int(akd.num_chunks), (1,), generator=generator))
                losses = {"ode_loss": ode_regression_loss(
                    self.student_plain, self.teacher, batch, self.sigmas, chunk, int(config.data.chunk_frames),
                    generator, substeps=int(akd.ode_substeps), guidance_scale=float(akd.ode_guidance_scale),
                    grad_student=self.model)}
                generator_loss, critic_loss = losses["ode_loss"], None
            else:
                out = akd_step(config, batch, self.student_call, self.critic_call, self.teacher, generator,
                               train_generator=train_generator, grad_student=self.model,
                               grad_critic=self.critic_model, sigmas=self.sigmas)
                generator_loss = out["generator"].loss if out["generator"] is not None else None
                critic_loss = out["critic"].loss
                losses = {"critic_loss": critic_loss}
                if generator_loss is not None:
                    losses["generator_loss"] = generator_loss
                    losses["dmd_grad_norm"] = out["generator"].grad_norm
        max_norm = config.train.get("max_grad_norm")
        if generator_loss is not None:
            # Gradient of the generator loss must not reach the critic (its outputs are detached).
            optimizer_step(accelerator, generator_loss, self.model, self.student_optimizer, self.student_scheduler,
                           max_norm)
        if critic_loss is not None:
            optimizer_step(accelerator, critic_loss, self.critic_model, self.critic_optimizer, self.critic_scheduler,
                           max_norm)
        self.generator_updated = generator_loss is not None
        return losses

    def update_ema(self, step: int) -> None:
        if self.generator_updated:
            super().update_ema(step)

    def step_record(self, step: int, losses: dict[str, float]) -> dict:
        return {"step": step, "phase": "ode" if step <= self.warmup_steps else "dmd",
                "lr": self.student_scheduler.get_last_lr()[0], **losses}

    def validate(self, step: int, saved: Path | None = None) -> dict[str, float]:
        """Render held-out clips with the student's EMA weights (distilled sampler) on the main process."""
        if not (self.accelerator.is_main_process and self.config.validation.get("render", True)) or self.fsdp:
            return {}
        with eval_mode(self.student_plain):
            return self.render(step, saved)

    def summary(self, step: int, last: dict, validation: dict) -> dict:
        return {"step": step, "kernel_mode": self.config.akd.kernel_mode,
                "pipeline_dir": str(self.output_dir / "pipeline"), "output_dir": str(self.output_dir),
                "last": last, "validation": validation}


def train(config: Config, resume_from: str | None = "latest") -> dict:
    """Distil the teacher; returns ``{"step", "kernel_mode", "pipeline_dir", "output_dir", "last", "validation"}``."""
    return AKDTrainer(config).train(resume_from)


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
