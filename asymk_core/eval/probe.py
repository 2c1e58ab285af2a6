"""The evaluation probe: one frame -> mouth opening, mouth width and an identity embedding.

The synthetic corpus's analogue of SyncNet (mouth) and ArcFace (identity): a small CNN trained on
rendered avatar frames (``python -m asymk_talker.train.probe``); trained weights ship in
``assets/probe`` (diffusers folder format: ``config.json`` + safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import input_error

SHIPPED_PROBE = Path(__file__).resolve().parents[2] / "assets" / "probe"


@dataclass
class ProbeOutput:
    """``mouth_open``, ``mouth_width``: [B] in [0, 1]; ``embedding``: [B, D], unit length."""

    mouth_open: torch.Tensor
    mouth_width: torch.Tensor
    embedding: torch.Tensor


class AvatarProbe(ModelMixin, ConfigMixin):
    """Small CNN on ``image_size``² RGB frames: four stride-2 conv blocks, then a mouth head
    (2 sigmoids) and an identity head (L2-normalised ``embedding_dim`` vector)."""

    @register_to_config
    def __init__(self, image_size: int = 64, channels: tuple = (16, 32, 64, 96), hidden: int = 128,
                 embedding_dim: int = 32):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        spatial = image_size // 2 ** len(channels)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(c_in * spatial * spatial, hidden), nn.ReLU(inplace=True))
        self.mouth_head = nn.Linear(hidden, 2)
        self.identity_head = nn.Linear(hidden, embedding_dim)

    def forward(self, pixels: torch.Tensor) -> ProbeOutput:
        """``pixels`` float [B, 3, H, W] in [0, 1] (resized to ``image_size`` if needed)."""
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        h = self.trunk(self.features((pixels - 0.5) * 4.0))
        mouth = torch.sigmoid(self.mouth_head(h))
        return ProbeOutput(mouth[:, 0], mouth[:, 1], F.normalize(self.identity_head(h), dim=-1))

    @torch.no_grad()
    def predict(self, frames, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Frames uint8 [N, H, W, 3] (or one [H, W, 3]; or float in [0, 1]) -> numpy
        ``mouth_open`` [N], ``mouth_width`` [N], ``embedding`` [N, D]."""
        frames = as_frames(frames, "frames")
        was_training = self.training
        self.eval()
        outs = []
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.array(frames[i:i + batch_size], copy=True)).to(self.device)  # may be read-only
            x = x.permute(0, 3, 1, 2).float() / 255.0
            o = self(x)
            outs.append((o.mouth_open.cpu().numpy(), o.mouth_width.cpu().numpy(), o.embedding.cpu().numpy()))
        self.train(was_training)
        return {"mouth_open": np.concatenate([o[0] for o in outs]), "mouth_width": np.concatenate([o[1] for o in outs]),
                "embedding": np.concatenate([o[2] for o in outs])}


def as_frames(frames, argument: str) -> np.ndarray:
    """Validate frames: uint8 [N, H, W, 3] (float in [0, 1] is converted; one [H, W, 3] frame gets N = 1)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if hasattr(frames, "convert"):  # PIL image
        frames = np.asarray(frames.convert("RGB"))
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise input_error(argument, f"has shape {frames.shape}", "pass RGB frames shaped [N, H, W, 3]")
    if frames.dtype != np.uint8:
        if not np.issubdtype(frames.dtype, np.floating):
            raise input_error(argument, f"has dtype {frames.dtype}", "pass uint8 frames or floats in [0, 1]",
                              kind=TypeError)
        frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return frames


_CACHE: dict[str, AvatarProbe] = {}


def load_probe(path=None) -> AvatarProbe:
    """Load a probe folder (default: the shipped ``assets/probe``), in eval mode, cached."""
    folder = Path(path) if path is not None else SHIPPED_PROBE
    key = str(folder.resolve())
    if key not in _CACHE:
        if not (folder / "config.json").exists():
            raise input_error("probe", f"no probe weights in {folder}",
                              "train one with `python -m asymk_talker.train.probe --out assets/probe`")
        _CACHE[key] = AvatarProbe.from_pretrained(str(folder)).eval()
    return _CACHE[key]


def probe_training_frames(rng: np.random.Generator, identity_seed: int, count: int, *, size: int = 64):
    """Random training frames of one identity for the probe: ``(frames uint8 [count, size, size, 3],
    mouth_open [count], mouth_width [count])``. Mouth, blink and head pose are drawn independently
    of each other and cover the renderer's whole range."""
    from ..synthetic.avatar import render_frames

    o = np.where(rng.random(count) < 0.2, 0.0, rng.random(count) ** 1.3).astype(np.float32)
    w = rng.random(count).astype(np.float32)
    blink = np.where(rng.random(count) < 0.7, 0.0, rng.random(count))
    frames = render_frames(int(identity_seed), o, w, rng.uniform(-0.08, 0.08, count), rng.uniform(-0.05, 0.05, count),
                           rng.uniform(-0.12, 0.12, count), blink, size=size)
    return frames, o, w
