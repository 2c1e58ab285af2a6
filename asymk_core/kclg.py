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

Two plan options keep other loop designs in the same loop (:class:`ChunkPlan`):

* ``first_kernel_frames``: chunk 0's kernel length (default ``kernel_frames``); every window has
  ``kernel_frames + chunk_frames`` latent frames, so chunk 0 then generates
  ``window - first_kernel_frames`` frames;
* ``kernel_source``: ``"latents"`` (the kernel is the latent tail, decoded as one seamless stream)
  or ``"decoded"``: every window ``[kernel | chunk]`` is decoded on its own (``1 + r (W - 1)``
  video frames, the kernel's frames first), and the next kernel is the VAE encoding of its last
  ``1 + r (kernel_frames - 1)`` decoded frames. Chunk 0 then shows its whole window (its first
  frames are the reference's), each later chunk the frames after its kernel's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import input_error


KERNEL_SOURCES = ("latents", "decoded")
"""``ChunkPlan(kernel_source=...)`` choices: the latent tail (this project's models) or re-encoded frames."""


@dataclass(frozen=True)
class ChunkPlan:
    """How a video of ``num_frames`` frames splits into chunks of latent frames.

    ``chunk_frames`` / ``kernel_frames``: latent frames generated / conditioned on per chunk after
    the first; ``first_kernel_frames`` and ``kernel_source``: see the module docstring."""

    num_frames: int
    chunk_frames: int
    kernel_frames: int
    temporal_factor: int = 4
    first_kernel_frames: int | None = None
    kernel_source: str = "latents"

    def __post_init__(self):
        for name in ("num_frames", "chunk_frames", "kernel_frames", "temporal_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise input_error(name, f"expected a positive integer, got {value!r}", "pass an int >= 1")
        first = self.first_kernel_frames
        if first is not None and (isinstance(first, bool) or not isinstance(first, int)
                                  or not 1 <= first < self.window_frames):
            raise input_error("first_kernel_frames", f"expected an integer in 1..{self.window_frames - 1}, got "
                              f"{first!r}", "pass fewer frames than the window (kernel + chunk)")
        if self.kernel_source not in KERNEL_SOURCES:
            raise input_error("kernel_source", f"got {self.kernel_source!r}", f"use one of {list(KERNEL_SOURCES)}")

    @property
    def window_frames(self) -> int:
        """Latent frames the transformer sees per chunk: kernel + chunk."""
        return self.kernel_frames + self.chunk_frames

    def kernel_frames_for(self, chunk_index: int) -> int:
        """Kernel latent frames of chunk ``chunk_index``."""
        if chunk_index == 0 and self.first_kernel_frames is not None:
            return self.first_kernel_frames
        return self.kernel_frames

    def chunk_frames_for(self, chunk_index: int) -> int:
        """Latent frames chunk ``chunk_index`` generates: the window minus its kernel."""
        return self.window_frames - self.kernel_frames_for(chunk_index)

    @property
    def num_latent_frames(self) -> int:
        return math.ceil(self.num_frames / self.temporal_factor)

    @property
    def first_chunk_video_frames(self) -> int:
        """Video frames chunk 0 contributes before trimming (with ``"decoded"``: its whole window)."""
        if self.kernel_source == "decoded":
            return video_frames_for_latents(self.window_frames, self.temporal_factor)
        return self.chunk_frames_for(0) * self.temporal_factor

    @property
    def num_chunks(self) -> int:
        first = self.first_chunk_video_frames
        if self.num_frames <= first:
            return 1
        return 1 + math.ceil((self.num_frames - first) / self.video_frames_per_chunk)

    @property
    def video_frames_per_chunk(self) -> int:
        """Video frames each chunk after the first contributes (before trimming the last)."""
        return self.chunk_frames * self.temporal_factor

    def _chunk_start(self, chunk_index: int) -> int:
        if chunk_index == 0:
            return 0
        return self.first_chunk_video_frames + (chunk_index - 1) * self.video_frames_per_chunk

    def video_range(self, chunk_index: int) -> tuple[int, int]:
        """Video frames ``[start, stop)`` that chunk ``chunk_index`` contributes (last chunk trimmed)."""
        start = self._chunk_start(chunk_index)
        length = self.first_chunk_video_frames if chunk_index == 0 else self.video_frames_per_chunk
        return start, min(start + length, self.num_frames)

    def window_video_start(self, chunk_index: int) -> int:
        """First video frame of chunk ``chunk_index``'s decoded window (``"decoded"`` plans only)."""
        if self.kernel_source != "decoded":
            raise input_error("kernel_source", "only a 'decoded' plan decodes whole windows",
                              "use kernel_source='decoded'")
        if chunk_index == 0:
            return 0
        return self._chunk_start(chunk_index) - video_frames_for_latents(self.kernel_frames, self.temporal_factor)

    def chunk_video_start(self, chunk_index: int) -> int:
        """First video frame covered by chunk ``chunk_index``'s generated latents (untrimmed)."""
        if self.kernel_source == "decoded":
            kernel = self.kernel_frames_for(chunk_index)
            return self.window_video_start(chunk_index) + video_frames_for_latents(kernel, self.temporal_factor)
        return self._chunk_start(chunk_index)


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
    """Chunk 0's motion kernel: the first ``plan.kernel_frames_for(0)`` TRE reference latent frames."""
    return reference_latents[:, :, : plan.kernel_frames_for(0)]


def split_chunks(latents: torch.Tensor, initial: torch.Tensor, plan: ChunkPlan,
                 kernels: torch.Tensor | None = None) -> Iterator[Chunk]:
    """Generated latents ``[B, C, n, h, w]`` (chunks concatenated in order) -> the :class:`Chunk`
    objects KCLG produced, for decoding latents that were stored (e.g. as a ComfyUI LATENT) instead
    of streamed. ``initial``: chunk 0's kernel. A ``"decoded"`` plan's later kernels are re-encoded
    frames, not part of the latents: pass them as ``kernels`` ``[B, C, (num_chunks - 1) * kernel_frames,
    h, w]`` (each chunk's :attr:`Chunk.kernel` after the first, in order)."""
    expected = sum(plan.chunk_frames_for(index) for index in range(plan.num_chunks))
    if latents.ndim != 5 or latents.shape[2] != expected:
        raise input_error("latents", f"expected [B, C, {expected}, h, w] latents for {plan.num_chunks} chunks of "
                          f"{plan.chunk_frames} frames, got shape {tuple(latents.shape)}",
                          "pass the latents produced by the AsymK chunk loop for this plan")
    if plan.kernel_source == "decoded":
        count = (plan.num_chunks - 1) * plan.kernel_frames
        if kernels is None or kernels.ndim != 5 or kernels.shape[2] != count:
            got = None if kernels is None else tuple(kernels.shape)
            raise input_error("kernels", f"a 'decoded' plan needs the {count} re-encoded kernel frames of chunks "
                              f"1..{plan.num_chunks - 1}, got {got}",
                              "pass the kernels stored with the latents (each chunk's Chunk.kernel after the first)")
    kernel, start = initial, 0
    for index in range(plan.num_chunks):
        stop = start + plan.chunk_frames_for(index)
        chunk_latents = latents[:, :, start:stop]
        start = stop
        yield Chunk(index=index, kernel=kernel, latents=chunk_latents)
        if plan.kernel_source == "decoded":
            kernel = kernels[:, :, index * plan.kernel_frames: (index + 1) * plan.kernel_frames]
        else:
            kernel = next_kernel(kernel, chunk_latents, plan.kernel_frames)


def chunk_audio_windows(audio, plan: ChunkPlan, chunk_index: int) -> torch.Tensor:
    """Audio windows for one chunk: ``[1, n, r, W, L, D_a]`` (frames past the audio are zeros).

    ``audio`` provides ``windows(start_frame, num_frames) -> [num_frames, W, L, D_a]``."""
    frames = plan.chunk_frames_for(chunk_index)
    windows = audio.windows(plan.chunk_video_start(chunk_index), frames * plan.temporal_factor)
    return windows.reshape(frames, plan.temporal_factor, *windows.shape[1:]).unsqueeze(0)


def window_audio_windows(audio, plan: ChunkPlan, chunk_index: int) -> torch.Tensor:
    """Audio windows for every video frame of a ``"decoded"`` plan's window, kernel frames included:
    ``[1, 1 + r (W - 1), W_a, L, D_a]`` (the FlashHead audio projector's input)."""
    count = video_frames_for_latents(plan.window_frames, plan.temporal_factor)
    return audio.windows(plan.window_video_start(chunk_index), count).unsqueeze(0)


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
    make_kernel: Callable[[Chunk], torch.Tensor] | None = None,
    initial_kernel_frames: int | None = None,
) -> Iterator[Chunk]:
    """Run the causal chunk loop, yielding each chunk as soon as it is generated.

    ``initial_kernel`` is the kernel of chunk ``start_chunk`` (the reference's first frames for a
    fresh run, a saved kernel when resuming), ``initial_kernel_frames`` frames long (default
    ``kernel_frames``). Each next kernel is taken from what was just generated, so whatever
    ``denoise_chunk`` produced is what conditions the following chunk: by default its last
    ``kernel_frames`` clean latents (:func:`next_kernel`), else ``make_kernel(chunk)``, which must
    return ``kernel_frames`` latent frames.
    """
    expected = kernel_frames if initial_kernel_frames is None else initial_kernel_frames
    if initial_kernel.shape[2] != expected:
        raise ValueError(f"`initial_kernel` has {initial_kernel.shape[2]} frames, expected {expected}.")
    kernel = initial_kernel
    for index in range(start_chunk, num_chunks):
        latents = denoise_chunk(index, kernel)
        chunk = Chunk(index=index, kernel=kernel, latents=latents)
        yield chunk
        kernel = next_kernel(kernel, latents, kernel_frames) if make_kernel is None else make_kernel(chunk)
