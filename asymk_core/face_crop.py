"""Real photos: find the face, crop it at the model's size, and paste generated frames back.

:class:`FaceCrop` is the crop box in photo pixels: the face (OpenCV's Haar cascade, the largest
detection, or a box given by hand) enlarged ``padding`` times, centred a little below the face,
with the model's aspect ratio, moved inside the photo when it fits. A box larger than the photo
keeps its size and the crop is filled beyond the photo by mirroring it.

:class:`PasteBack` turns each generated frame (the crop, ``[h, w, 3]`` uint8 at the model's size)
into a full-resolution photo frame, one frame at a time, in constant memory:

1. the frame is resized (Lanczos) to the box's size in photo pixels;
2. colour matching: per RGB channel, the frame is shifted and scaled so that the mean and standard
   deviation of its *border ring* (the box's outer ``feather`` band, where the frame is blended
   into the photo) equal those of the photo's own pixels there (the gain is limited to 0.5..2);
3. it is blended into the photo with a feathered mask: 1 inside, falling smoothly (smoothstep) to
   0 at the box edge over a band of ``feather`` x the box's shorter side;
4. pixels outside the box are the photo's own, bit for bit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from .errors import input_error

DEFAULT_PADDING = 1.8
"""Crop side / face side: room for hair, chin and some neck around a Haar face box."""
DEFAULT_FEATHER = 0.15
"""Width of the blending band at the box edge, as a fraction of the box's shorter side."""
CENTER_SHIFT = 0.08  # Haar boxes sit high on the face: the crop centre goes this many face sides lower
DETECT_MAX_SIDE = 1024  # photos are detected at most this large (faster; the box is scaled back)
MIN_FACE_FRACTION = 0.05  # faces smaller than this fraction of the photo's shorter side are ignored
COLOR_MATCH = ("mean_std", "mean", "none")
FACE_BOX_FIX = ("give the face's box by hand in photo pixels (face_box=(x, y, w, h); on the command line "
                "--face-box X,Y,W,H), or use a photo where the face is frontal and larger")


@dataclass(frozen=True)
class FaceCrop:
    """A crop box ``(left, top, box_width, box_height)`` in photo pixels (it may extend past the
    photo's edges) in a photo of ``photo_size = (W, H)``, and the model-size image
    ``size = (width, height)`` the box maps to."""

    left: int
    top: int
    box_width: int
    box_height: int
    photo_size: tuple[int, int]
    size: tuple[int, int]

    @classmethod
    def from_face(cls, face_box, photo_size: tuple[int, int], size, padding: float = DEFAULT_PADDING) -> FaceCrop:
        """The crop for a face ``face_box = (x, y, w, h)`` (photo pixels) in a photo of ``photo_size = (W, H)``:
        ``padding`` x the face's side high, ``size = (width, height)`` (or one int, square) gives its aspect."""
        out_w, out_h = _check_size(size)
        padding = _check_padding(padding)
        x, y, w, h = _check_face_box(face_box, photo_size)
        photo_w, photo_h = photo_size
        side = math.sqrt(w * h)
        cx, cy = x + w / 2, y + h / 2 + CENTER_SHIFT * side
        box_h = max(1, round(padding * side))
        box_w = max(1, round(box_h * out_w / out_h))
        return cls(_place(cx, box_w, photo_w), _place(cy, box_h, photo_h), box_w, box_h, (photo_w, photo_h),
                   (out_w, out_h))

    @classmethod
    def detect(cls, photo: np.ndarray, size, padding: float = DEFAULT_PADDING, face_box=None,
               argument: str = "image") -> FaceCrop:
        """The crop for the largest face in ``photo`` (uint8 ``[H, W, 3]``), or for ``face_box`` if given.

        No face found: a ``ValueError`` naming ``argument`` that says to pass ``face_box``.
        """
        photo = _check_photo(photo, argument)
        photo_size = (photo.shape[1], photo.shape[0])
        if face_box is None:
            face_box = detect_face(photo, argument)
        return cls.from_face(face_box, photo_size, size, padding)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in photo pixels (right / bottom exclusive)."""
        return self.left, self.top, self.left + self.box_width, self.top + self.box_height

    @property
    def inside(self) -> tuple[int, int, int, int]:
        """The part of the box inside the photo: ``(left, top, right, bottom)``."""
        left, top, right, bottom = self.box
        width, height = self.photo_size
        return max(left, 0), max(top, 0), min(right, width), min(bottom, height)

    def box_pixels(self, photo: np.ndarray) -> np.ndarray:
        """The box's pixels ``[box_height, box_width, 3]`` uint8 at photo resolution; past the
        photo's edges the photo is mirrored."""
        photo = self._check(photo)
        left, top, right, bottom = self.box
        x0, y0, x1, y1 = self.inside
        region = photo[y0:y1, x0:x1]
        pads = ((y0 - top, bottom - y1), (x0 - left, right - x1), (0, 0))
        return np.pad(region, pads, mode="symmetric") if any(a or b for a, b in pads[:2]) else region

    def crop(self, photo: np.ndarray) -> np.ndarray:
        """The model's input: the box resized (Lanczos) to ``size``, uint8 ``[height, width, 3]``."""
        return _resize(self.box_pixels(photo), self.size)

    def _check(self, photo) -> np.ndarray:
        photo = _check_photo(photo, "photo")
        if (photo.shape[1], photo.shape[0]) != tuple(self.photo_size):
            raise input_error("photo", f"it is {photo.shape[1]}x{photo.shape[0]} px but the crop was made for a "
                              f"{self.photo_size[0]}x{self.photo_size[1]} px photo", "pass the same photo")
        return photo


