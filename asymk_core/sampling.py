"""Flow-matching samplers for one KCLG chunk: the multi-step teacher and the few-step student.

The algebra (noising, ``x_0`` from velocity, time shift) is :mod:`.flow_matching`; time fed to the
model is ``1000 * sigma``, with kernel frames always at time 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from .choices import SAMPLERS
from .errors import input_error
from .flow_matching import NUM_TRAIN_TIMESTEPS, add_noise, time_shift, x0_from_velocity
from .models.kernel_attention import KernelCache

StepCallback = Callable[[int, int, int, torch.Tensor], torch.Tensor | None]
"""``callback(chunk_index, step_index, num_steps, latents)`` after every denoising step; a returned
tensor replaces the latents (diffusers' ``callback_on_step_end`` contract)."""


def kernel_cache_for(transformer) -> KernelCache | None:
    """A fresh :class:`KernelCache` for one chunk if ``transformer`` uses block-causal kernel attention."""
    config = getattr(transformer, "config", None)
    if config is not None and config.get("kernel_attention", "full") == "block_causal":
        return KernelCache()
    return None


def fill_kernel_cache(transformer, conditions: "ChunkConditions") -> None:
    """Fill ``conditions.kernel_cache`` from the kernel frames alone (clean, time 0, no audio: what
    block-causal kernel tokens see), so the chunk's transformer calls all skip the kernel tokens.
    Needs only the kernel and the reference latents, not the chunk's audio. No-op without a cache."""
    cache, kernel = conditions.kernel_cache, conditions.kernel
    if cache is None or cache.filled:
        return
    tau = kernel.shape[2]
    timestep = torch.zeros(kernel.shape[0], tau, device=kernel.device)
    transformer(kernel, timestep, conditions.reference_latents[:, :, :tau], None, kernel_frames=tau, kernel_cache=cache)


def own_scheduler(scheduler):
    """A scheduler of the same class and config with state of its own (timesteps, step index), so one
    pipeline can render from several threads: ``set_timesteps`` and ``step`` mutate the scheduler."""
    return type(scheduler).from_config(scheduler.config)


def check_sampler(sampler: str, argument: str = "sampler") -> str:
    """``sampler`` if it is one of :data:`SAMPLERS`, else a clear error naming ``argument``."""
    if sampler not in SAMPLERS:
        raise input_error(argument, f"unknown sampler {sampler!r}", f"use one of {list(SAMPLERS)}")
    return sampler


@dataclass
class ChunkConditions:
    """Everything a chunk is conditioned on.

    ``kernel`` ``[B, C, tau, h, w]`` clean latents; ``reference_latents`` ``[B, C, tau + n, h, w]``;
    ``audio_features`` ``[B, n, r, W, L, D_a]`` or ``None`` (unconditional). ``kernel_cache``
    (block-causal models at inference): shared by every transformer call of the chunk, so the
    kernel tokens are computed once.
    """

    kernel: torch.Tensor
    reference_latents: torch.Tensor
    audio_features: torch.Tensor | None
    kernel_cache: KernelCache | None = None


def predict_velocity(
    transformer, noisy: torch.Tensor, sigma: float | torch.Tensor, conditions: ChunkConditions,
    audio: bool = True,
) -> torch.Tensor:
    """Velocity for the chunk frames ``[B, C, n, h, w]`` of one ``[kernel | noisy]`` window.

    ``sigma`` is a float or a ``[B]`` tensor (per-sample noise level, used in training).
    """
    kernel = conditions.kernel
    batch, kernel_frames = noisy.shape[0], kernel.shape[2]
    sigma = torch.as_tensor(sigma, device=noisy.device, dtype=torch.float32).reshape(-1, 1)
    chunk_time = (sigma * NUM_TRAIN_TIMESTEPS).expand(batch, noisy.shape[2])
    timestep = torch.cat([torch.zeros(batch, kernel_frames, device=noisy.device), chunk_time], dim=1)
    window = torch.cat([kernel.to(noisy.dtype), noisy], dim=2)
    output = transformer(
        window, timestep, conditions.reference_latents, conditions.audio_features if audio else None,
        kernel_frames=kernel_frames,
        **({} if conditions.kernel_cache is None else {"kernel_cache": conditions.kernel_cache}),
    ).sample
    return output[:, :, kernel_frames:]


def guided_velocity(
    transformer, noisy: torch.Tensor, sigma: float, conditions: ChunkConditions, guidance_scale: float
) -> torch.Tensor:
    """Audio classifier-free guidance: ``v_uncond + g (v_cond - v_uncond)``; one call when ``g == 1``."""
    conditional = predict_velocity(transformer, noisy, sigma, conditions)
    if guidance_scale == 1.0 or conditions.audio_features is None:
        return conditional
    unconditional = predict_velocity(transformer, noisy, sigma, conditions, audio=False)
    return unconditional + guidance_scale * (conditional - unconditional)


def _replaced(returned: torch.Tensor | None, latents: torch.Tensor) -> torch.Tensor:
    return latents if returned is None else returned.to(latents.dtype)


def shifted_sigmas(num_steps: int, shift: float) -> list[float]:
    """The distilled schedule: ``num_steps`` noise levels from 1 down, time-shifted like Wan/SD3."""
    if num_steps < 1:
        raise ValueError(f"`num_inference_steps` must be >= 1, got {num_steps}.")
    return time_shift(torch.linspace(1.0, 0.0, num_steps + 1)[:-1], shift).tolist()


@torch.no_grad()
def sample_chunk_teacher(
    transformer,
    scheduler: FlowMatchEulerDiscreteScheduler,
    noise: torch.Tensor,
    conditions: ChunkConditions,
    num_inference_steps: int,
    guidance_scale: float,
    callback: StepCallback | None = None,
    chunk_index: int = 0,
) -> torch.Tensor:
    """Multi-step Euler flow-matching sampling with audio guidance (the teacher's sampler).

    ``noise`` ``[B, C, n, h, w]``; ``callback`` gets ``chunk_index`` as its first argument."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    latents = noise
    for step, timestep in enumerate(scheduler.timesteps):
        sigma = float(timestep) / NUM_TRAIN_TIMESTEPS
        velocity = guided_velocity(transformer, latents, sigma, conditions, guidance_scale)
        latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        if callback is not None:
            latents = _replaced(callback(chunk_index, step, num_inference_steps, latents), latents)
    return latents


def sample_chunk_distilled(
    transformer,
    noise: torch.Tensor,
    conditions: ChunkConditions,
    sigmas: list[float],
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    exit_step: int | None = None,
    chunk_index: int = 0,
    window_noise: bool = False,
) -> torch.Tensor:
    """The few-step student: one transformer call per step, no guidance.

    ``sigmas``: the (already shifted) levels, e.g. :func:`shifted_sigmas`. Each step predicts the
    clean chunk ``x_0`` and re-noises it to the next level with fresh noise, as
    distribution-matching students are trained to do: diffusers' ``FlowMatchEulerDiscreteScheduler``
    with these custom sigmas (shift 1: used as given) and ``stochastic_sampling``. The last step
    returns ``x_0`` itself instead of calling the scheduler, which would draw one more noise tensor
    for its terminal ``sigma = 0`` and so shift the random stream of every following chunk.
    ``exit_step`` stops early and returns that step's ``x_0`` (AKD's random exit). Gradients flow
    only if the caller enables them.

    ``window_noise``: draw every re-noising tensor for the whole ``[kernel | chunk]`` window and use
    its chunk frames, and draw one more after the last step, as SoulX-FlashHead's sampler does; then
    a seed gives its random stream (``noise`` is then the chunk frames of a window-sized draw too).
    """
    if window_noise:
        return _sample_window_noise(transformer, noise, conditions, sigmas, generator, callback, exit_step,
                                    chunk_index)
    last = len(sigmas) - 1 if exit_step is None else exit_step
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, stochastic_sampling=True)
    scheduler.set_timesteps(sigmas=list(sigmas), device=noise.device)
    scheduler.set_begin_index(0)
    latents = noise
    for step, sigma in enumerate(sigmas[: last + 1]):
        velocity = predict_velocity(transformer, latents, sigma, conditions)
        if step < last:
            latents = scheduler.step(velocity, scheduler.timesteps[step], latents, generator=generator,
                                     return_dict=False)[0]
        else:
            latents = x0_from_velocity(latents, velocity, sigma)
        if callback is not None:
            latents = _replaced(callback(chunk_index, step, len(sigmas), latents), latents)
    return latents


def _sample_window_noise(transformer, noise, conditions, sigmas, generator, callback, exit_step, chunk_index):
    """:func:`sample_chunk_distilled` with window-sized noise draws (flow-matching algebra, no scheduler)."""
    from diffusers.utils.torch_utils import randn_tensor

    kernel_frames = conditions.kernel.shape[2]
    batch, channels, frames, height, width = noise.shape
    shape = (batch, channels, kernel_frames + frames, height, width)
    last = len(sigmas) - 1 if exit_step is None else exit_step
    latents = noise
    for step, sigma in enumerate(sigmas[: last + 1]):
        velocity = predict_velocity(transformer, latents, sigma, conditions)
        clean = x0_from_velocity(latents, velocity, sigma)
        draw = randn_tensor(shape, generator=generator, device=noise.device, dtype=noise.dtype)[:, :, kernel_frames:]
        if step < last:
            latents = add_noise(clean, draw, sigmas[step + 1])
        else:
            latents = clean
        if callback is not None:
            latents = _replaced(callback(chunk_index, step, len(sigmas), latents), latents)
    return latents
