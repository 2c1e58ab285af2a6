"""Stage 1: the flow-matching teacher, trained with ground-truth motion kernels.

Each sample is a window of cached latents ``[GT kernel (tau) | chunk (n)]`` with its TRE reference
and per-latent audio windows (``train/data.py``). The chunk is noised to a random ``sigma``
(logit-normal or uniform, time-shifted), the transformer predicts the velocity on
``[kernel | noisy chunk]`` (``asymk_core.sampling.predict_velocity``; kernel frames at time 0), and
the loss is the flow-matching MSE (``asymk_core.training_losses.flow_matching_loss``). Audio is
dropped per sample (``audio_features=None``, the unconditional branch of guidance) and the
reference is zeroed per sample, so the teacher supports classifier-free guidance; the kernel can be
lightly noised so the teacher tolerates imperfect (generated) kernels, and drifted
(``flow.kernel_drift``: blurred and colour-shifted, with a clean target) so it pulls a drifting video
back to the reference.

Runs anywhere accelerate does::

    python -m asymk_talker.train.teacher --config train/configs/synthetic.yaml
    accelerate launch --config_file train/accelerate/multi_gpu_ddp.yaml train/teacher.py \\
        --config train/configs/base.yaml
    accelerate launch --num_processes 2 --cpu train/teacher.py --config train/configs/synthetic_tiny.yaml

Outputs in ``output_dir``: ``checkpoints/step-*`` (``accelerator.save_state``; ``--resume latest``
is the default), ``logs/`` (tensorboard + ``metrics.jsonl``), ``validation/`` (rendered clips and
metrics), and ``pipeline/``: a complete ``AsymKPipeline`` folder with the EMA weights,
``sampler="teacher"``.
"""

from __future__ import annotations

# Absolute imports: this file also runs as a script (`accelerate launch train/teacher.py`).
import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedType
from diffusers import AutoencoderKLWan

from asymk_talker.asymk_core.model_folder import check_components_match, preset_components
from asymk_talker.asymk_core.models.transformer import AsymKTransformer
from asymk_talker.asymk_core.sampling import ChunkConditions
from asymk_talker.asymk_core.training_losses import drift_kernels, flow_matching_loss, sample_sigmas, touch_parameters
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
from asymk_talker.train.data import make_dataloader
from asymk_talker.train.pipeline_trainer import PipelineTrainer, build_clip_dataset, load_pipeline_parts

logger = logging.getLogger("asymk_talker.train.teacher")

