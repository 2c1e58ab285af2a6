"""TRE, Temporal Reference Encoding: a still portrait as a time-aligned reference latent.

The image is replicated into a pseudo-video as long as one chunk window and encoded by the causal
3D VAE. Because the VAE is causal and time-aware, each latent frame of the result differs, giving
the transformer a per-frame reference with no extra parameters.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan

from .kclg import video_frames_for_latents
from .vae import encode_video, temporal_factor


@torch.no_grad()
def encode_reference(vae: AutoencoderKLWan, image: torch.Tensor, window_frames: int) -> torch.Tensor:
    """Portrait ``[B, 3, H, W]`` in [-1, 1] -> reference latents ``[B, C, window_frames, H/s, W/s]``.

    ``window_frames`` is the chunk window in latent frames (``kernel_frames + chunk_frames``).
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"`image`: expected a [B, 3, H, W] tensor, got shape {tuple(image.shape)}.")
    num_video_frames = video_frames_for_latents(window_frames, temporal_factor(vae))
    pseudo_video = image.unsqueeze(2).expand(-1, -1, num_video_frames, -1, -1)
    return encode_video(vae, pseudo_video)
