"""Colour correction of generated frames towards the portrait (Reinhard-style statistics transfer in CIE Lab).

Few-step students slowly drift in colour when each chunk is conditioned on frames re-encoded from
the previous one; matching every frame's Lab statistics to the portrait's before re-encoding keeps
the loop anchored. Per frame and per Lab channel, values are shifted and scaled so that the mean
and standard deviation over the image equal the portrait's, converted back to sRGB (clipped to the
gamut) and blended with the original frame by ``strength`` (0: unchanged, 1: fully corrected).

Colour spaces: sRGB with its standard transfer curve, D65 white, CIE Lab with the usual constants
(epsilon 0.008856, kappa 903.3).
"""

from __future__ import annotations

import torch

_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_XYZ_TO_RGB = ((3.2404542, -1.5371385, -0.4985314),
               (-0.9692660, 1.8760108, 0.0415560),
               (0.0556434, -0.2040259, 1.0572252))
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPSILON, _KAPPA = 0.008856, 903.3


def _matrix(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``[..., 3]`` in [0, 1] -> CIE Lab ``[..., 3]`` (L in [0, 100])."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _matrix(_RGB_TO_XYZ, rgb).T / _matrix(_WHITE_D65, rgb)
    xyz = xyz.clamp(1e-8, 1.0)
    f = torch.where(xyz > _EPSILON, xyz ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab ``[..., 3]`` -> sRGB ``[..., 3]`` clipped to [0, 1]."""
    lightness, a, b = lab.unbind(-1)
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    x = torch.where(fx ** 3 > _EPSILON, fx ** 3, (116 * fx - 16) / _KAPPA)
    y = torch.where(lightness > _KAPPA * _EPSILON, fy ** 3, lightness / _KAPPA)
    z = torch.where(fz ** 3 > _EPSILON, fz ** 3, (116 * fz - 16) / _KAPPA)
    xyz = torch.stack([x, y, z], dim=-1) * _matrix(_WHITE_D65, lab)
    linear = xyz @ _matrix(_XYZ_TO_RGB, lab).T
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def match_colours(frames: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Frames ``[B, 3, F, H, W]`` in [-1, 1] with each frame's Lab mean/std moved to the portrait's.

    ``reference``: the portrait ``[B, 3, H, W]`` (or ``[B, 3, 1, H, W]``) in [-1, 1], same size as
    the frames. ``strength`` in [0, 1] blends corrected and original frames (in [0, 1] RGB).
    Returns ``[B, 3, F, H, W]`` in [-1, 1], in the frames' dtype.
    """
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"colour correction strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return frames
    if reference.ndim == 4:
        reference = reference.unsqueeze(2)
    if frames.ndim != 5 or frames.shape[1] != 3 or reference.shape[-2:] != frames.shape[-2:]:
        raise ValueError(f"frames must be [B, 3, F, H, W] and the portrait [B, 3, H, W] of the same size, got "
                         f"{tuple(frames.shape)} and {tuple(reference.shape)}")
    source = ((frames.float() + 1) / 2).permute(0, 2, 3, 4, 1)  # [B, F, H, W, 3]
    target = ((reference.to(frames.device).float() + 1) / 2).permute(0, 2, 3, 4, 1)
    source_lab, target_lab = srgb_to_lab(source), srgb_to_lab(target)
    mean, std = source_lab.mean(dim=(2, 3), keepdim=True), source_lab.std(dim=(2, 3), keepdim=True, unbiased=False)
    target_mean = target_lab.mean(dim=(2, 3), keepdim=True)
    target_std = target_lab.std(dim=(2, 3), keepdim=True, unbiased=False)
    std = torch.where(std < 1e-8, torch.ones_like(std), std)
    corrected = lab_to_srgb((source_lab - mean) * (target_std / std) + target_mean)
    blended = (1 - strength) * source + strength * corrected
    return (blended * 2 - 1).permute(0, 4, 1, 2, 3).to(frames.dtype)