DEFAULTS: dict = {
    "seed": 0,
    "output_dir": None,
    "model": {
        "preset": "synthetic",        # transformer/pipeline preset (tiny, synthetic, base)
        "pipeline": None,             # init every component from a pipeline folder instead
        "vae": None,                  # AutoencoderKLWan folder (train/vae.py output or a Wan VAE)
        "transformer": None,          # transformer folder to initialise from (e.g. converted Wan weights)
        "transformer_overrides": {},  # AsymKTransformer config overrides on the preset or on `transformer`
        "gradient_checkpointing": False,
        "attention_backend": None,    # e.g. "xformers", "flash"
    },
    "data": {
        "source": "cache",            # "cache" (train/data.py build_latent_cache) or "synthetic" (on the fly)
        "cache_dir": None,
        "split": "train",
        "kernel_frames": 3,
        "chunk_frames": 4,
        "batch_size": 8,
        "num_workers": 0,
        "in_memory": False,
        "reference": "random",
        "synthetic": {"size": 64, "fps": 25.0, "num_identities": None, "epoch_size": 1000},
    },
    "flow": {
        "sigma_sampling": "logit_normal",
        "logit_mean": 0.0,
        "logit_std": 1.0,
        "shift": 3.0,
        "audio_dropout": 0.1,         # per sample: audio -> None (CFG's unconditional branch)
        "reference_dropout": 0.05,    # per sample: reference -> zeros
        "kernel_noise": 0.02,         # kernel += U(0, kernel_noise) * N(0, I) per sample
        "kernel_drift": 0.0,          # per-sample probability of a drifted kernel (asymk_core.training_losses.drift_kernels)
        "kernel_drift_scale": 0.3,    # its largest appearance shift, latent units
    },
    "train": {
        "max_steps": 10000,
        "max_minutes": None,          # stop (checkpoint + final pipeline) after this many minutes
        "learning_rate": 2e-4,
        "weight_decay": 0.01,
        "adam_betas": [0.9, 0.999],
        "warmup_steps": 200,
        "lr_scheduler": "constant_with_warmup",
        "max_grad_norm": 1.0,
        "gradient_accumulation_steps": 1,
        "mixed_precision": "no",
        "num_threads": None,
    },
    "ema": {"decay": 0.999, "warmup": True},
    "checkpoint": {"every": 500, "keep": 3},
    "logging": {"report_to": "tensorboard", "log_every": 10},
    "validation": {
        "every": 0,                   # steps; 0: only at the end
        "loss_batches": 4,            # held-out flow-matching loss at fixed sigmas
        "render": True,               # render clips with the pipeline (teacher sampler)
        "seconds": 2.0,
        "identities": 2,
        "num_inference_steps": 10,
        "guidance_scale": None,       # None: the pipeline default
        "synthetic_eval": True,       # score renders with asymk_core.eval (synthetic avatars only)
    },
    "pipeline": {},                   # generation defaults saved with the pipeline (overrides the preset's)
}

VALIDATION_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


# ------------------------------------------------------------------------------------------ models
def build_components(config: Config) -> tuple[dict, dict]:
    """``(components, pipeline_config)``: vae, transformer, audio_encoder, feature_extractor, scheduler."""
    model = config.model
    if model.get("pipeline"):
        components, pipeline_config = load_pipeline_parts(model.pipeline)
    else:
        components, pipeline_config = preset_components(model.preset, seed=int(config.seed))
        if model.get("transformer_overrides") and not model.get("transformer"):  # else applied when loading it
            torch.manual_seed(int(config.seed))
            components["transformer"] = AsymKTransformer.from_preset(model.preset, **model.transformer_overrides)
    if model.get("vae"):
        components["vae"] = AutoencoderKLWan.from_pretrained(model.vae)
    if model.get("transformer"):  # the overrides change the architecture options, not the weights' shapes
        components["transformer"] = AsymKTransformer.from_pretrained(model.transformer,
                                                                     **(model.get("transformer_overrides") or {}))
    for name in ("vae", "audio_encoder"):
        components[name].requires_grad_(False).eval()
    check_components_match(components)
    pipeline_config.update(config.get("pipeline") or {})
    pipeline_config["kernel_frames"] = int(config.data.kernel_frames)
    pipeline_config["chunk_frames"] = int(config.data.chunk_frames)
    pipeline_config["sampler"] = "teacher"
    return components, pipeline_config


# -------------------------------------------------------------------------------------------- loss
def prepare_conditions(batch: dict, flow: Config, generator: torch.Generator, device, dtype=torch.float32,
                       train: bool = True) -> tuple[torch.Tensor, ChunkConditions, torch.Tensor]:
    """Batch -> (clean chunk, conditions, audio_keep mask [B]); applies dropout and kernel noise if ``train``."""
    clean = batch["target_latents"].to(device=device, dtype=dtype)
    kernel = batch["kernel_latents"].to(device=device, dtype=dtype)
    reference = batch["reference_latents"].to(device=device, dtype=dtype)
    audio = batch["audio_features"].to(device=device, dtype=dtype)
    size = clean.shape[0]
    audio_keep = torch.ones(size, dtype=torch.bool)
    if train:
        audio_keep = torch.rand(size, generator=generator) >= float(flow.audio_dropout)
        drop_reference = torch.rand(size, generator=generator) < float(flow.reference_dropout)
        reference = reference * (~drop_reference).to(device=device, dtype=dtype).view(-1, 1, 1, 1, 1)
        if float(flow.kernel_noise) > 0:
            scale = float(flow.kernel_noise) * torch.rand(size, generator=generator)
            kernel_noise = torch.randn(kernel.shape, generator=generator).to(device=device, dtype=dtype)
            kernel = kernel + scale.to(device=device, dtype=dtype).view(-1, 1, 1, 1, 1) * kernel_noise
        kernel = drift_kernels(kernel, float(flow.kernel_drift), float(flow.kernel_drift_scale), generator)
    return clean, ChunkConditions(kernel=kernel, reference_latents=reference, audio_features=audio), audio_keep


