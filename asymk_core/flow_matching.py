"""Flow-matching algebra, defined once: noising, x0 from velocity, the time shift.

Convention (diffusers' flow matching): ``x_sigma = (1 - sigma) x_0 + sigma * noise``; the
transformer predicts the velocity ``v = noise - x_0``, so ``x_0 = x_sigma - sigma v``. Time fed to
the model is ``NUM_TRAIN_TIMESTEPS * sigma``. ``sigma`` is a float (one level for the batch) or a
``[B]`` tensor (one level per sample); floats are used as they are, so results do not depend on
how a caller spells a scalar level.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000


def _per_sample(sigma, like: torch.Tensor):
    """A float as is; a ``[B]`` tensor viewed as ``[B, 1, ...]`` in ``like``'s dtype."""
    if isinstance(sigma, torch.Tensor):
        return sigma.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return sigma


def add_noise(clean: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
    """``x_sigma = (1 - sigma) x_0 + sigma * noise``."""
    s = _per_sample(sigma, clean)
    return (1 - s) * clean + s * noise


def x0_from_velocity(noisy: torch.Tensor, velocity: torch.Tensor, sigma) -> torch.Tensor:
    """``x_0 = x_sigma - sigma v``."""
    return noisy - _per_sample(sigma, noisy) * velocity.to(noisy.dtype)


def time_shift(sigma, shift: float):
    """Wan/SD3 time shift ``shift * s / (1 + (shift - 1) s)`` (``shift > 1`` favours high noise)."""
    return shift * sigma / (1 + (shift - 1) * sigma)
