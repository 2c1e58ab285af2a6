"""KCLG, Kernel-Conditioned Loop Generation: the one chunk loop of the project.

Chunk ``k`` is denoised conditioned on its *motion kernel*, the last ``kernel_frames`` clean latent
frames before it; chunk 0's kernel comes from the TRE reference. The pipeline, the ComfyUI nodes
and the AKD rollout all run :func:`kclg_chunks`; only the ``denoise_chunk`` callable differs.

All the frame bookkeeping lives here too (``r`` = VAE temporal factor):

* generated stream: latent frame ``j`` decodes to video frames ``[r j, r j + r)``, because the
  initial kernel is decoded first as causal context and its frames are dropped. So ``n`` video
  frames need ``ceil(n / r)`` latent frames and the last chunk is trimmed to exactly ``n`` frames
  (:class:`ChunkPlan`);
* encoded clip (training data, TRE): the causal VAE turns ``1 + r (N - 1)`` video frames into
  ``N`` latents; latent 0 covers frame 0, latent ``i >= 1`` frames ``r i - r + 1 .. r i``;
* audio: video frame ``i`` is centred on feature frame ``floor(i * rate / fps + 0.5)`` and sees
  ``window`` feature frames around it (:func:`audio_window_index`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
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


def initial_kernel(reference_latents: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """Chunk 0's motion kernel: the first ``plan.kernel_frames`` TRE reference latent frames."""
    return reference_latents[:, :, : plan.kernel_frames]


def split_chunks(latents: torch.Tensor, initial: torch.Tensor, plan: ChunkPlan) -> Iterator[Chunk]:
    """Generated latents ``[B, C, num_chunks * chunk_frames, h, w]`` (chunks concatenated in order)
    -> the :class:`Chunk` objects KCLG produced, for decoding latents that were stored (e.g. as a
    ComfyUI LATENT) instead of streamed."""
    expected = plan.num_chunks * plan.chunk_frames
    if latents.ndim != 5 or latents.shape[2] != expected:
        raise input_error("latents", f"expected [B, C, {expected}, h, w] latents for {plan.num_chunks} chunks of "
                          f"{plan.chunk_frames} frames, got shape {tuple(latents.shape)}",
                          "pass the latents produced by the AsymK chunk loop for this plan")
    kernel = initial
    for index in range(plan.num_chunks):
        chunk_latents = latents[:, :, index * plan.chunk_frames : (index + 1) * plan.chunk_frames]
        yield Chunk(index=index, kernel=kernel, latents=chunk_latents)
        kernel = next_kernel(kernel, chunk_latents, plan.kernel_frames)


def chunk_audio_windows(audio, plan: ChunkPlan, chunk_index: int) -> torch.Tensor:
    """Audio windows for one chunk: ``[1, n, r, W, L, D_a]`` (frames past the audio are zeros).

    ``audio`` provides ``windows(start_frame, num_frames) -> [num_frames, W, L, D_a]``."""
    start = chunk_index * plan.video_frames_per_chunk
    windows = audio.windows(start, plan.video_frames_per_chunk)
    return windows.reshape(plan.chunk_frames, plan.temporal_factor, *windows.shape[1:]).unsqueeze(0)


# ------------------------------------------------------------------------- encoded clips, audio
def video_frames_for_latents(num_latent_frames: int, temporal: int) -> int:
    """Video frames a causal VAE needs to produce ``num_latent_frames`` latent frames: ``1 + r (n - 1)``."""
    return 1 + temporal * (num_latent_frames - 1)


def num_latents_for_frames(num_frames: int, temporal: int = 4) -> int:
    """Latents a clip of ``num_frames`` video frames gives (its first ``1 + r (N - 1)`` frames are encoded)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return 1 + (int(num_frames) - 1) // temporal


def latent_video_frames(latent_index: int, temporal: int = 4) -> tuple[int, int]:
    """Video frames ``[start, stop)`` covered by encoder latent ``latent_index``: ``[0, 1)`` for latent 0,
    ``[r i - r + 1, r i + 1)`` after."""
    if latent_index == 0:
        return 0, 1
    return temporal * latent_index - temporal + 1, temporal * latent_index + 1


def audio_frame_centres(frames, fps: float, feature_rate: float) -> np.ndarray:
    """Centre feature frame of each video frame index: ``floor(i * feature_rate / fps + 0.5)`` (int64)."""
    frames = np.asarray(frames, dtype=np.float64)
    return np.floor(frames * feature_rate / float(fps) + 0.5).astype(np.int64)


def audio_window_index(start_frame: int, num_frames: int, fps: float, window: int,
                       feature_rate: float) -> np.ndarray:
    """Feature-frame indices ``[n, window]`` (int64) that video frames ``start_frame ..`` see: frame
    ``i`` is centred on ``floor(i * feature_rate / fps + 0.5)``. Indices may fall outside the audio
    (callers give those zeros)."""
    half = window // 2
    centres = audio_frame_centres(np.arange(start_frame, start_frame + num_frames), fps, feature_rate)
    return centres[:, None] + np.arange(-half, half + 1)[None, :]


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