def training_loss(model, batch: dict, flow: Config, generator: torch.Generator, device=None,
                  unconditional_model=None):
    """One teacher loss on a batch (see module docstring); returns ``FlowLossOutput``."""
    device = device or next(model.parameters()).device
    clean, conditions, audio_keep = prepare_conditions(batch, flow, generator, device)
    sigma = sample_sigmas(clean.shape[0], generator, mode=flow.sigma_sampling, logit_mean=float(flow.logit_mean),
                          logit_std=float(flow.logit_std), shift=float(flow.shift)).to(device)
    noise = torch.randn(clean.shape, generator=generator).to(device=device, dtype=clean.dtype)
    return flow_matching_loss(model, clean, conditions, sigma, noise, audio_keep, unconditional_model)


@torch.no_grad()
def validation_loss(model, batches: list[dict], flow: Config, seed: int) -> dict:
    """Held-out loss at fixed sigmas with fixed noise (comparable across steps): ``{"val/loss", "val/loss_s0.5", ...}``."""
    device = next(model.parameters()).device
    totals = {s: [] for s in VALIDATION_SIGMAS}
    for number, batch in enumerate(batches):
        generator = torch.Generator().manual_seed(seed + number)
        clean, conditions, _ = prepare_conditions(batch, flow, generator, device, train=False)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        for s in VALIDATION_SIGMAS:
            sigma = torch.full((clean.shape[0],), s, device=device)
            totals[s].append(float(flow_matching_loss(model, clean, conditions, sigma, noise).loss))
    out = {f"val/loss_s{s:g}": float(np.mean(v)) for s, v in totals.items()}
    out["val/loss"] = float(np.mean([out[f"val/loss_s{s:g}"] for s in VALIDATION_SIGMAS]))
    return out


# ------------------------------------------------------------------------------------- validation
def validation_batches(config: Config, components: dict) -> list[dict]:
    """Fixed held-out batches for :func:`validation_loss` (empty if the data has no held-out split)."""
    count = int(config.validation.get("loss_batches", 0) or 0)
    if count <= 0:
        return []
    try:
        dataset = build_clip_dataset(config, components, split="heldout", seed=12345)
    except ValueError as error:
        logger.info("no held-out validation loss: %s", error)
        return []
    loader = iter(make_dataloader(dataset, int(config.data.batch_size)))
    return [next(loader) for _ in range(count)]


