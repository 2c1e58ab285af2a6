"""KCLG, Kernel-Conditioned Loop Generation: the one chunk loop of the project.

Chunk ``k`` is denoised conditioned on its *motion kernel*, the last ``kernel_frames`` clean latent
frames before it; chunk 0's kernel comes from the TRE reference. The pipeline, the ComfyUI nodes
and the AKD rollout all run :func:`kclg_chunks`; only the ``denoise_chunk`` callable differs.

Frame bookkeeping: latent frame ``j`` of the generated stream decodes to video frames
``[r j, r j + r)`` (``r`` = VAE temporal factor), because the initial kernel is decoded first as
causal context and its frames are dropped. So ``n`` video frames need ``ceil(n / r)`` latent frames
and the last chunk is trimmed to exactly ``n`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .errors import input_error


@dataclass(frozen=True)
class ChunkPlan:
    """How a video of ``num_frames`` frames splits into chunks of latent frames."""

    num_frames: int
    chunk_frames: int
    kernel_frames: int
    temporal_factor: int = 4

    def __post_init__(self):
        for name in ("num_frames", "chunk_frames", "kernel_frames", "temporal_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise input_error(name, f"expected a positive integer, got {value!r}", "pass an int >= 1")

    @property
    def window_frames(self) -> int:
        """Latent frames the transformer sees per chunk: kernel + chunk."""
        return self.kernel_frames + self.chunk_frames

    @property
    def num_latent_frames(self) -> int:
        return math.ceil(self.num_frames / self.temporal_factor)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_latent_frames / self.chunk_frames)

    @property
    def video_frames_per_chunk(self) -> int:
        return self.chunk_frames * self.temporal_factor

    def video_range(self, chunk_index: int) -> tuple[int, int]:
        """Video frames ``[start, stop)`` that chunk ``chunk_index`` contributes (last chunk trimmed)."""
        start = chunk_index * self.video_frames_per_chunk
        return start, min(start + self.video_frames_per_chunk, self.num_frames)


@dataclass
class Chunk:
    """One generated chunk: its kernel ``[B, C, tau, h, w]`` and clean latents ``[B, C, n, h, w]``."""

    index: int
    kernel: torch.Tensor
    latents: torch.Tensor


def next_kernel(kernel: torch.Tensor, latents: torch.Tensor, kernel_frames: int) -> torch.Tensor:
    """The last ``kernel_frames`` clean latent frames of ``[kernel | latents]`` (dim 2 is time)."""
    if latents.shape[2] >= kernel_frames:
        return latents[:, :, -kernel_frames:]
    return torch.cat([kernel, latents], dim=2)[:, :, -kernel_frames:]


DenoiseChunk = Callable[[int, torch.Tensor], torch.Tensor]
"""``denoise_chunk(chunk_index, kernel) -> clean latents [B, C, chunk_frames, h, w]``."""


def kclg_chunks(
    denoise_chunk: DenoiseChunk,
    initial_kernel: torch.Tensor,
    num_chunks: int,
    kernel_frames: int,
    start_chunk: int = 0,
) -> Iterator[Chunk]:
    """Run the causal chunk loop, yielding each chunk as soon as it is generated.

    ``initial_kernel`` is the kernel of chunk ``start_chunk`` (the reference's first frames for a
    fresh run, a saved kernel when resuming). Each next kernel is taken from what was just generated,
    so whatever ``denoise_chunk`` produced is what conditions the following chunk.
    """
    if initial_kernel.shape[2] != kernel_frames:
        raise ValueError(
            f"`initial_kernel` has {initial_kernel.shape[2]} frames, expected kernel_frames={kernel_frames}."
        )
    kernel = initial_kernel
    for index in range(start_chunk, num_chunks):
        latents = denoise_chunk(index, kernel)
        yield Chunk(index=index, kernel=kernel, latents=latents)
        kernel = next_kernel(kernel, latents, kernel_frames)
