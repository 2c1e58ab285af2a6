"""Video files with PyAV: a streaming, atomic MP4/MKV/MOV writer, and exact readers.

:class:`VideoWriter` encodes frames as they arrive (constant memory) into a ``.partial`` file next
to the target, interleaves the AAC audio up to the video time written so far, and on success
pads/trims the audio to exactly ``frames_written / fps`` seconds and renames the file onto the
target; on failure the partial file is deleted, so a half-written video never appears. Next to
each partial file a lock file names its writer (``out.partial-1a2b3c4d.pid``, held while it
writes), so partial files left by a killed writer are told from those of a writer still at work
and deleted by the next writer of the same output.
"""

from __future__ import annotations

import errno
import glob
import math
import os
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, input_error
from .files import ffmpeg_path
from .locks import LockHeld, LockUnsupported, OwnerLock, take_if_abandoned

VIDEO_SUFFIXES = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
MAX_SIDE = 8192


def _check_number(name, value, low, high, *, integer=False, low_open=False):
    types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, types):
        raise input_error(name, f"expected {'an integer' if integer else 'a number'}, got {type(value).__name__}",
                          f"pass a value in {'(' if low_open else '['}{low}, {high}]", kind=TypeError)
    ok = math.isfinite(float(value)) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise input_error(name, f"{value!r} is out of range", f"pass a value in {bracket}{low}, {high}]")
    return value


