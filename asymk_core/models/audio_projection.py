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


AUDIO_PROJECTIONS = ("windows", "flashhead")
"""``AsymKTransformer(audio_projector=...)`` choices: :class:`AudioProjection` (this project's
models) or :class:`FlashHeadAudioProjection` (SoulX-FlashHead's layout)."""


class FlashHeadAudioProjection(nn.Module):
    """``[B, 1 + r (F - 1), W, L, D_a]`` -> ``[B, F, tokens_per_frame, out_dim]`` (SoulX-FlashHead's projector).

    Input: one window of ``W`` feature frames (``L`` encoder layers, width ``D_a``) per video frame of
    a whole causal window: the first latent frame covers one video frame, every later one
    ``r = frames_per_latent``. The first latent frame's window goes through ``proj_first``. A later
    latent frame keeps the first ``W // 2 + 1`` windows of its first video frame, the centre window
    of each middle frame and the last ``W - W // 2`` windows of its last frame (``W + r - 1`` windows
    in all), flattened through ``proj_rest``. Then ReLU, ``proj_mid`` + ReLU, ``proj_out`` to
    ``tokens_per_frame`` tokens, and an affine LayerNorm. All layers are used (no layer mixing).
    """

    def __init__(
        self, audio_dim: int, audio_layers: int, audio_window: int, hidden_dim: int, tokens_per_frame: int,
        out_dim: int, frames_per_latent: int = 4,
    ):
        super().__init__()
        if frames_per_latent < 2:
            raise ValueError(f"frames_per_latent must be >= 2 for the FlashHead projector, got {frames_per_latent}")
        self.window, self.frames_per_latent, self.tokens_per_frame = audio_window, frames_per_latent, tokens_per_frame
        per_window = audio_layers * audio_dim
        self.proj_first = nn.Linear(audio_window * per_window, hidden_dim)
        self.proj_rest = nn.Linear((audio_window + frames_per_latent - 1) * per_window, hidden_dim)
        self.proj_mid = nn.Linear(hidden_dim, hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, tokens_per_frame * out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        r, half = self.frames_per_latent, self.window // 2
        if audio_features.ndim != 5 or (audio_features.shape[1] - 1) % r or audio_features.shape[2] != self.window:
            raise ValueError(f"audio_features must be [B, 1 + {r} (F - 1), {self.window}, L, D_a] (one window per "
                             f"video frame), got shape {tuple(audio_features.shape)}")
        batch = audio_features.shape[0]
        first = audio_features[:, :1].flatten(2)  # [B, 1, W L D]
        groups = audio_features[:, 1:].unflatten(1, (-1, r))  # [B, F - 1, r, W, L, D]
        rest = torch.cat([groups[:, :, 0, : half + 1], groups[:, :, 1:-1, half], groups[:, :, -1, half:]], dim=2)
        hidden = torch.cat([torch.relu(self.proj_first(first)), torch.relu(self.proj_rest(rest.flatten(2)))], dim=1)
        tokens = self.proj_out(torch.relu(self.proj_mid(hidden)))
        return self.norm(tokens.view(batch, hidden.shape[1], self.tokens_per_frame, -1))
