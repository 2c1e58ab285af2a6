"""First pass over a video: face track, scene cuts, crop boxes and the clips to cut (no pixels kept)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .decode import VideoDecodeError, iter_frames_at_fps, probe_streams
from .face import FaceBox, HaarFaceDetector, smooth_boxes, track_faces
from .scenes import detect_scene_cuts, face_jumps, frame_signature, scene_cut_scores
from .segment import plan_clips, valid_segments


@dataclass
class VideoPlan:
    """What :func:`analyze_video` found. ``boxes`` ``[num_frames, 3]`` = ``(cx, cy, side)`` square crop
    boxes in full-resolution pixels (NaN rows: no usable face); ``clips``: ``[start, stop)`` frame
    ranges at ``fps``."""

    num_frames: int
    fps: float
    frame_size: tuple[int, int]
    boxes: np.ndarray
    face_fraction: float
    cuts: list[int] = field(default_factory=list)
    segments: list[tuple[int, int]] = field(default_factory=list)
    clips: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> dict:
        return {"frames": self.num_frames, "fps": self.fps, "width": self.frame_size[0], "height": self.frame_size[1],
                "face_fraction": round(float(self.face_fraction), 4), "scene_cuts": len(self.cuts),
                "segments": len(self.segments), "clips": len(self.clips)}


def analyze_video(path: str | os.PathLike, *, fps: float = 25.0, clip_frames: int = 101, stride: int | None = None,
                  detector: Callable[[np.ndarray], list[FaceBox]] | None = None, analysis_side: int = 360,
                  detect_every: int = 1, trim_s: float = 0.2, max_clips: int | None = None,
                  cut_threshold: float = 0.3, box_scale: float = 1.8, smooth_s: float = 0.12,
                  size_smooth_s: float = 0.5, max_gap_s: float = 0.4) -> VideoPlan:
    """Decode ``path`` once at ``fps`` on grey frames of at most ``analysis_side`` px, detect faces
    (every ``detect_every``-th frame; ``detector`` defaults to :class:`HaarFaceDetector`), find scene
    cuts and face-track jumps, smooth the crop boxes and plan fixed-length clips of ``clip_frames``.
    Raises :class:`~.decode.VideoDecodeError` for unreadable videos."""
    info = probe_streams(path)
    if not info["has_video"]:
        raise VideoDecodeError(f"{os.path.basename(path)} has no video stream")
    width, height = info["width"], info["height"]
    if not width or not height:
        raise VideoDecodeError(f"{os.path.basename(path)} has no frame size")
    detector = detector or HaarFaceDetector()
    detections: list[list[FaceBox]] = []
    signatures = []
    scale = None
    for k, gray in iter_frames_at_fps(path, fps, max_side=analysis_side, gray=True):
        if scale is None:
            scale = width / gray.shape[1], height / gray.shape[0]
        signatures.append(frame_signature(gray))
        detections.append(list(detector(gray)) if k % max(1, detect_every) == 0 else [])
    num_frames = len(detections)
    faces = track_faces(detections)
    if scale is not None:  # analysis pixels -> full-resolution pixels
        sx, sy = scale
        faces = [None if f is None else FaceBox(f.x * sx, f.y * sy, f.w * sx, f.h * sy) for f in faces]
    detected_frames = [i for i in range(num_frames) if i % max(1, detect_every) == 0]
    face_fraction = (sum(faces[i] is not None for i in detected_frames) / len(detected_frames)) if detected_frames else 0.0
    cuts = sorted(set(detect_scene_cuts(scene_cut_scores(signatures), fps, cut_threshold)) | set(face_jumps(faces)))
    boxes = np.full((num_frames, 3), np.nan)
    # Smooth each shot separately so a box never glides across a cut.
    edges = [0, *cuts, num_frames]
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            boxes[a:b] = smooth_boxes(faces[a:b], (width, height), fps, max_gap_s=max_gap_s, smooth_s=smooth_s,
                                      size_smooth_s=size_smooth_s, scale=box_scale)
    segments = valid_segments(~np.isnan(boxes[:, 0]), cuts)
    clips = plan_clips(segments, clip_frames, stride=stride, trim=int(round(trim_s * fps)), max_clips=max_clips)
    return VideoPlan(num_frames=num_frames, fps=float(fps), frame_size=(width, height), boxes=boxes,
                     face_fraction=face_fraction, cuts=cuts, segments=segments, clips=clips)
