"""Face boxes: OpenCV's bundled Haar cascade, a simple tracker, and temporally smoothed square crops.

Detection runs on down-scaled grey frames. Per frame the tracker keeps the detection closest to the
previous face (the largest one when there is no previous face). :func:`smooth_boxes` turns the raw
per-frame boxes into one square crop box per frame: short detection gaps are linearly
interpolated, centre and size are smoothed with a Gaussian over time (the size more strongly, since
it jitters most), the square is enlarged by ``scale`` around the face (padding: hair, chin, some
neck) and moved inside the frame. Frames in longer gaps get no box (NaN) and are dropped later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels: top-left ``(x, y)``, size ``(w, h)``."""

    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def side(self) -> float:
        return float(np.sqrt(self.w * self.h))


class HaarFaceDetector:
    """Frontal-face detector from OpenCV's bundled Haar cascades (no download, CPU, ~ms per frame).

    ``HaarFaceDetector(cascade="haarcascade_frontalface_default.xml", scale_factor=1.1,
    min_neighbors=4, min_size_fraction=0.08)``; calling it on an image (uint8 ``[H, W]`` grey or
    ``[H, W, 3]`` RGB) returns every detection as :class:`FaceBox`, largest first. Faces smaller
    than ``min_size_fraction`` of the shorter image side are ignored.
    Needs ``opencv-python-headless<5`` (``pip install 'asymk-talker[preprocess]'``); OpenCV 5 moved
    the Haar cascades out of the main package.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 4, min_size_fraction: float = 0.08):
        try:
            import cv2
        except ImportError as error:
            raise ImportError("face detection needs OpenCV: pip install 'asymk-talker[preprocess]' "
                              "(opencv-python-headless<5)") from error
        if not hasattr(cv2, "CascadeClassifier"):
            raise ImportError(f"OpenCV {cv2.__version__} has no Haar cascades (moved out in OpenCV 5): "
                              "pip install 'opencv-python-headless<5'")
        path = cascade if os.path.isfile(cascade) else os.path.join(cv2.data.haarcascades, cascade)
        self._classifier = cv2.CascadeClassifier(path)
        if self._classifier.empty():
            raise FileNotFoundError(f"could not load the Haar cascade {path}")
        self._cv2 = cv2
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_size_fraction = float(min_size_fraction)

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        cv2 = self._cv2
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        gray = cv2.equalizeHist(np.ascontiguousarray(gray))
        smallest = max(12, int(self.min_size_fraction * min(gray.shape[:2])))
        found = self._classifier.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                  minSize=(smallest, smallest))
        boxes = [FaceBox(float(x), float(y), float(w), float(h)) for (x, y, w, h) in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: -b.w * b.h)


def track_faces(detections: list[list[FaceBox]], max_jump: float = 0.5) -> list[FaceBox | None]:
    """One face per frame: the detection nearest the previous tracked face (within ``max_jump`` face
    sizes of it), else the largest. ``detections[i]`` is frame ``i``'s list (may be empty)."""
    tracked: list[FaceBox | None] = []
    last: FaceBox | None = None
    for boxes in detections:
        choice = None
        if boxes:
            if last is not None:
                lx, ly = last.center

                def distance(box):
                    cx, cy = box.center
                    return np.hypot(cx - lx, cy - ly) / max(last.side, 1.0)

                nearest = min(boxes, key=distance)
                choice = nearest if distance(nearest) <= max_jump else boxes[0]
            else:
                choice = boxes[0]
            last = choice
        tracked.append(choice)
    return tracked


def _interpolate_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly fill NaN runs of at most ``max_gap`` frames that lie between valid frames."""
    out = values.copy()
    valid = np.flatnonzero(~np.isnan(values))
    for a, b in zip(valid[:-1], valid[1:]):
        if 1 < b - a <= max_gap + 1:
            out[a + 1:b] = np.interp(np.arange(a + 1, b), [a, b], [values[a], values[b]])
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of True in a boolean vector."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def smooth_boxes(faces: list[FaceBox | None], frame_size: tuple[int, int], fps: float, *,
                 max_gap_s: float = 0.4, smooth_s: float = 0.12, size_smooth_s: float = 0.5,
                 scale: float = 1.8, center_shift: float = 0.08) -> np.ndarray:
    """Per-frame square crop boxes ``[N, 3]`` = ``(cx, cy, side)`` in pixels of ``frame_size = (W, H)``;
    rows are NaN where no face is known (gaps longer than ``max_gap_s``).

    Centre smoothing: Gaussian with sigma ``smooth_s`` seconds; size: ``size_smooth_s``. The side is
    ``scale`` x the face size, the centre moved down by ``center_shift`` x the face size (Haar boxes
    sit high on the face), then the square is shrunk to fit and shifted inside the frame.
    """
    from scipy.ndimage import gaussian_filter1d

    n = len(faces)
    out = np.full((n, 3), np.nan)
    if n == 0:
        return out
    raw = np.full((n, 3), np.nan)
    for i, face in enumerate(faces):
        if face is not None:
            cx, cy = face.center
            raw[i] = (cx, cy + center_shift * face.side, face.side * scale)
    max_gap = int(round(max_gap_s * fps))
    filled = np.stack([_interpolate_gaps(raw[:, j], max_gap) for j in range(3)], axis=1)
    width, height = frame_size
    for start, stop in _runs(~np.isnan(filled[:, 0])):
        segment = filled[start:stop]
        smoothed = np.empty_like(segment)
        for j, seconds in enumerate((smooth_s, smooth_s, size_smooth_s)):
            sigma = seconds * fps
            smoothed[:, j] = gaussian_filter1d(segment[:, j], sigma, mode="nearest") if sigma > 0 else segment[:, j]
        side = np.minimum(smoothed[:, 2], min(width, height))
        half = side / 2
        cx = np.clip(smoothed[:, 0], half, width - half)
        cy = np.clip(smoothed[:, 1], half, height - half)
        out[start:stop] = np.stack([cx, cy, side], axis=1)
    return out


def crop_frame(frame: np.ndarray, box, size: int) -> np.ndarray:
    """Crop the square ``box = (cx, cy, side)`` (pixels, sub-pixel accurate) and resize to ``size`` x
    ``size``: uint8 ``[size, size, 3]``."""
    from PIL import Image

    cx, cy, side = (float(v) for v in box)
    half = side / 2
    image = Image.fromarray(np.ascontiguousarray(frame))
    resized = image.resize((int(size), int(size)), Image.Resampling.LANCZOS,
                           box=(cx - half, cy - half, cx + half, cy + half))
    return np.asarray(resized, dtype=np.uint8)