# ------------------------------------------------------------------------------------------- stage
class TeacherTrainer(PipelineTrainer):
    """Stage 1 on the shared loop: one flow-matching loss per micro-batch; validation = held-out
    loss at fixed sigmas (live and EMA weights) and a rendered clip (teacher sampler)."""

    project = "asymk-teacher"
    logger = logger

    def setup(self) -> None:
        config, accelerator = self.config, self.accelerator
        self.components, self.pipeline_config = build_components(config)
        transformer = self.components["transformer"]
        if config.model.get("attention_backend"):
            transformer.set_attention_backend(config.model.attention_backend)
        if config.model.get("gradient_checkpointing"):
            transformer.enable_gradient_checkpointing()
        transformer.train().requires_grad_(True)
        for name in ("vae", "audio_encoder"):
            self.components[name].to(accelerator.device)
        self.dataset = build_clip_dataset(config, self.components)
        self.set_frame_size(self.dataset)

        optimizer = make_optimizer(transformer.parameters(), config)
        lr_scheduler = make_lr_scheduler(optimizer, config, accelerator.num_processes)
        self.model, self.optimizer, self.lr_scheduler = accelerator.prepare(transformer, optimizer, lr_scheduler)
        self.unwrapped = accelerator.unwrap_model(self.model)
        # Under DDP the second (unconditional) sub-batch goes through the plain module: the wrapped
        # model must be called once per step. FSDP needs its wrapper for every call.
        self.unconditional = (self.unwrapped if isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
                              else None)
        self.fsdp = accelerator.distributed_type == DistributedType.FSDP
        self.val_batches = (validation_batches(config, self.components)
                            if accelerator.is_main_process or self.fsdp else [])

    def describe(self, step: int, max_steps: int) -> str:
        accelerator, config = self.accelerator, self.config
        return (f"teacher: {sum(p.numel() for p in self.unwrapped.parameters())} parameters, {len(self.dataset)} "
                f"clips, batch {int(config.data.batch_size)} x {accelerator.num_processes} processes x "
                f"{int(config.train.get('gradient_accumulation_steps', 1) or 1)} accumulation, "
                f"steps {step} -> {max_steps}")

    def train_step(self, batch, micro_step: int, step: int) -> dict[str, torch.Tensor]:
        accelerator = self.accelerator
        generator = step_generator(int(self.config.seed), micro_step, accelerator.process_index)
        with accelerator.autocast():
            out = training_loss(self.model, batch, self.config.flow, generator, accelerator.device, self.unconditional)
        loss = out.loss
        if accelerator.num_processes > 1 and out.all_unconditional:
            loss = touch_parameters(loss, self.unwrapped)  # DDP: every parameter needs a gradient
        optimizer_step(accelerator, loss, self.model, self.optimizer, self.lr_scheduler,
                       self.config.train.get("max_grad_norm"))
        return {"loss": loss}

    def step_record(self, step: int, losses: dict[str, float]) -> dict:
        return {"step": step, "loss": losses["loss"], "lr": self.lr_scheduler.get_last_lr()[0]}

    def validate(self, step: int, saved: Path | None = None) -> dict[str, float]:
        flow = self.config.flow
        if self.fsdp:  # sharded model: every rank takes part in each forward; loss on the live weights only
            if not self.val_batches:
                return {}
            with eval_mode(self.model):
                return validation_loss(self.model, self.val_batches, flow, seed=0)
        if not self.accelerator.is_main_process:
            return {}
        scalars: dict = {}
        with eval_mode(self.unwrapped):
            if self.val_batches:
                scalars.update(validation_loss(self.unwrapped, self.val_batches, flow, seed=0))
                with self.averaged(self.unwrapped):
                    ema = validation_loss(self.unwrapped, self.val_batches, flow, seed=0)
                scalars.update({k.replace("val/", "val_ema/"): v for k, v in ema.items()})
            if self.config.validation.get("render", True):
                scalars.update(self.render(step, saved))
        return scalars

    def summary(self, step: int, last: dict, validation: dict) -> dict:
        return {"step": step, "loss": last.get("loss", float("nan")), "pipeline_dir": str(self.output_dir / "pipeline"),
                "output_dir": str(self.output_dir), "validation": validation}


def train(config: Config, resume_from: str | None = "latest") -> dict:
    """Train the teacher; returns ``{"step", "loss", "pipeline_dir", "output_dir", "validation"}``."""
    return TeacherTrainer(config).train(resume_from)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="AsymK-Talker stage 1: flow-matching teacher with GT kernels.")
    add_common_args(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args, DEFAULTS)
    return train(config, resume_from=args.resume)


if __name__ == "__main__":
    main()
