"""Audio projection: per-video-frame audio feature windows -> audio tokens per latent frame."""

from __future__ import annotations

import torch
import torch.nn as nn


class AudioProjection(nn.Module):
    """``[B, F, r, W, L, D_a]`` -> ``[B, F, r * tokens_per_frame, out_dim]``.

    ``F`` latent frames, each covering ``r`` video frames; every video frame brings a window of
    ``W`` audio feature frames from ``L`` encoder layers. Layers are mixed with learned softmax
    weights, then each video frame's window becomes ``tokens_per_frame`` tokens.
    """

    def __init__(
        self, audio_dim: int, audio_layers: int, audio_window: int, hidden_dim: int, tokens_per_frame: int,
        out_dim: int,
    ):
        super().__init__()
        self.tokens_per_frame = tokens_per_frame
        self.layer_weights = nn.Parameter(torch.zeros(audio_layers))
        self.proj_in = nn.Linear(audio_window * audio_dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.proj_out = nn.Linear(hidden_dim, tokens_per_frame * out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        if audio_features.ndim != 6:
            raise ValueError(
                f"audio_features must be [B, F, r, W, L, D_a], got shape {tuple(audio_features.shape)}"
            )
        batch, frames, video_frames, window, layers, dim = audio_features.shape
        weights = torch.softmax(self.layer_weights.float(), dim=0).to(audio_features.dtype)
        mixed = torch.einsum("bfrwld,l->bfrwd", audio_features, weights)
        hidden = self.act(self.proj_in(mixed.flatten(3)))
        tokens = self.proj_out(hidden).view(batch, frames, video_frames * self.tokens_per_frame, -1)
        return self.norm(tokens)
