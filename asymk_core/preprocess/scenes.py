"""Scene cuts: a cheap shot-boundary detector for talking-head footage, and face-track jumps.

For consecutive frames (small grey images) the score combines the L1 distance of their 32-bin
intensity histograms (halved: 0..1) and the mean absolute pixel difference of 32 x 32 thumbnails
(x4, capped at 1); a cut is declared where the score exceeds ``threshold`` *and* is well above
the local level (``ratio`` x the median score of the surrounding second), so fast head motion or
flashes in an otherwise continuous shot are not cut. Talking heads score ~0.01..0.05 inside a shot
and > 0.3 across a hard cut.
"""

from __future__ import annotations

import numpy as np

from .face import FaceBox

THUMB = 32
BINS = 32


def frame_signature(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised histogram ``[BINS]``, thumbnail float32 ``[THUMB, THUMB]``) of a uint8 grey frame."""
    from PIL import Image

    hist = np.bincount((gray.reshape(-1) >> 3).astype(np.int64), minlength=BINS).astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    thumb = np.asarray(Image.fromarray(gray).resize((THUMB, THUMB), Image.Resampling.BILINEAR), np.float32)
    return hist, thumb


def signature_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    hist = 0.5 * float(np.abs(a[0] - b[0]).sum())
    pixels = min(1.0, 4.0 * float(np.abs(a[1] - b[1]).mean()) / 255.0)
    return 0.5 * hist + 0.5 * pixels


def scene_cut_scores(signatures: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``scores[i]`` = change between frame ``i - 1`` and ``i`` (``scores[0] = 0``)."""
    scores = np.zeros(len(signatures))
    for i in range(1, len(signatures)):
        scores[i] = signature_distance(signatures[i - 1], signatures[i])
    return scores


def detect_scene_cuts(scores: np.ndarray, fps: float, threshold: float = 0.3, ratio: float = 3.0) -> list[int]:
    """Frames that start a new shot: ``score > threshold`` and ``score > ratio x`` the local median."""
    scores = np.asarray(scores, np.float64)
    half = max(1, int(round(fps / 2)))
    cuts = []
    for i in np.flatnonzero(scores > threshold):
        lo, hi = max(1, i - half), min(len(scores), i + half + 1)
        neighbours = np.concatenate([scores[lo:i], scores[i + 1:hi]])
        local = float(np.median(neighbours)) if neighbours.size else 0.0
        if scores[i] > ratio * local:
            cuts.append(int(i))
    return cuts


def face_jumps(faces: list[FaceBox | None], max_shift: float = 0.5, max_scale: float = 1.4) -> list[int]:
    """Frames where the tracked face moves more than ``max_shift`` face sizes or changes size by more
    than ``max_scale`` x since the previous detection (another person, a zoom cut, a false detection)."""
    jumps, last = [], None
    for i, face in enumerate(faces):
        if face is None:
            continue
        if last is not None:
            (x0, y0), (x1, y1) = last.center, face.center
            shift = np.hypot(x1 - x0, y1 - y0) / max(last.side, 1.0)
            size = max(face.side, 1.0) / max(last.side, 1.0)
            if shift > max_shift or not 1 / max_scale <= size <= max_scale:
                jumps.append(i)
        last = face
    return jumps
