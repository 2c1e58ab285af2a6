"""Decoded frames anchored to the portrait: the decoder's own error on it removed, colours matched.

A small causal VAE does not reconstruct a still portrait exactly. Once its causal caches settle it
is off by a fixed amount per pixel (a tinted background, a shifted shirt; about 10 levels of 255 on
the synthetic model's VAE), and a chunk loop that decodes through the same caches shows that error
in every frame. The error can be measured before generation: the portrait's TRE pseudo-video is
already encoded; decoding the initial kernel and then the still portrait's later latents, exactly as
a render decodes its chunks, gives the decoder's error for every output frame index until it settles
(:data:`CALIBRATION_LATENT_FRAMES`). :class:`PortraitAnchor` subtracts that error, low-pass filtered
so that it does not follow the head's edges as the head moves, from each decoded frame
(``decoder_calibration``, a strength in [0, 1]), then optionally moves each frame's Lab statistics
to the portrait's (``colour_correction``, :func:`asymk_core.colour.match_colours`).

``colour_lock`` (a tolerance in 8-bit levels, 0 for off) then pulls every pixel whose low-passed
colour is close to the portrait's at the same place towards it: the correction is the low-passed
difference (portrait minus frame) weighted by ``exp(-(|difference| / tolerance)^2)`` (``|.|`` the
RGB distance). A background or shirt whose colour has drifted by a few levels is moved back almost
fully, one off by about half the tolerance by three quarters of that; a change far past the tolerance (an open mouth, a moved head's edge, a closed eye) is left alone. Only low
frequencies are added, so it does not blur the frame.

Both are per-frame functions of the decoded frame and its index, so a stream, a resumed render, a
live session and a decode of stored latents give the same frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .colour import match_colours
from .errors import input_error
from .vae import StreamingDecoder, encode_video, temporal_factor

CALIBRATION_LATENT_FRAMES = 20
"""Latent frames decoded after the initial kernel to measure the decoder's error (80 video frames at
a temporal factor of 4: the synthetic VAE's error settles within about 60)."""
LOW_PASS_SIGMA = 0.025
"""Standard deviation of the Gaussian low-pass applied to the error, as a fraction of the frame's
shorter side (1.6 px at 64 px)."""


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` with replicated borders. Written here because
    torchvision, which has one, is not a dependency (no CPU build for every supported torch)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-taps ** 2 / (2.0 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


@torch.no_grad()
def decoder_error(vae, portrait: torch.Tensor, initial_kernel: torch.Tensor,
                  latent_frames: int = CALIBRATION_LATENT_FRAMES) -> torch.Tensor:
    """The decoder's error on the still portrait, per output frame: ``[B, n, 3, H, W]`` in [-1, 1]
    units (decoded minus portrait; ``n = latent_frames x temporal factor``).

    ``portrait`` ``[B, 3, H, W]`` in [-1, 1]; ``initial_kernel`` the render's first motion kernel
    ``[B, C, k, h, w]`` (the first ``k`` latent frames of the portrait's TRE encoding). The kernel is
    decoded first, as causal context, then the still portrait's next ``latent_frames`` latent frames,
    as a render decodes its chunks."""
    kernel_frames, factor = initial_kernel.shape[2], temporal_factor(vae)
    still = portrait[:, :, None].expand(-1, -1, 1 + factor * (kernel_frames + latent_frames - 1), -1, -1)
    latents = encode_video(vae, still.to(vae.device))[:, :, kernel_frames:]
    decoder = StreamingDecoder(vae)
    decoder.decode(initial_kernel.to(vae.device))
    video = decoder.decode(latents).float()  # [B, 3, n, H, W]
    return (video - portrait[:, :, None].to(video)).permute(0, 2, 1, 3, 4)


class PortraitAnchor:
    """Corrects decoded frames towards the portrait (see the module docstring).

    ``portrait`` ``[B, 3, H, W]`` in [-1, 1]; ``initial_kernel`` ``[B, C, k, h, w]``;
    ``decoder_calibration`` and ``colour_correction`` strengths in [0, 1]. The decoder's error is
    measured here, once (about one chunk's decode time)."""

    def __init__(self, vae, portrait: torch.Tensor, initial_kernel: torch.Tensor,
                 decoder_calibration: float = 1.0, colour_correction: float = 0.0, colour_lock: float = 0.0):
        for name, value in (("decoder_calibration", decoder_calibration), ("colour_correction", colour_correction)):
            if not 0.0 <= float(value) <= 1.0:
                raise input_error(name, f"{value} is outside [0, 1]", "pass a strength from 0 (off) to 1")
        if not 0.0 <= float(colour_lock) <= 255.0:
            raise input_error("colour_lock", f"{colour_lock} is outside [0, 255]",
                              "pass a tolerance in 8-bit levels, 0 (off) to 255")
        if portrait is None or portrait.ndim != 4 or portrait.shape[1] != 3:
            got = None if portrait is None else tuple(portrait.shape)
            raise input_error("colour_reference", f"expected the portrait [B, 3, H, W], got {got}",
                              "pass the preprocessed portrait in [-1, 1]")
        self.portrait = portrait.float()
        self.decoder_calibration, self.colour_correction = float(decoder_calibration), float(colour_correction)
        self.colour_lock = float(colour_lock)
        self._sigma = LOW_PASS_SIGMA * min(portrait.shape[-2:])
        # the portrait low-passed once, [B, 1, H, W, 3] in [0, 1], for the lock
        self._smooth_portrait = _gaussian_blur((self.portrait + 1.0) / 2.0, self._sigma).permute(0, 2, 3, 1)[:, None]
        self.correction = None  # [n, B, H, W, 3] in [0, 1] units, subtracted from frame min(index, n - 1)
        if self.decoder_calibration:
            error = decoder_error(vae, portrait, initial_kernel)
            batch, frames = error.shape[:2]
            smooth = _gaussian_blur(error.flatten(0, 1), self._sigma).unflatten(0, (batch, frames))
            self.correction = (self.decoder_calibration * smooth / 2.0).permute(1, 0, 3, 4, 2).cpu()

    def apply(self, frames: torch.Tensor, start_frame: int) -> torch.Tensor:
        """Frames ``[B, f, H, W, 3]`` in [0, 1], the first being video frame ``start_frame`` (0 is the
        first frame after the reference) -> corrected frames, same shape, dtype and device."""
        out = frames.float()
        if self.correction is not None:
            index = torch.arange(start_frame, start_frame + frames.shape[1]).clamp(max=len(self.correction) - 1)
            out = (out - self.correction[index].transpose(0, 1).to(out.device)).clamp(0.0, 1.0)
        if self.colour_correction:
            video = out.permute(0, 4, 1, 2, 3) * 2.0 - 1.0
            video = match_colours(video, self.portrait.to(video.device), self.colour_correction)
            out = ((video + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 4, 1)
        if self.colour_lock:
            out = self._lock(out)
        return out.to(frames.dtype)

    def _lock(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, f, H, W, 3]`` in [0, 1] -> the same with colours close to the portrait's pulled onto it."""
        batch, count = frames.shape[:2]
        smooth = _gaussian_blur(frames.permute(0, 1, 4, 2, 3).flatten(0, 1), self._sigma)
        smooth = smooth.unflatten(0, (batch, count)).permute(0, 1, 3, 4, 2)
        difference = self._smooth_portrait.to(frames) - smooth
        tolerance = self.colour_lock / 255.0
        weight = torch.exp(-(difference.norm(dim=-1, keepdim=True) / tolerance) ** 2)
        return (frames + weight * difference).clamp(0.0, 1.0)


def check_calibration(plan, decoder_calibration: float) -> None:
    """Raise a clear error for ``decoder_calibration`` on a ``"decoded"`` plan, which re-encodes and
    colour-corrects its windows inside its own codec and is not calibrated."""
    if plan.kernel_source == "decoded" and decoder_calibration:
        raise input_error("decoder_calibration", "a model that re-encodes decoded windows is not calibrated",
                          "set decoder_calibration to 0 in its pipeline config")


def portrait_anchor(vae, plan, portrait: torch.Tensor | None, initial_kernel: torch.Tensor,
                    decoder_calibration: float, colour_correction: float,
                    colour_lock: float = 0.0) -> PortraitAnchor | None:
    """The anchor a render with these loop settings uses, or ``None`` when there is nothing to do.

    A ``"decoded"`` plan colour-corrects inside its window codec and is not calibrated; without a
    portrait (only reference latents given) frames are left as decoded."""
    check_calibration(plan, decoder_calibration)
    if plan.kernel_source == "decoded" or portrait is None or not (decoder_calibration or colour_correction or colour_lock):
        return None
    return PortraitAnchor(vae, portrait, initial_kernel, decoder_calibration, colour_correction, colour_lock)
