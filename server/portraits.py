"""The portraits the page offers: held in memory by name, so no client input names a file."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..asymk_core.errors import input_error
from ..asymk_core.image import load_image
from ..asymk_core.model_folder import PACKAGE_ROOT

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")


def builtin_portraits(size: int = 64) -> dict[str, bytes]:
    """Name -> PNG bytes: the bundled example, two generator identities and a drawn cartoon."""
    from ..asymk_core.eval.cartoons import draw_cartoon
    from ..asymk_core.synthetic.avatar import render_portrait

    images = {"example": np.asarray(Image.open(PACKAGE_ROOT / "assets" / "examples" / "portrait.png").convert("RGB")),
              "identity-7": render_portrait(7, size), "identity-wide-3": render_portrait(3, size, "wide"),
              "cartoon": draw_cartoon(5, size).image}
    return {name: _png(image) for name, image in images.items()}


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 100_000 else f"{num_bytes / 1e3:.1f} kB"


def decode_upload(data: bytes, max_bytes: int) -> Image.Image:
    """An uploaded image file -> RGB image, or a one-line error for the page."""
    if len(data) > max_bytes:
        raise input_error("portrait", f"the upload is {_size(len(data))}, over the {_size(max_bytes)} limit",
                          "upload a smaller image")
    try:
        opened = Image.open(io.BytesIO(data))
        kind = opened.format
    except Exception:  # PIL raises several types for non-images
        raise input_error("portrait", "the upload is not an image", "upload a PNG, JPEG or WebP portrait") from None
    if kind not in UPLOAD_FORMATS:
        raise input_error("portrait", f"{kind} images are not accepted", "upload a PNG, JPEG or WebP portrait")
    width, height = opened.size
    if width * height > 50_000_000:  # before decoding: a small file can declare a huge image
        raise input_error("portrait", f"the image is {width} x {height} px", "upload an image of at most 50 MP")
    try:
        opened.load()
    except Exception:
        raise input_error("portrait", "the image file is damaged", "upload a complete PNG, JPEG or WebP file") from None
    return load_image(opened, argument="portrait")
