"""Decoding real videos with PyAV at a fixed frame rate, in constant memory, plus their audio.

Frame-rate conversion is nearest-frame resampling on the decoded timestamps: output frame ``k``
(at ``k / fps`` s after the first video frame) is the source frame whose timestamp is nearest to
it. Duplicates and drops happen as needed (30 -> 25 fps drops one frame in six); nothing is
interpolated, so crops stay sharp. Audio is resampled by FFmpeg's resampler to 16 kHz mono and
aligned to the first video frame (stream start offsets are honoured).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..files import ffmpeg_path


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded (reported and skipped by preprocessing)."""


def _open(path):
    import av

    source = Path(path)
    if not source.is_file():
        raise VideoDecodeError(f"{source} does not exist or is not a file")
    try:
        return av.open(ffmpeg_path(source))
    except (OSError, av.FFmpegError) as exc:
        raise VideoDecodeError(f"cannot open {source.name}: {type(exc).__name__}: {exc}") from None


def _seconds(value, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def probe_streams(path: str | os.PathLike) -> dict:
    """Container facts without decoding: ``has_video``, ``has_audio``, ``fps``, ``width``, ``height``,
    ``duration_s`` (container estimate, may be ``None``), ``audio_sample_rate``, ``audio_channels``."""
    container = _open(path)
    try:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
        duration = container.duration / 1_000_000 if container.duration else None
        return dict(
            has_video=video is not None, has_audio=audio is not None,
            fps=float(rate) if rate else None,
            width=int(video.codec_context.width) if video is not None else None,
            height=int(video.codec_context.height) if video is not None else None,
            duration_s=duration,
            audio_sample_rate=int(audio.codec_context.sample_rate or audio.rate) if audio is not None else None,
            audio_channels=int(audio.codec_context.channels) if audio is not None else None,
        )
    finally:
        container.close()


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def iter_frames_at_fps(path: str | os.PathLike, fps: float = 25.0, *, max_side: int | None = None,
                       gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, frame)`` for output frames ``k = 0, 1, ...`` of the video resampled to ``fps``.

    ``frame``: uint8 ``[H, W, 3]`` RGB (``[H, W]`` if ``gray``), down-scaled by FFmpeg so the
    longer side is at most ``max_side`` when given. Only the current and previous source frames are
    held, so memory is constant. Raises :class:`VideoDecodeError` for unreadable files.
    """
    import av

    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    container = _open(path)
    try:
        if not container.streams.video:
            raise VideoDecodeError(f"{Path(path).name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = _scaled_size(int(stream.codec_context.width), int(stream.codec_context.height), max_side)
        source_rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        source_step = 1.0 / float(source_rate) if source_rate else 1.0 / fps
        fmt = "gray" if gray else "rgb24"

        def convert(frame) -> np.ndarray:
            return frame.to_ndarray(format=fmt, width=width, height=height)

        start = None
        previous, previous_time = None, None
        k, count = 0, 0
        try:
            for frame in container.decode(stream):
                time = frame.time
                if time is None:
                    time = count * source_step
                count += 1
                if start is None:
                    start = time
                time -= start
                while k / fps <= time + 1e-9:
                    target = k / fps
                    use_previous = previous is not None and (target - previous_time) < (time - target)
                    yield k, convert(previous if use_previous else frame)
                    k += 1
                previous, previous_time = frame, time
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{Path(path).name} could not be decoded after {count} frames: "
                                   f"{type(exc).__name__}: {exc}") from None
        if previous is None:
            raise VideoDecodeError(f"{Path(path).name} has no decodable video frames")
        # The last source frame is shown for one source frame period.
        end = previous_time + source_step
        while k / fps < end - 1e-9:
            yield k, convert(previous)
            k += 1
    finally:
        container.close()


def read_audio_track(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio stream as float32 mono at ``sample_rate``, aligned so sample 0 is at the
    first video frame (leading gap zero-filled, or leading audio dropped). ``None`` without audio."""
    import av

    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        audio = container.streams.audio[0]
        video = container.streams.video[0] if container.streams.video else None
        offset = 0.0
        audio_start = _seconds(audio.start_time, audio.time_base)
        video_start = _seconds(video.start_time, video.time_base) if video is not None else None
        if audio_start is not None and video_start is not None:
            offset = audio_start - video_start
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces = []
        try:
            for frame in container.decode(audio):
                pieces.extend(out.to_ndarray().reshape(-1).copy() for out in resampler.resample(frame))
            pieces.extend(out.to_ndarray().reshape(-1).copy() for out in resampler.resample(None))
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"the audio of {Path(path).name} could not be decoded: "
                                   f"{type(exc).__name__}: {exc}") from None
    finally:
        container.close()
    waveform = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    shift = int(round(offset * sample_rate))
    if shift > 0:
        waveform = np.concatenate([np.zeros(shift, np.float32), waveform])
    elif shift < 0:
        waveform = waveform[-shift:]
    return waveform