class PasteBack:
    """Generated crops -> full photo frames, one at a time (constant memory; see the module doc).

    ``PasteBack(photo, crop, feather=0.15, color_match="mean_std")``: ``photo`` uint8 ``[H, W, 3]``,
    ``crop`` a :class:`FaceCrop` of it. ``color_match``: ``"mean_std"``, ``"mean"`` (shift only) or
    ``"none"``. Calling it on a generated frame ``[h, w, 3]`` (uint8, or float in [0, 1]; usually the
    crop's ``size``, any size of that aspect ratio works) returns the photo frame, uint8 ``[H, W, 3]``.
    """

    def __init__(self, photo: np.ndarray, crop: FaceCrop, feather: float = DEFAULT_FEATHER,
                 color_match: str = "mean_std"):
        if not isinstance(crop, FaceCrop):
            raise input_error("crop", f"expected a FaceCrop, got {type(crop).__name__}", "pass FaceCrop.detect(...)",
                              kind=TypeError)
        if isinstance(feather, bool) or not isinstance(feather, (int, float)) or not 0 <= feather <= 0.5:
            raise input_error("feather", f"{feather!r} is not a fraction in [0, 0.5]", "pass e.g. 0.15")
        if color_match not in COLOR_MATCH:
            raise input_error("color_match", f"{color_match!r} is not supported", f"use one of {COLOR_MATCH}")
        self.crop, self.color_match = crop, color_match
        self.photo = np.ascontiguousarray(crop._check(photo))
        x0, y0, x1, y1 = crop.inside
        left, top = crop.left, crop.top
        self._rows, self._cols = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)  # in box coordinates
        self._target = (slice(y0, y1), slice(x0, x1))  # in photo coordinates
        band = feather * min(crop.box_width, crop.box_height)
        mask = feather_mask(crop.box_width, crop.box_height, band)[self._rows, self._cols]
        self._mask = mask[..., None].astype(np.float32)
        self._ring = mask < 1.0
        region = self.photo[self._target].astype(np.float32)
        self._photo_region = region
        self._photo_stats = _ring_stats(region, self._ring)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(W, H)`` of the frames returned: the photo's."""
        return self.photo.shape[1], self.photo.shape[0]

    def __call__(self, frame) -> np.ndarray:
        frame = _frame_to_uint8(frame, self.crop.size)
        generated = _resize(frame, (self.crop.box_width, self.crop.box_height))[self._rows, self._cols]
        generated = generated.astype(np.float32)
        if self.color_match != "none" and self._photo_stats is not None:
            generated = _match_colors(generated, self._ring, self._photo_stats, self.color_match == "mean_std")
        blended = self._photo_region + self._mask * (generated - self._photo_region)
        out = self.photo.copy()
        out[self._target] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return out


