"""Real-video preprocessing: decoding at a fixed frame rate, face tracks, scene cuts and clip plans.

Pure data logic (no training code): ``train/preprocess.py`` drives it and writes the latent cache.

* :mod:`.decode`   — :func:`iter_frames_at_fps` (PyAV, constant-memory, nearest-frame resampling to
  e.g. 25 fps, optional down-scaled decoding), :func:`read_audio_track` (16 kHz mono, aligned to
  the first video frame), :func:`probe_streams`.
* :mod:`.face`     — :class:`HaarFaceDetector` (OpenCV's bundled Haar cascade; ``pip install
  'asymk-talker[preprocess]'``), :func:`smooth_boxes` (gap filling + temporal smoothing into a
  square, padded crop box per frame), :func:`crop_frame`.
* :mod:`.scenes`   — :func:`scene_cut_scores` / :func:`detect_scene_cuts` (histogram distance of
  consecutive frames) and :func:`face_jumps` (the tracked face changes place or size abruptly).
* :mod:`.segment`  — :func:`valid_segments` and :func:`plan_clips` (fixed-length clips inside
  runs of frames with a face and no cut).
* :mod:`.analyze`  — :func:`analyze_video`: the first pass over a video (detection + cuts) ->
  a :class:`VideoPlan` with per-frame crop boxes and the clips to cut.
"""

# Imported lazily so ``asymk-talker`` can register its flags (``.options``) without loading torch.
_EXPORTS = {
    "VideoPlan": "analyze", "analyze_video": "analyze",
    "iter_frames_at_fps": "decode", "probe_streams": "decode", "read_audio_track": "decode",
    "VideoDecodeError": "decode",
    "FaceBox": "face", "HaarFaceDetector": "face", "crop_frame": "face", "smooth_boxes": "face",
    "track_faces": "face",
    "detect_scene_cuts": "scenes", "face_jumps": "scenes", "scene_cut_scores": "scenes",
    "plan_clips": "segment", "valid_segments": "segment",
    "PreprocessConfig": "options",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
