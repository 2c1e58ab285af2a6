"""Stage 1: the flow-matching teacher, trained with ground-truth motion kernels.

Each sample is a window of cached latents ``[GT kernel (tau) | chunk (n)]`` with its TRE reference
and per-latent audio windows (``train/data.py``). The chunk is noised to a random ``sigma``
(logit-normal or uniform, time-shifted), the transformer predicts the velocity on
``[kernel | noisy chunk]`` (``asymk_core.sampling.predict_velocity``; kernel frames at time 0), and
the loss is the flow-matching MSE (``asymk_core.training_losses.flow_matching_loss``). Audio is
dropped per sample (``audio_features=None``, the unconditional branch of guidance) and the
reference is zeroed per sample, so the teacher supports classifier-free guidance; the kernel can be
lightly noised so the teacher tolerates imperfect (generated) kernels.

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

if __name__ == "__main__" and not __package__:  # run as a file: `accelerate launch train/teacher.py`
    import pathlib
    import sys

    _here = pathlib.Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
    __package__ = "asymk_talker.train"
    import asymk_talker.train  # noqa: F401

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..asymk_core.sampling import ChunkConditions
from ..asymk_core.training_losses import flow_matching_loss, sample_sigmas, touch_parameters
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

logger = logging.getLogger("asymk_talker.train.teacher")

DEFAULTS: dict = {
    "seed": 0,
    "output_dir": None,
    "model": {
        "preset": "synthetic",        # transformer/pipeline preset (tiny, synthetic, base)
        "pipeline": None,             # init every component from a pipeline folder instead
        "vae": None,                  # AutoencoderKLWan folder (train/vae.py output or a Wan VAE)
        "transformer": None,          # transformer folder to initialise from (e.g. converted Wan weights)
        "transformer_overrides": {},  # AsymKTransformer config overrides on top of the preset
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
    from diffusers import AutoencoderKLWan

    from ..asymk_core.model_folder import check_components_match, preset_components
    from ..asymk_core.models.transformer import AsymKTransformer

    model = config.model
    if model.get("pipeline"):
        from ..pipelines.pipeline_asymk import AsymKPipeline

        pipe = AsymKPipeline.from_pretrained(model.pipeline)
        components = dict(pipe.components)
        pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_") and k not in components}
    else:
        components, pipeline_config = preset_components(model.preset, seed=int(config.seed))
        if model.get("transformer_overrides"):
            torch.manual_seed(int(config.seed))
            components["transformer"] = AsymKTransformer.from_preset(model.preset, **model.transformer_overrides)
    if model.get("vae"):
        components["vae"] = AutoencoderKLWan.from_pretrained(model.vae)
    if model.get("transformer"):
        components["transformer"] = AsymKTransformer.from_pretrained(model.transformer)
    for name in ("vae", "audio_encoder"):
        components[name].requires_grad_(False).eval()
    check_components_match(components)
    pipeline_config.update(config.get("pipeline") or {})
    pipeline_config["kernel_frames"] = int(config.data.kernel_frames)
    pipeline_config["chunk_frames"] = int(config.data.chunk_frames)
    pipeline_config["sampler"] = "teacher"
    return components, pipeline_config


def build_dataset(config: Config, components: dict, split: str | None = None, seed: int | None = None):
    data = config.data
    window = int(components["transformer"].config.audio_window)
    seed = int(config.seed) if seed is None else seed
    if data.source == "cache":
        if not data.get("cache_dir"):
            raise ValueError("data.cache_dir is not set (build a cache with `python -m asymk_talker.train.data`)")
        meta, _ = read_cache_manifest(data.cache_dir)
        vae = components["vae"]
        for key in ("latents_mean", "latents_std"):
            if not np.allclose(meta[key], list(vae.config[key]), atol=1e-6):
                raise ValueError(f"the latent cache {data.cache_dir} was made with another VAE normalisation ({key}); "
                                 "rebuild it with this model's VAE or point model.vae at the VAE it was made with")
        if meta["latent_channels"] != components["transformer"].config.latent_channels:
            raise ValueError("the latent cache's channels do not match the transformer's latent_channels")
        return LatentClipDataset(data.cache_dir, int(data.kernel_frames), int(data.chunk_frames), 1,
                                 split=split or data.split, seed=seed, audio_window=window,
                                 reference=data.get("reference", "random"), in_memory=bool(data.get("in_memory")))
    if data.source == "synthetic":
        synthetic = data.synthetic
        return SyntheticClipDataset(
            components["vae"], components["audio_encoder"], int(data.kernel_frames), int(data.chunk_frames), 1,
            split="heldout" if (split or "train").startswith("heldout") else "train", seed=seed, audio_window=window,
            size=int(synthetic.size), fps=float(synthetic.fps), num_identities=synthetic.get("num_identities"),
            reference=data.get("reference", "random"), epoch_size=int(synthetic.get("epoch_size", 1000)),
            feature_extractor=components.get("feature_extractor"))
    raise ValueError(f"data.source must be 'cache' or 'synthetic', got {data.source!r}")


# -------------------------------------------------------------------------------------------- loss
def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    """The RNG of one micro-step on one process (noise, sigmas, dropout): resumable and per-rank distinct."""
    state = np.random.SeedSequence([int(seed), int(micro_step), int(rank), 0x7EAC]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


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
def make_pipeline(components: dict, transformer, pipeline_config: dict):
    from ..pipelines.pipeline_asymk import AsymKPipeline

    parts = {k: v for k, v in components.items() if k != "transformer"}
    return AsymKPipeline(transformer=transformer, **parts, **pipeline_config)


@torch.no_grad()
def render_validation(pipe, config: Config, step: int, out_dir: Path) -> dict:
    """Render held-out synthetic clips with the teacher sampler; save an mp4 and (if the eval module
    and its probe are available) score sync / identity drift / boundary jump. Returns scalars."""
    val = config.validation
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": int(val.num_inference_steps)}
    if val.get("guidance_scale") is not None:
        kwargs["guidance_scale"] = float(val.guidance_scale)
    try:
        from ..asymk_core.eval.evaluate import evaluation_clips, generate_with_pipeline
    except ImportError as error:  # the eval module is optional for training
        logger.warning("validation render skipped: %s", error)
        return {}
    from ..asymk_core.video_io import VideoWriter

    size, fps = int(pipe.config.height), float(pipe.config.fps)
    clips = evaluation_clips("heldout", int(val.identities), float(val.seconds), size=size, fps=fps)
    results, renders = [], []
    started = time.perf_counter()
    for clip in clips:
        sample = clip.sample()
        frames, starts = generate_with_pipeline(pipe, sample.portrait, sample.audio, seed=0, **kwargs)
        renders.append((frames, sample))
        if val.get("synthetic_eval", True) and int(pipe.config.width) == size:
            try:
                from ..asymk_core.eval.metrics import evaluate_frames

                results.append(evaluate_frames(frames, sample.tracks, sample.portrait, starts, fps=fps,
                                               gt_frames=sample.frames))
            except Exception as error:  # the probe is optional (e.g. assets not shipped)
                logger.warning("validation metrics skipped: %s: %s", type(error).__name__, error)
    elapsed = time.perf_counter() - started
    frames, sample = renders[0]
    # Generated | ground truth, side by side, with the clip's audio.
    both = np.concatenate([frames, sample.frames[: len(frames)]], axis=2)
    with VideoWriter(str(out_dir / f"step-{step:07d}.mp4"), fps, both.shape[2], both.shape[1], audio=sample.audio,
                     audio_sample_rate=sample.sample_rate) as writer:
        writer.write(both)
    scalars = {"val/render_seconds": elapsed}
    if results:
        from ..asymk_core.eval.metrics import summarize

        summary = summarize(results)
        for key, value in summary.items():
            if isinstance(value, (int, float)) and value is not None and key != "clips":
                scalars[f"val/{key}"] = float(value)
        write_json(out_dir / f"step-{step:07d}.json", {"step": step, "summary": summary})
    return scalars


def validation_batches(config: Config, components: dict) -> list[dict]:
    """Fixed held-out batches for :func:`validation_loss` (empty if the data has no held-out split)."""
    count = int(config.validation.get("loss_batches", 0) or 0)
    if count <= 0:
        return []
    try:
        dataset = build_dataset(config, components, split="heldout", seed=12345)
    except ValueError as error:
        logger.info("no held-out validation loss: %s", error)
        return []
    loader = iter(make_dataloader(dataset, int(config.data.batch_size)))
    return [next(loader) for _ in range(count)]


# ---------------------------------------------------------------------------------------------- main
def train(config: Config, resume_from: str | None = "latest") -> dict:
    """Train the teacher; returns ``{"step", "loss", "pipeline_dir", "output_dir"}``."""
    accelerator = make_accelerator(config, "asymk-teacher")
    output_dir = Path(config.output_dir)
    components, pipeline_config = build_components(config)
    transformer = components["transformer"]
    if config.model.get("attention_backend"):
        transformer.set_attention_backend(config.model.attention_backend)
    if config.model.get("gradient_checkpointing"):
        transformer.enable_gradient_checkpointing()
    transformer.train().requires_grad_(True)
    device = accelerator.device
    for name in ("vae", "audio_encoder"):
        components[name].to(device)

    dataset = build_dataset(config, components)
    sample = dataset[0]
    latent_h, latent_w = sample["target_latents"].shape[-2:]
    from ..asymk_core.vae import spatial_factor

    pipeline_config["height"] = int(latent_h) * spatial_factor(components["vae"])
    pipeline_config["width"] = int(latent_w) * spatial_factor(components["vae"])

    optimizer = make_optimizer(transformer.parameters(), config)
    lr_scheduler = make_lr_scheduler(optimizer, config, accelerator.num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(transformer, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ema = EMA(unwrapped, decay=float(config.ema.decay), warmup=bool(config.ema.get("warmup", True)))
    accelerator.register_for_checkpointing(ema)
    step = resume(accelerator, output_dir, resume_from)

    max_steps = int(config.train.max_steps)
    accumulation = int(config.train.get("gradient_accumulation_steps", 1) or 1)
    batch_size = int(config.data.batch_size)
    loader = make_dataloader(dataset, batch_size, accelerator=accelerator, start_batch=step * accumulation,
                             num_workers=int(config.data.get("num_workers", 0) or 0))
    # Under DDP the second (unconditional) sub-batch goes through the plain module: the wrapped
    # model must be called once per step. FSDP needs its wrapper for every call.
    unconditional = unwrapped if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None
    distributed = accelerator.num_processes > 1
    from accelerate.utils import DistributedType

    fsdp = accelerator.distributed_type == DistributedType.FSDP
    val_batches = validation_batches(config, components) if accelerator.is_main_process or fsdp else []
    metrics_path = output_dir / "logs" / "metrics.jsonl"
    log_every = int(config.logging.get("log_every", 10) or 10)
    checkpoint_every = int(config.checkpoint.get("every", 0) or 0)
    validation_every = int(config.validation.get("every", 0) or 0)

    logger.info("teacher: %d parameters, %d clips, batch %d x %d processes x %d accumulation, steps %d -> %d",
                sum(p.numel() for p in unwrapped.parameters()), len(dataset), batch_size, accelerator.num_processes,
                accumulation, step, max_steps)
    bar = progress_bar(accelerator, max_steps, initial=step, desc="teacher")
    micro_step = step * accumulation
    window_losses, last_loss, started = [], float("nan"), time.perf_counter()
    data_iter = iter(loader)
    while step < max_steps:
        batch = next(data_iter)
        generator = step_generator(int(config.seed), micro_step, accelerator.process_index)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                out = training_loss(model, batch, config.flow, generator, device, unconditional)
            loss = out.loss
            if distributed and out.all_unconditional:
                loss = touch_parameters(loss, unwrapped)  # DDP: every parameter needs a gradient
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.train.get("max_grad_norm"):
                accelerator.clip_grad_norm_(model.parameters(), float(config.train.max_grad_norm))
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        micro_step += 1
        window_losses.append(loss.detach())
        if not accelerator.sync_gradients:
            continue
        step += 1
        ema.step(unwrapped)
        step_loss = accelerator.reduce(torch.stack(window_losses).mean(), "mean").item()
        window_losses = []
        last_loss = step_loss
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")
        record = {"step": step, "loss": step_loss, "lr": lr_scheduler.get_last_lr()[0]}
        if accelerator.is_main_process:
            append_jsonl(metrics_path, {**record, "time": time.perf_counter() - started})
        if step % log_every == 0 or step == max_steps:
            accelerator.log({"train/loss": step_loss, "train/lr": record["lr"]}, step=step)
        stop = out_of_time(accelerator, started, config.train.get("max_minutes"))
        if checkpoint_every and step % checkpoint_every == 0 and step < max_steps and not stop:
            save_checkpoint(accelerator, output_dir, step, keep=config.checkpoint.get("keep", 3))
        if validation_every and step % validation_every == 0 and step < max_steps and not stop:
            run_validation(accelerator, config, components, pipeline_config, model, ema, val_batches, step)
        if stop:
            logger.info("time budget of %s minutes reached at step %d", config.train.max_minutes, step)
            break
    bar.close()

    save_checkpoint(accelerator, output_dir, step, keep=config.checkpoint.get("keep", 3))
    pipeline_dir = output_dir / "pipeline"
    save_final_pipeline(accelerator, config, components, pipeline_config, model, ema, pipeline_dir)
    scalars = run_validation(accelerator, config, components, pipeline_config, model, ema, val_batches, step,
                             pipeline_dir=pipeline_dir)
    summary = {"step": step, "loss": last_loss, "pipeline_dir": str(pipeline_dir), "output_dir": str(output_dir),
               "validation": scalars}
    if accelerator.is_main_process:
        write_json(output_dir / "summary.json", summary)
    accelerator.end_training()
    return summary


def run_validation(accelerator, config, components, pipeline_config, model, ema, val_batches, step,
                   pipeline_dir: Path | None = None) -> dict:
    """Held-out loss (raw and EMA weights) and a rendered clip, on the main process; others wait."""
    scalars: dict = {}
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        # Sharded model: every rank takes part in each forward; loss on the live weights only.
        if val_batches:
            model.eval()
            scalars.update(validation_loss(model, val_batches, config.flow, seed=0))
            model.train()
        if scalars and accelerator.is_main_process:
            accelerator.log(scalars, step=step)
            append_jsonl(Path(config.output_dir) / "logs" / "validation.jsonl", {"step": step, **scalars})
        accelerator.wait_for_everyone()
        return scalars
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        try:
            if val_batches:
                scalars.update(validation_loss(unwrapped, val_batches, config.flow, seed=0))
                with ema.averaged(unwrapped):
                    scalars.update({k.replace("val/", "val_ema/"): v
                                    for k, v in validation_loss(unwrapped, val_batches, config.flow, seed=0).items()})
            if config.validation.get("render", True):
                if pipeline_dir is not None:
                    from ..pipelines.pipeline_asymk import AsymKPipeline

                    pipe = AsymKPipeline.from_pretrained(pipeline_dir)
                    pipe.to(accelerator.device)
                    scalars.update(render_validation(pipe, config, step, Path(config.output_dir) / "validation"))
                else:
                    with ema.averaged(unwrapped):
                        pipe = make_pipeline(components, unwrapped, pipeline_config)
                        scalars.update(render_validation(pipe, config, step, Path(config.output_dir) / "validation"))
        finally:
            unwrapped.train()
        if scalars:
            accelerator.log(scalars, step=step)
            append_jsonl(Path(config.output_dir) / "logs" / "validation.jsonl", {"step": step, **scalars})
            logger.info("validation at step %d: %s", step,
                        ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if isinstance(v, float)))
    accelerator.wait_for_everyone()
    return scalars


def save_final_pipeline(accelerator, config, components, pipeline_config, model, ema, pipeline_dir: Path) -> None:
    """Save a complete ``AsymKPipeline`` folder with the EMA weights (gathered under FSDP)."""
    from ..asymk_core.models.transformer import AsymKTransformer

    unwrapped = accelerator.unwrap_model(model)
    with ema.averaged(unwrapped):  # copies: the state dict may share storage with the live parameters
        state = {k: v.detach().float().cpu().clone() for k, v in accelerator.get_state_dict(model).items()}
    if accelerator.is_main_process:
        transformer = AsymKTransformer.from_config(unwrapped.config)
        transformer.load_state_dict(state)
        pipe = make_pipeline({k: v.to("cpu") if hasattr(v, "to") else v for k, v in components.items()},
                             transformer.eval(), pipeline_config)
        pipe.save_pretrained(str(pipeline_dir))
        for name in ("vae", "audio_encoder"):
            components[name].to(accelerator.device)
        logger.info("saved pipeline %s", pipeline_dir)
    accelerator.wait_for_everyone()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="AsymK-Talker stage 1: flow-matching teacher with GT kernels.")
    add_common_args(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args, DEFAULTS)
    return train(config, resume_from=args.resume)


if __name__ == "__main__":
    main()