def _check_output_path(path, argument: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise input_error(argument, f"expected a file path, got {type(path).__name__}", "pass e.g. 'out.mp4'",
                          kind=TypeError)
    if str(path) == "":
        raise input_error(argument, "the path is empty", "pass e.g. 'out.mp4'")
    target = Path(path).expanduser()
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        raise input_error(argument, f"{target.name!r} does not end in {', '.join(VIDEO_SUFFIXES)}",
                          "name the output e.g. 'video.mp4'")
    if target.is_dir():
        raise input_error(argument, f"{target} is a folder", "pass a file path such as 'video.mp4'")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise input_error(argument, f"{parent} is a file, not a folder", "choose a path inside an existing folder")
    if not parent.is_dir():
        raise input_error(argument, f"the folder {parent} does not exist", "create it first or choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise input_error(argument, f"the folder {parent} is not writable", "choose a folder you can write to")
    # The longest name written next to the output: its partial file or that file's owner record (see
    # VideoWriter), checked up front rather than when the first chunk is written.
    partial = max(f"{target.stem}.partial-{'x' * 8}{target.suffix}", f"{target.stem}.partial-{'x' * 8}.pid", key=len)
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    if len(os.fsencode(partial)) > name_max:
        raise input_error(argument, f"the name {target.name!r} is too long: its partial file "
                          f"{target.stem[:20]}...{partial[-21:]} would take {len(os.fsencode(partial))} bytes, more "
                          f"than the {name_max} this file system allows", f"use a name of at most "
                          f"{name_max - len(os.fsencode(partial)) + len(os.fsencode(target.name))} bytes")
    return target


def _partial_owner(partial: Path) -> Path:
    """The lock file that names the writer of a partial video: ``out.partial-1a2b3c4d.pid``."""
    return partial.with_suffix(".pid")


def remove_abandoned_partials(target, folder=None) -> list[Path]:
    """Delete the partial files of ``target`` in ``folder`` (default: the target's own) whose writer is
    gone (killed, crashed, power loss), with their owner records; returns the partials deleted.

    A partial whose writer still runs, in this process or another, is kept, and so is one without an
    owner record (written by an older version: nothing says whose it is).
    """
    target = Path(target)
    folder = target.parent if folder is None else Path(folder)
    removed = []
    for owner in folder.glob(f"{glob.escape(target.stem)}.partial-*.pid"):
        lock = take_if_abandoned(owner)
        if lock is None:  # its writer is at work
            continue
        try:
            for partial in folder.glob(f"{glob.escape(owner.stem)}.*"):
                if partial != owner:
                    partial.unlink(missing_ok=True)
                    removed.append(partial)
        except OSError:  # e.g. no permission: leave it
            pass
        finally:
            lock.release()
    return removed


def _claim_partial(partial: Path) -> OwnerLock | None:
    """Hold the owner record of ``partial`` (PID inside) while it is written; ``None`` where files cannot be locked."""
    try:
        return OwnerLock(_partial_owner(partial), reentrant=False).acquire()
    except (LockHeld, LockUnsupported):  # writing still works; the partial just cannot be told abandoned
        return None


def _write_error(argument: str, path: Path, exc: BaseException, creating: bool = False) -> Exception:
    """An OS/FFmpeg failure while creating or writing ``path`` -> one clear error naming ``argument``."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if code in (errno.ENOSPC, errno.EDQUOT):
        return input_error(argument, f"writing {path} failed: the disk is full ({reason}); the partial file "
                           "was deleted", "free disk space or write to another disk")
    if creating or code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return input_error(argument, f"{path} cannot be written ({reason})", "choose a folder you can write to")
    return input_error(argument, f"writing {path} failed ({type(exc).__name__}: {reason}); the partial file "
                       "was deleted", "check the disk and the path, or choose another path")


def _frames_to_uint8(frames, width: int, height: int) -> np.ndarray:
    """[N, H, W, 3] (or one [H, W, 3]) uint8 / float in [0, 1], numpy or torch -> uint8 [N, H, W, 3]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.dtype in (torch.bfloat16, torch.float16):
            frames = frames.float()
        frames = frames.numpy()
    if not isinstance(frames, np.ndarray):
        raise input_error("frames", f"expected a numpy array or torch tensor, got {type(frames).__name__}",
                          "pass uint8 or float [N, H, W, 3] frames", kind=TypeError)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise input_error("frames", f"shape {tuple(frames.shape)} does not match [N, {height}, {width}, 3]",
                          f"pass RGB frames of the writer's size {width}x{height} (channels last)")
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype.kind != "f":
        raise input_error("frames", f"dtype {frames.dtype} is not supported", "pass uint8 or float in [0, 1]",
                          kind=TypeError)
    if frames.size and not np.all(np.isfinite(frames)):
        raise input_error("frames", "the frames contain NaN or infinite values", "check the generator output")
    if frames.size:
        low, high = float(frames.min()), float(frames.max())
        if low < -0.5 or high > 1.5:
            raise input_error("frames", f"float values span [{low:g}, {high:g}], not [0, 1]",
                              "map frames to [0, 1] (e.g. (x + 1) / 2, or x / 255) or pass uint8")
    return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _audio_to_float(audio, argument: str = "audio") -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    if not isinstance(audio, np.ndarray):
        raise input_error(argument, f"expected a numpy array or torch tensor, got {type(audio).__name__}",
                          "pass a float32 mono waveform [T] (or None)", kind=TypeError)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 1:
        raise input_error(argument, f"expected a mono waveform [T], got shape {tuple(audio.shape)}",
                          "pass a float32 mono waveform [T]")
    if audio.dtype.kind != "f":
        raise input_error(argument, f"expected float samples, got {audio.dtype}", "pass float32 in [-1, 1]",
                          kind=TypeError)
    if audio.size and not (math.isfinite(float(np.min(audio))) and math.isfinite(float(np.max(audio)))):
        raise input_error(argument, "the waveform contains NaN or infinite samples", "pass finite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


class VideoWriter:
    """Streaming, atomic video writer (H.264 yuv420p + AAC mono, constant frame rate).

    ``VideoWriter(path, fps, width, height, audio=None, audio_sample_rate=16000)``; ``audio`` is a
    float32 mono waveform ``[T]``. ``write(frames)`` takes uint8 or float-in-[0, 1]
    ``[N, height, width, 3]`` (numpy or torch) and encodes them at once. ``close()`` (or leaving
    the ``with`` block normally) finishes the file: audio padded/trimmed to ``frames_written / fps``
    s, then an atomic rename onto ``path``. An exception in the block, or ``abort()``, deletes the
    partial file. ``frames_written`` counts frames so far. Falls back to ``mpeg4`` when the PyAV
    build lacks ``libx264``.

    The ``.partial`` file is created in the constructor, so an unwritable place fails before any
    work is done. An ``OSError`` while writing (disk full, file system gone) aborts the file and
    becomes one clear ``ValueError`` naming ``argument``. ``threads`` / ``b_frames`` fix the
    encoder's thread count and B-frames (``threads=N, b_frames=0`` gives byte-identical output for
    identical frames, and segments that :meth:`append_segment` can join). ``partial_dir`` puts the
    ``.partial`` file in another folder of the same file system. ``video_template`` (an
    encoded segment file) makes a remux writer: :meth:`append_segment` copies the packets of
    segments encoded with the same settings, with the audio muxed in as usual.
    """

    def __init__(self, path, fps: float, width: int, height: int, audio=None, audio_sample_rate: int = 16000,
                 *, codec: str = "libx264", crf: int = 18, argument: str = "output",
                 threads: int | None = None, b_frames: int | None = None, video_template=None,
                 partial_dir=None):
        import av

        self.path = _check_output_path(path, argument)
        self.argument = argument
        self.fps = float(_check_number("fps", fps, 0, 120, low_open=True))
        self.width = int(_check_number("width", width, 2, MAX_SIDE, integer=True))
        self.height = int(_check_number("height", height, 2, MAX_SIDE, integer=True))
        for name, value in (("width", self.width), ("height", self.height)):
            if value % 2:
                raise input_error(name, f"{value} is odd; H.264 yuv420p needs even sizes",
                                  f"use {value - 1} or {value + 1}")
        crf = int(_check_number("crf", crf, 0, 51, integer=True))
        if not isinstance(codec, str):
            raise input_error("codec", f"expected a codec name, got {type(codec).__name__}", "pass 'libx264'",
                              kind=TypeError)
        if codec not in av.codecs_available:
            if codec == "libx264" and "mpeg4" in av.codecs_available:
                codec = "mpeg4"
            else:
                raise input_error("codec", f"{codec!r} is not available in this PyAV build", "use 'libx264' or 'mpeg4'")
        self.codec = codec
        self.audio = None if audio is None else _audio_to_float(audio)
        if self.audio is not None:
            rate = int(_check_number("audio_sample_rate", audio_sample_rate, 4000, 384000, integer=True))
            if rate not in AAC_RATES:  # AAC only takes standard rates: resample once, up front
                from scipy.signal import resample_poly

                g = math.gcd(48000, rate)
                self.audio = resample_poly(self.audio.astype(np.float64), 48000 // g, rate // g).astype(np.float32)
                rate = 48000
            self.audio_sample_rate = rate
        else:
            self.audio_sample_rate = None

        self.frames_written = 0
        self._audio_written = 0
        self._closed = False
        self._rate = Fraction(self.fps).limit_denominator(1001)
        partial_name = f"{self.path.stem}.partial-{uuid.uuid4().hex[:8]}{self.path.suffix}"
        # partial_dir: a folder on the same file system (the rename must stay atomic), e.g. a resume folder
        self.partial_path = (Path(partial_dir) if partial_dir is not None else self.path.parent) / partial_name
        self._owner = None
        try:  # create the file now: an unwritable place fails here, not after minutes of generation
            for folder in {self.path.parent, self.partial_path.parent}:
                remove_abandoned_partials(self.path, folder)
            self._owner = _claim_partial(self.partial_path)
            with open(self.partial_path, "xb"):
                pass
            self._container = av.open(ffmpeg_path(self.partial_path), mode="w",
                                      format=VIDEO_SUFFIXES[self.path.suffix.lower()])
        except BaseException as exc:  # a signal (e.g. SIGTERM) can land here too: leave nothing behind
            self._remove_partial()
            if self._owner is None:  # interrupted while claiming: its record (our unique name) may exist
                _partial_owner(self.partial_path).unlink(missing_ok=True)
            if isinstance(exc, (OSError, av.FFmpegError)):
                raise _write_error(argument, self.path, exc, creating=True) from None
            raise
        self._template = None
        try:
            if video_template is not None:  # remux mode: packets come from already encoded segments
                self._template = Path(video_template)
                source = _open_input(self._template, "video_template")
                try:
                    self._video = self._container.add_stream_from_template(source.streams.video[0])
                    self._template_extradata = source.streams.video[0].codec_context.extradata
                finally:
                    source.close()
            else:
                options = {"crf": str(crf)} if codec == "libx264" else {}
                for name, option, value in (("threads", "threads", threads), ("b_frames", "bf", b_frames)):
                    if value is not None:  # fixed threads + no B-frames: deterministic, concatenable segments
                        options[option] = str(int(_check_number(name, value, 0, 64, integer=True)))
                self._video = self._container.add_stream(codec, rate=self._rate, options=options)
                self._video.width, self._video.height = self.width, self.height
                self._video.pix_fmt = "yuv420p"
                self._video.codec_context.time_base = 1 / self._rate
                if codec != "libx264":
                    self._video.bit_rate = int(min(50e6, max(1e6, self.width * self.height * self.fps * 0.3)))
            self._audio_stream = None
            if self.audio is not None:
                self._audio_stream = self._container.add_stream("aac", rate=self.audio_sample_rate, layout="mono")
                self._audio_stream.codec_context.time_base = Fraction(1, self.audio_sample_rate)
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------------ context manager
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass

    # --------------------------------------------------------------------------------- writing
    def write(self, frames) -> None:
        """Encode ``frames`` (uint8 or float in [0, 1], ``[N, height, width, 3]`` or one ``[H, W, 3]``)."""
        import av

        if self._closed:
            raise input_error("frames", "the writer is already closed", "write all frames before close()")
        if self._template is not None:
            raise input_error("frames", "this writer remuxes encoded segments", "use append_segment()")
        pixels = _frames_to_uint8(frames, self.width, self.height)
        try:
            for image in pixels:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = self.frames_written
                frame.time_base = self._video.codec_context.time_base
                for packet in self._video.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
            self._write_audio(self._audio_target(), pad=False)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise _write_error(self.argument, self.path, exc) from None
        except BaseException:
            self.abort()
            raise

    def append_segment(self, segment) -> int:
        """Remux (copy, no re-encoding) the video packets of an encoded ``segment`` file after what
        was written so far; returns its frame count. Only in remux mode (``video_template=``).

        Segments must come from the same encoder settings (checked: identical codec headers) and
        have no B-frames (decode order = display order), as :class:`VideoWriter` writes them with
        ``b_frames=0``.
        """
        import av

        if self._closed:
            raise input_error("segment", "the writer is already closed", "append all segments before close()")
        if self._template is None:
            raise input_error("segment", "this writer encodes frames", "create it with video_template=")
        source = _open_input(segment, "segment")
        try:
            if not source.streams.video:
                raise input_error("segment", f"{segment} has no video stream", "pass a segment written by VideoWriter")
            stream = source.streams.video[0]
            if stream.codec_context.extradata != self._template_extradata:
                raise input_error("segment", f"{segment} was encoded with other settings than {self._template}",
                                  "encode every segment with the same size, codec and options")
            offset = Fraction(self.frames_written) / self._rate / stream.time_base
            if offset.denominator != 1:
                raise input_error("segment", f"frame {self.frames_written} does not fall on the time base "
                                  f"{stream.time_base}", "use a frame rate the container can represent")
            count = 0
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.pts += int(offset)
                packet.dts += int(offset)
                packet.stream = self._video
                self._container.mux(packet)
                count += 1
            self.frames_written += count
            self._write_audio(self._audio_target(), pad=False)
        except InputError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise _write_error(self.argument, self.path, exc) from None
        except BaseException:
            self.abort()
            raise
        finally:
            source.close()
        return count

    def _audio_target(self) -> int:
        if self.audio is None:
            return 0
        return int(round(self.frames_written / float(self._rate) * self.audio_sample_rate))

    def _write_audio(self, target: int, pad: bool) -> None:
        """Encode audio samples up to ``target`` (zero-padded past the waveform when ``pad``)."""
        import av

        if self.audio is None:
            return
        stop = target if pad else min(target, self.audio.size)
        chunk = 1 << 16
        while self._audio_written < stop:
            end = min(stop, self._audio_written + chunk)
            samples = np.zeros(end - self._audio_written, np.float32)
            real = self.audio[self._audio_written: min(end, self.audio.size)]
            samples[: real.size] = real
            frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
            frame.sample_rate = self.audio_sample_rate
            frame.pts = self._audio_written
            frame.time_base = Fraction(1, self.audio_sample_rate)
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_written = end

    def close(self) -> Path:
        """Finish the file and move it onto ``path`` (atomic). Returns the final path."""
        import av

        if self._closed:
            return self.path
        try:
            if self.frames_written == 0:
                raise input_error(self.argument, "no frames were written", "write at least one frame before closing")
            if self._template is None:
                for packet in self._video.encode(None):
                    self._container.mux(packet)
            if self.audio is not None:
                self._write_audio(self._audio_target(), pad=True)
                for packet in self._audio_stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._closed = True
            os.replace(self.partial_path, self.path)
            self._release_owner()
        except InputError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise _write_error(self.argument, self.path, exc) from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the partial file; nothing appears at ``path``."""
        self._closed = True
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:
                pass
            self._container = None
        self._remove_partial()

    def _remove_partial(self) -> None:
        try:
            os.remove(self.partial_path)
        except FileNotFoundError:
            pass
        self._release_owner()

    def _release_owner(self) -> None:
        owner, self._owner = getattr(self, "_owner", None), None
        if owner is not None:
            owner.release()


def write_chunks(chunks, path, fps: float, width: int, height: int, *, on_chunk=None, **writer_options):
    """Stream decoded chunks into a :class:`VideoWriter` file (atomic: all or nothing at ``path``).

    ``chunks`` yields objects with ``frames`` ``[1, f, H, W, 3]`` in [0, 1] (e.g.
    :class:`asymk_core.generation.VideoChunk`). The first chunk is taken before the file is
    opened, so settings that fail on the first chunk leave no file; an empty ``chunks`` writes
    nothing and returns ``None``. ``on_chunk(chunk, frames, writer)`` runs after each chunk is
    written (``frames`` float32 ``[f, H, W, 3]``). ``writer_options``: those of :class:`VideoWriter`
    (``audio``, ``audio_sample_rate``, ``argument``, ``crf``, ``threads``, ``b_frames``). Returns the
    closed writer (``path``, ``frames_written``).
    """
    chunks = iter(chunks)
    chunk = next(chunks, None)
    if chunk is None:
        return None
    with VideoWriter(path, fps, width, height, **writer_options) as writer:
        while chunk is not None:
            frames = chunk.frames[0].float().cpu().numpy()
            writer.write(frames)
            if on_chunk is not None:
                on_chunk(chunk, frames, writer)
            chunk = next(chunks, None)
    return writer


# ---------------------------------------------------------------------------------- reading
def _open_input(path, argument: str = "path"):
    import av

    if not isinstance(path, (str, os.PathLike)):
        raise input_error(argument, f"expected a file path, got {type(path).__name__}", "pass a video path",
                          kind=TypeError)
    source = Path(path).expanduser()
    if not source.exists():
        raise input_error(argument, f"{source} does not exist", "check the path of the video")
    if source.is_dir():
        raise input_error(argument, f"{source} is a folder", "pass a video file")
    try:
        return av.open(ffmpeg_path(source))
    except (OSError, av.FFmpegError) as exc:
        raise input_error(argument, f"{source} is not a readable video ({type(exc).__name__})",
                          "pass an intact mp4/mkv/mov file") from None


def _fps_of(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _decode_all(path, keep_frames: bool) -> dict:
    """One demux pass over the first video and audio streams: frames (or their count) and mono audio."""
    import av

    container = _open_input(path)
    try:
        if not container.streams.video:
            raise input_error("path", f"{path} has no video stream", "pass a video file")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        result = dict(fps=_fps_of(video), width=int(video.codec_context.width),
                      height=int(video.codec_context.height), frames=[], num_frames=0, audio=None, sample_rate=None)
        pieces, resampler = [], None
        if audio is not None:
            result["sample_rate"] = int(audio.codec_context.sample_rate or audio.rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=result["sample_rate"])
        streams = [video] if audio is None else [video, audio]
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    result["num_frames"] += 1
                    if keep_frames:
                        result["frames"].append(frame.to_ndarray(format="rgb24"))
                else:
                    pieces.extend(out.to_ndarray().reshape(-1).copy() for out in resampler.resample(frame))
        if resampler is not None:
            pieces.extend(out.to_ndarray().reshape(-1).copy() for out in resampler.resample(None))
            result["audio"] = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    except av.FFmpegError as exc:
        raise input_error("path", f"{path} could not be decoded ({type(exc).__name__}: {exc})",
                          "pass an intact video file") from None
    finally:
        container.close()
    if result["num_frames"] == 0:
        raise input_error("path", f"{path} has no decodable video frames", "pass an intact video file")
    return result


def read_video(path) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """Decode a whole video: ``(frames uint8 [N, H, W, 3], fps, audio float32 mono [S] or None,
    sample_rate or None)``. Holds everything in memory; meant for tests and evaluation clips.
    AAC audio comes back whole 1024-sample frames long (up to one frame past the video)."""
    result = _decode_all(path, keep_frames=True)
    return np.stack(result["frames"]), result["fps"], result["audio"], result["sample_rate"]


def probe_video(path) -> dict:
    """Exact facts about a video by decoding it (frames are counted, not estimated).

    Returns ``dict(num_frames, fps, width, height, duration_s = num_frames / fps,
    audio_duration_s (decoded samples / rate), audio_sample_rate, has_audio)``; the audio
    entries are ``None`` without audio.
    """
    result = _decode_all(path, keep_frames=False)
    fps, audio = result["fps"], result["audio"]
    return dict(num_frames=result["num_frames"], fps=fps, width=result["width"], height=result["height"],
                duration_s=result["num_frames"] / fps if fps else 0.0,
                audio_duration_s=None if audio is None else audio.size / result["sample_rate"],
                audio_sample_rate=result["sample_rate"], has_audio=audio is not None)
