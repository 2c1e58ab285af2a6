"""Clip plans: fixed-length clips inside runs of usable frames (a face, no cut)."""

from __future__ import annotations

import numpy as np


def valid_segments(has_box: np.ndarray, cuts: list[int] | tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of frames with a crop box, split at every cut (a cut frame starts a run)."""
    has_box = np.asarray(has_box, bool)
    boundaries = sorted({int(c) for c in cuts if 0 < int(c) < len(has_box)})
    segments = []
    edges = [0, *boundaries, len(has_box)]
    for a, b in zip(edges[:-1], edges[1:]):
        padded = np.concatenate([[False], has_box[a:b], [False]]).astype(np.int8)
        changes = np.flatnonzero(np.diff(padded))
        segments.extend((a + int(s), a + int(e)) for s, e in zip(changes[0::2], changes[1::2]))
    return segments


def plan_clips(segments: list[tuple[int, int]], clip_frames: int, *, stride: int | None = None,
               trim: int = 0, max_clips: int | None = None) -> list[tuple[int, int]]:
    """Fixed-length clips ``[start, start + clip_frames)`` inside each segment.

    ``trim`` frames are dropped at both ends of every segment (transitions, detector warm-up);
    ``stride`` (default ``clip_frames``: back to back, no overlap) is the step between clip starts;
    leftovers shorter than a clip are dropped. ``max_clips`` caps clips per video (evenly spread).
    """
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    stride = int(stride or clip_frames)
    clips = []
    for a, b in segments:
        a, b = a + trim, b - trim
        start = a
        while start + clip_frames <= b:
            clips.append((start, start + clip_frames))
            start += stride
    if max_clips is not None and len(clips) > max_clips:
        keep = np.linspace(0, len(clips) - 1, max_clips).round().astype(int)
        clips = [clips[i] for i in sorted(set(keep.tolist()))]
    return clips