def feather_mask(width: int, height: int, band: float) -> np.ndarray:
    """Blend weights ``[height, width]`` float32 in [0, 1]: 1 inside, smoothstep falloff to 0 at the
    edge over ``band`` pixels (the edge pixels, half a pixel from the edge, get almost 0)."""
    def ramp(n):
        distance = np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5)
        if band <= 0:
            return np.ones(n, np.float32)
        t = np.clip(distance / band, 0.0, 1.0)
        return (t * t * (3.0 - 2.0 * t)).astype(np.float32)

    return ramp(height)[:, None] * ramp(width)[None, :]


def detect_face(photo: np.ndarray, argument: str = "image") -> tuple[float, float, float, float]:
    """The largest frontal face in ``photo`` (uint8 ``[H, W, 3]``) as ``(x, y, w, h)`` photo pixels.

    OpenCV's bundled Haar cascade on the photo scaled to at most 1024 px; no face: a ``ValueError``
    naming ``argument``."""
    from .preprocess.face import HaarFaceDetector

    try:
        detector = HaarFaceDetector(min_size_fraction=MIN_FACE_FRACTION)
    except ImportError:
        import importlib.util

        problem = "OpenCV is not installed" if importlib.util.find_spec("cv2") is None else (
            "this OpenCV has no Haar cascades (OpenCV 5 moved them out)")
        raise input_error(argument, f"finding the face needs OpenCV's Haar cascades, but {problem}",
                          "pip install 'asymk-talker[photo]' (opencv-python-headless<5), or give the face's box by "
                          "hand (face_box=(x, y, w, h); --face-box X,Y,W,H)") from None
    height, width = photo.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = photo
    if scale < 1.0:
        small = _resize(photo, (max(1, round(width * scale)), max(1, round(height * scale))))
    faces = detector(small)
    if not faces:
        raise input_error(argument, f"no face was found in the {width}x{height} px photo", FACE_BOX_FIX)
    face = faces[0]
    return face.x / scale, face.y / scale, face.w / scale, face.h / scale


