"""Reference image input: loading any common image form as RGB, and preprocessing to a tensor.

Conversions (documented, deterministic): RGBA/LA/PA/RGBa and palette images with transparency
are alpha-composited over white; L, 1, P, CMYK, YCbCr, LAB, HSV are converted to RGB; 16-bit
(I;16*, I) is scaled to 8 bit (``/ 257``); float (F) is taken as [0, 1]. EXIF orientation is
applied. Sizes are checked from the file header before decoding.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import input_error
from .files import check_input_file

MIN_SIDE = 32
MAX_SIDE = 8192
MAX_PIXELS = 50_000_000


def _check_size(width: int, height: int, argument: str, where: str) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise input_error(argument, f"{where} is {width}x{height} px, smaller than {MIN_SIDE} px on a side",
                          f"pass an image at least {MIN_SIDE}x{MIN_SIDE} px (ideally >= 512 px)")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise input_error(argument, f"{where} is {width}x{height} px, larger than {MAX_SIDE} px on a side or "
                          f"{MAX_PIXELS // 1_000_000} MP", "downscale the image first")


def _composite_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(image: Image.Image, argument: str) -> Image.Image:
    """Any PIL mode -> RGB following the module's documented conversions."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        return _composite_white(image)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise input_error(argument, "the image contains NaN or infinite values", "pass finite pixel values")
        return Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise input_error(argument, f"images of mode {mode!r} cannot be converted to RGB ({exc})",
                          "save the image as an RGB PNG or JPEG") from None


def _open_path(path: Path, argument: str, source=None) -> Image.Image:
    check_input_file(path if source is None else source, path, argument, "image")
    if path.is_dir():
        raise input_error(argument, f"{path} is a folder, not an image", "pass the path of an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # lazy: reads the header only
    except Image.DecompressionBombError:
        raise input_error(argument, f"{path} is far larger than {MAX_SIDE} px on a side or "
                          f"{MAX_PIXELS // 1_000_000} MP", "downscale the image first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise input_error(argument, f"{path} is not a readable image ({type(exc).__name__})",
                          "pass a PNG, JPEG or WebP image") from None
    try:
        _check_size(image.width, image.height, argument, str(path))
    except BaseException:
        image.close()
        raise
    try:
        image.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        image.close()
        raise input_error(argument, f"{path} is corrupt or truncated ({type(exc).__name__}: {exc})",
                          "pass an intact image file") from None
    return image


def _array_to_pil(array: np.ndarray, argument: str, layout: str) -> Image.Image:
    """[H, W] or [H, W, C] array (C in 1, 3, 4) -> PIL image (L, RGB or RGBA)."""
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise input_error(argument, f"got a batch of {array.shape[0]} images (shape {tuple(array.shape)})",
                              "pass a single image (select one from the batch)")
        array = array[0]
    if array.ndim == 3 and layout == "chw_or_hwc":
        if array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise input_error(argument, f"shape {tuple(array.shape)} is not an image",
                          "pass [H, W], [H, W, C] or [C, H, W] with C in 1, 3, 4 (or a ComfyUI [1, H, W, C])")
    height, width = array.shape[:2]
    _check_size(width, height, argument, "the image")
    kind = array.dtype.kind
    if kind == "b" or kind == "c" or kind not in "uif":
        raise input_error(argument, f"pixel dtype {array.dtype} is not supported",
                          "pass uint8, uint16 or float in [0, 1]", kind=TypeError)
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.uint16:
        pixels = np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
    elif kind == "f":
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise input_error(argument, "the image contains NaN or infinite values", "pass finite pixel values")
        low, high = float(values.min()), float(values.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise input_error(argument, f"float pixels span [{low:g}, {high:g}], not [0, 1]",
                              "divide 0..255 values by 255 (or pass uint8)")
        pixels = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:  # other integer dtypes: accepted when they hold 8-bit values
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise input_error(argument, f"{array.dtype} pixels span [{low}, {high}], not [0, 255]",
                              "pass uint8 0..255, uint16, or float in [0, 1]")
        pixels = array.astype(np.uint8)
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L")
    return Image.fromarray(pixels, "RGB" if pixels.shape[-1] == 3 else "RGBA")


def load_image(image, *, argument: str = "image") -> Image.Image:
    """Load a reference image as an RGB ``PIL.Image.Image``.

    ``image``: a path; a PIL image; a numpy array ``[H, W]`` / ``[H, W, 1|3|4]`` (uint8, uint16,
    or float in [0, 1]); a torch tensor ``[H, W, C]``, ``[C, H, W]`` (C in 1, 3, 4) or ComfyUI
    IMAGE ``[1, H, W, C]`` float in [0, 1]. Sides must be 32..8192 px and at most 50 MP.
    Bad input raises ``ValueError``/``TypeError`` naming ``argument``.
    """
    if isinstance(image, (str, os.PathLike)):
        if str(image) == "":
            raise input_error(argument, "the path is empty", "pass the path of a portrait image")
        path = Path(image).expanduser()
        with _open_path(path, argument, image) as opened:
            opened = ImageOps.exif_transpose(opened)
            return _to_rgb(opened, argument).copy()
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, argument, "the image")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise input_error(argument, f"the image could not be decoded ({type(exc).__name__}: {exc})",
                              "pass an intact image") from None
        return _to_rgb(image, argument).copy() if image.mode != "RGB" else image.copy()
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise input_error(argument, f"tensor dtype {tensor.dtype} is not an image",
                              "pass float in [0, 1] or uint8", kind=TypeError)
        return _to_rgb(_array_to_pil(tensor.numpy(), argument, "chw_or_hwc"), argument)
    if isinstance(image, np.ndarray):
        return _to_rgb(_array_to_pil(image, argument, "hwc"), argument)
    raise input_error(argument, f"expected a path, PIL image, numpy array or torch tensor, got {type(image).__name__}",
                      "pass the path of a portrait image", kind=TypeError)


def preprocess_image(image, height: int, width: int) -> torch.Tensor:
    """Centre-crop ``image`` to the ``width / height`` aspect and resize (Lanczos).

    ``image``: anything :func:`load_image` accepts. Returns float32 ``[1, 3, height, width]`` in
    [-1, 1].
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise input_error(name, f"expected an integer number of pixels, got {type(value).__name__}",
                              "pass e.g. 512", kind=TypeError)
        if not 1 <= value <= MAX_SIDE:
            raise input_error(name, f"{value} is outside 1..{MAX_SIDE}", "pass e.g. 512")
    height, width = int(height), int(width)
    picture = load_image(image)
    src_w, src_h = picture.size
    target = width / height
    if src_w / src_h > target:  # too wide: crop the sides
        crop_w = src_h * target
        left = (src_w - crop_w) / 2
        box = (left, 0.0, left + crop_w, float(src_h))
    else:  # too tall: crop top and bottom
        crop_h = src_w / target
        top = (src_h - crop_h) / 2
        box = (0.0, top, float(src_w), top + crop_h)
    resized = picture.resize((width, height), Image.Resampling.LANCZOS, box=box)
    pixels = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].clamp_(-1.0, 1.0)
