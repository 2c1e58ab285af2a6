"""Appearance augmentation: one random colour transform applied alike to a clip and its reference.

A transform is an affine map of RGB in [0, 1], ``x' = clip(x @ matrix.T + offset)``, composed of a
hue rotation (about the grey axis), a saturation scale, a contrast scale about mid-grey and a
brightness shift. Applied to every frame of a clip *and* to the portrait the model is conditioned
on, it changes what the avatar looks like without changing what the model must do, so the only way
to get the colours right is to copy them from the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColourTransform:
    """``matrix`` float32 [3, 3] and ``offset`` float32 [3], acting on RGB in [0, 1]."""

    matrix: np.ndarray
    offset: np.ndarray

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[..., 3]`` -> uint8 ``[..., 3]`` (a new array; the input is not modified)."""
        x = frames.astype(np.float32) * (1.0 / 255.0)
        y = x @ self.matrix.T + self.offset
        return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


IDENTITY_TRANSFORM = ColourTransform(np.eye(3, dtype=np.float32), np.zeros(3, np.float32))


def hue_rotation(angle: float) -> np.ndarray:
    """[3, 3] rotation of RGB about the grey axis by ``angle`` radians (grey stays grey)."""
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return (np.cos(angle) * np.eye(3) + np.sin(angle) * cross
            + (1 - np.cos(angle)) * np.outer(axis, axis)).astype(np.float32)


def random_colour_transform(rng: np.random.Generator, *, probability: float = 0.8, hue: bool = True,
                            saturation: tuple[float, float] = (0.6, 1.4),
                            contrast: tuple[float, float] = (0.7, 1.25),
                            brightness: float = 0.1) -> ColourTransform:
    """A random :class:`ColourTransform`; the identity with probability ``1 - probability``."""
    if rng.uniform() >= probability:
        return IDENTITY_TRANSFORM
    grey = np.full((3, 3), 1.0 / 3.0)
    matrix = hue_rotation(rng.uniform(0, 2 * np.pi)) if hue else np.eye(3)
    s = rng.uniform(*saturation)
    matrix = (grey + s * (np.eye(3) - grey)) @ matrix
    c = rng.uniform(*contrast)
    matrix = c * matrix
    offset = np.full(3, 0.5 * (1 - c) + rng.uniform(-brightness, brightness))
    return ColourTransform(matrix.astype(np.float32), offset.astype(np.float32))
