"""Flow-matching samplers for one KCLG chunk: the multi-step teacher and the few-step student.

Convention (diffusers' flow matching): ``x_sigma = (1 - sigma) x_0 + sigma * noise`` and the
transformer predicts the velocity ``v = noise - x_0``; time fed to the model is ``1000 * sigma``,
with kernel frames always at time 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

StepCallback = Callable[[int, int, torch.Tensor], torch.Tensor | None]
"""``callback(step_index, num_steps, latents)`` after every denoising step; a returned tensor
replaces the latents (diffusers' ``callback_on_step_end`` contract)."""

NUM_TRAIN_TIMESTEPS = 1000


@dataclass
class ChunkConditions:
    """Everything a chunk is conditioned on.

    ``kernel`` ``[B, C, tau, h, w]`` clean latents; ``reference_latents`` ``[B, C, tau + n, h, w]``;
    ``audio_features`` ``[B, n, r, W, L, D_a]`` or ``None`` (unconditional).
    """

    kernel: torch.Tensor
    reference_latents: torch.Tensor
    audio_features: torch.Tensor | None


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
    base = torch.linspace(1.0, 0.0, num_steps + 1)[:-1]
    return (shift * base / (1 + (shift - 1) * base)).tolist()


@torch.no_grad()
def sample_chunk_teacher(
    transformer,
    scheduler: FlowMatchEulerDiscreteScheduler,
    noise: torch.Tensor,
    conditions: ChunkConditions,
    num_inference_steps: int,
    guidance_scale: float,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Multi-step Euler flow-matching sampling with audio guidance (the teacher's sampler)."""
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    latents = noise
    for step, timestep in enumerate(scheduler.timesteps):
        sigma = float(timestep) / NUM_TRAIN_TIMESTEPS
        velocity = guided_velocity(transformer, latents, sigma, conditions, guidance_scale)
        latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        if callback is not None:
            latents = _replaced(callback(step, num_inference_steps, latents), latents)
    return latents


def sample_chunk_distilled(
    transformer,
    noise: torch.Tensor,
    conditions: ChunkConditions,
    sigmas: list[float],
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    exit_step: int | None = None,
) -> torch.Tensor:
    """The few-step student: one transformer call per step, no guidance.

    Each step predicts the clean chunk ``x_0 = x - sigma v`` and re-noises it to the next level with
    fresh noise, as distribution-matching students are trained to do. ``exit_step`` stops early and
    returns that step's ``x_0`` (used by AKD's random exit). Gradients flow only if the caller
    enables them.
    """
    latents = noise
    last = len(sigmas) - 1 if exit_step is None else exit_step
    for step, sigma in enumerate(sigmas[: last + 1]):
        velocity = predict_velocity(transformer, latents, sigma, conditions)
        clean = latents - sigma * velocity
        if step < last:
            next_sigma = sigmas[step + 1]
            fresh = torch.randn(
                noise.shape, generator=generator, device=noise.device, dtype=noise.dtype
            )
            latents = (1 - next_sigma) * clean + next_sigma * fresh
        else:
            latents = clean
        if callback is not None:
            latents = _replaced(callback(step, len(sigmas), latents), latents)
    return latents
