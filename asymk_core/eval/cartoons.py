"""Cartoon portraits drawn with PIL, outside the avatar renderer: flat background, a simple face and
shirt. They test that a model copies appearance from its reference instead of recalling the
renderer's look. Deterministic from a seed; the drawn colours are returned for exact checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Flat colours that are easy to name and easy to get wrong (the first ones of the fidelity report).
PALETTE = {"blue": (40, 80, 200), "yellow": (235, 205, 60), "grey": (128, 128, 128), "green": (40, 160, 70),
           "red": (200, 40, 40), "teal": (30, 150, 150), "orange": (235, 130, 30), "purple": (120, 60, 170),
           "white": (235, 235, 235), "black": (25, 25, 25)}


@dataclass(frozen=True)
class Cartoon:
    """``image`` uint8 ``[size, size, 3]`` and the colours it was drawn with."""

    image: np.ndarray
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]
    hair: tuple[int, int, int]


def draw_cartoon(seed: int, size: int = 64) -> Cartoon:
    """A head-and-shoulders cartoon: flat background, shirt, neck, face, hair, eyes, mouth."""
    rng = np.random.default_rng([int(seed), 0xCA7])
    names = list(PALETTE)
    background, shirt, hair = (PALETTE[names[i]] for i in rng.choice(len(names), 3, replace=False))
    skin = tuple(int(c) for c in rng.choice([(240, 200, 170), (200, 150, 110), (140, 95, 65), (250, 225, 200)]))
    s = size / 64.0
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse([10 * s, 50 * s, 54 * s, 96 * s], fill=shirt)
    draw.rectangle([27 * s, 38 * s, 37 * s, 52 * s], fill=skin)
    cx, cy = 32 * s + rng.uniform(-2, 2) * s, 26 * s
    draw.ellipse([cx - 12 * s, cy - 15 * s, cx + 12 * s, cy + 15 * s], fill=skin)
    draw.chord([cx - 13 * s, cy - 17 * s, cx + 13 * s, cy + 6 * s], 180, 360, fill=hair)
    for side in (-1, 1):
        ex = cx + side * 5 * s
        draw.ellipse([ex - 2.2 * s, cy - 1.5 * s, ex + 2.2 * s, cy + 1.8 * s], fill=(250, 250, 250))
        draw.ellipse([ex - 1.0 * s, cy - 0.8 * s, ex + 1.0 * s, cy + 1.2 * s], fill=(20, 20, 20))
    draw.line([cx - 4 * s, cy + 8 * s, cx + 4 * s, cy + 8 * s], fill=(150, 40, 50), width=max(1, int(1.5 * s)))
    return Cartoon(np.asarray(image).copy(), background, shirt, hair)
