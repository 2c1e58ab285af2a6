"""Kernels re-encoded from decoded frames (``ChunkPlan(kernel_source="decoded")``).

Each ``[kernel | chunk]`` window is decoded on its own by the causal VAE (``1 + r (W - 1)`` video
frames, the kernel's frames first), colour-corrected towards the portrait if asked
(:func:`asymk_core.colour.match_colours`), and its last ``1 + r (kernel_frames - 1)`` frames are
encoded again as the next chunk's kernel. The kernel is thus always a clean encoding of frames that
were shown, the design SoulX-FlashHead's checkpoints were trained with.
"""

from __future__ import annotations

import torch

from .colour import match_colours
from .errors import input_error
from .kclg import Chunk, ChunkPlan, video_frames_for_latents
from .vae import StreamingDecoder, encode_video


class WindowCodec:
    """Decode windows, re-encode kernels and cut each chunk's frames for one ``"decoded"`` plan.

    ``colour_reference``: the portrait ``[B, 3, H, W]`` in [-1, 1] (needed when ``colour_strength > 0``).
    The decoded window of the last chunk asked for is kept, so showing a chunk and making the next
    kernel decode it once.
    """

    def __init__(self, vae, plan: ChunkPlan, colour_reference: torch.Tensor | None = None,
                 colour_strength: float = 0.0):
        if colour_strength and colour_reference is None:
            raise input_error("colour_reference", "colour correction needs the portrait",
                              "pass the portrait [B, 3, H, W] in [-1, 1], or colour_correction=0")
        self.vae, self.plan = vae, plan
        self.colour_reference, self.colour_strength = colour_reference, float(colour_strength)
        self._cached: tuple[int, torch.Tensor] | None = None
        self._kernel: tuple[int, torch.Tensor] | None = None

    def window_frames(self, chunk: Chunk) -> torch.Tensor:
        """The chunk's decoded window ``[B, 3, 1 + r (W - 1), H, W]`` in [-1, 1] (colour-corrected)."""
        if self._cached is not None and self._cached[0] == chunk.index:
            return self._cached[1]
        window = torch.cat([chunk.kernel.to(chunk.latents.dtype), chunk.latents], dim=2)
        video = StreamingDecoder(self.vae).decode(window).clamp(-1.0, 1.0)
        if self.colour_strength:
            video = match_colours(video, self.colour_reference, self.colour_strength)
        self._cached = (chunk.index, video)
        return video

    @torch.no_grad()
    def next_kernel(self, chunk: Chunk) -> torch.Tensor:
        """The next chunk's kernel ``[B, C, kernel_frames, h, w]``: the window's last frames, encoded
        (once per chunk: asking again, e.g. to save a resumable state, returns the same tensor)."""
        if self._kernel is not None and self._kernel[0] == chunk.index:
            return self._kernel[1]
        count = video_frames_for_latents(self.plan.kernel_frames, self.plan.temporal_factor)
        tail = self.window_frames(chunk)[:, :, -count:]
        kernel = encode_video(self.vae, tail).to(chunk.latents.dtype)
        self._kernel = (chunk.index, kernel)
        return kernel

    def shown_frames(self, chunk: Chunk) -> torch.Tensor:
        """Frames ``[B, 3, f, H, W]`` chunk ``chunk.index`` adds to the video: chunk 0 its whole window,
        a later one what follows its kernel; the last chunk trimmed to the video's length."""
        start, stop = self.plan.video_range(chunk.index)
        offset = start - self.plan.window_video_start(chunk.index)
        return self.window_frames(chunk)[:, :, offset: offset + stop - start]