def parse_face_box(text: str, argument: str = "face_box") -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` (photo pixels; spaces allowed) -> a tuple; ``""`` or ``"auto"`` -> ``None`` (detect the face)."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise input_error(argument, f"{text!r} is not four integers x,y,w,h",
                          "pass the face's box in photo pixels, e.g. 177,67,93,93")
    return values


def crop_photo(image, size, *, face_box=None, padding: float = DEFAULT_PADDING,
               argument: str = "image") -> tuple[np.ndarray, PasteBack]:
    """Load a photo (anything :func:`asymk_core.image.load_image` takes), find the face (or use
    ``face_box``) and crop it: ``(crop uint8 [height, width, 3], its PasteBack)``."""
    from .image import load_image

    photo = np.asarray(load_image(image, argument=argument))
    crop = FaceCrop.detect(photo, size, padding, face_box, argument)
    return crop.crop(photo), PasteBack(photo, crop)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size :func:`pad_to_even` gives: odd sides grow by one pixel."""
    return width + width % 2, height + height % 2


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """``[..., H, W, 3]`` -> even ``H`` and ``W`` (H.264 yuv420p), an odd side getting one more
    row / column copied from the edge; even sizes are returned as they are."""
    height, width = frames.shape[-3:-1]
    if height % 2 == 0 and width % 2 == 0:
        return frames
    pads = [(0, 0)] * (frames.ndim - 3) + [(0, height % 2), (0, width % 2), (0, 0)]
    return np.pad(frames, pads, mode="edge")


def paste_back_chunks(chunks: Iterable, paste: PasteBack, *, even: bool = False) -> Iterator:
    """Decoded chunks (``frames`` ``[1, f, h, w, 3]`` float in [0, 1], e.g.
    :class:`asymk_core.generation.VideoChunk`) -> the same chunks with full photo frames
    ``[1, f, H, W, 3]`` float32 in [0, 1] (CPU; made even-sized with ``even``), one chunk in memory
    at a time."""
    for chunk in chunks:
        frames = chunk.frames[0].float().cpu().numpy()
        pasted = np.stack([paste(frame) for frame in frames])
        if even:
            pasted = pad_to_even(pasted)
        yield replace(chunk, frames=torch.from_numpy(pasted.astype(np.float32) / 255.0)[None])


# -------------------------------------------------------------------------------------- helpers
def _place(center: float, length: int, limit: int) -> int:
    """Start of a ``length`` span centred on ``center``, moved inside ``[0, limit)`` when it fits
    (else centred on the photo)."""
    if length >= limit:
        return (limit - length) // 2
    return int(min(max(round(center - length / 2), 0), limit - length))


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (pixels.shape[1], pixels.shape[0]) == tuple(size):
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize(tuple(size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _ring_stats(pixels: np.ndarray, ring: np.ndarray):
    """Per-channel mean and standard deviation ``([3], [3])`` of ``pixels[ring]``, or ``None`` when empty."""
    if not ring.any():
        return None
    values = pixels[ring]
    return values.mean(axis=0), values.std(axis=0)


def _match_colors(pixels: np.ndarray, ring: np.ndarray, target, with_std: bool) -> np.ndarray:
    mean, std = _ring_stats(pixels, ring)
    target_mean, target_std = target
    gain = np.clip(target_std / np.maximum(std, 1e-3), 0.5, 2.0) if with_std else np.ones(3, np.float32)
    gain = np.where(std < 1e-3, 1.0, gain)  # a flat ring says nothing about contrast
    return (pixels - mean) * gain.astype(np.float32) + target_mean


def _check_photo(photo, argument: str) -> np.ndarray:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        got = f"{photo.dtype} {tuple(photo.shape)}" if isinstance(photo, np.ndarray) else type(photo).__name__
        raise input_error(argument, f"expected an RGB photo uint8 [H, W, 3], got {got}",
                          "pass e.g. np.asarray(load_image(path))", kind=TypeError)
    if min(photo.shape[:2]) < 1:
        raise input_error(argument, "the photo is empty", "pass a photo")
    return photo


def _frame_to_uint8(frame, size: tuple[int, int]) -> np.ndarray:
    """A generated frame ``[h, w, 3]`` with the aspect ratio of ``size = (width, height)`` -> uint8."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().float().cpu().numpy()
    shape = tuple(frame.shape) if isinstance(frame, np.ndarray) else None
    if shape is None or len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1 or (
        abs(shape[1] / shape[0] - size[0] / size[1]) > 0.02 * size[0] / size[1]
    ):
        got = shape or type(frame).__name__
        raise input_error("frame", f"expected a generated RGB frame [{size[1]}, {size[0]}, 3] (or that aspect "
                          f"ratio), got {got}", "generate the video at the face crop's width and height")
    if frame.dtype == np.uint8:
        return frame
    return np.rint(np.clip(frame.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_size(size) -> tuple[int, int]:
    values = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    try:
        width, height = (int(v) for v in values)
        ok = all(not isinstance(v, bool) and float(v) == int(v) for v in values) and width >= 1 and height >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise input_error("size", f"{size!r} is not a (width, height) in pixels", "pass e.g. (512, 512)")
    return width, height


def _check_padding(padding) -> float:
    if isinstance(padding, bool) or not isinstance(padding, (int, float, np.integer, np.floating)) or not (
        1.0 <= float(padding) <= 4.0
    ):
        raise input_error("face_padding", f"{padding!r} is not a factor in [1, 4]",
                          f"pass e.g. {DEFAULT_PADDING} (crop side / face side)")
    return float(padding)


def _check_face_box(face_box, photo_size) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in face_box)
        ok = all(math.isfinite(v) for v in (x, y, w, h)) and w >= 1 and h >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise input_error("face_box", f"{face_box!r} is not a box (x, y, w, h) with w, h >= 1",
                          "pass the face's box in photo pixels, e.g. (177, 67, 93, 93)")
    photo_w, photo_h = photo_size
    if x >= photo_w or y >= photo_h or x + w <= 0 or y + h <= 0:
        raise input_error("face_box", f"{tuple(face_box)} lies outside the {photo_w}x{photo_h} px photo",
                          "pass a box (x, y, w, h) inside the photo")
    return x, y, w, h
