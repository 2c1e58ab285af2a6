"""Resumable long renders: the chunk loop's state on disk, and a render that checkpoints and resumes.

A render to ``out.mp4`` keeps its progress in the folder ``out.mp4.resume/``:

* ``segment-000000.mp4``, ``segment-000004.mp4``, ...: the video so far, one H.264 file per
  checkpoint interval (named by its first chunk), each encoded independently with fixed encoder
  threads and no B-frames, so the same frames always give the same bytes and segments can be
  joined without re-encoding;
* ``state-000008.safetensors``: the tensors of the loop state at the last checkpoint: the next
  chunk's motion kernel, the ``torch.Generator`` state, and the streaming decoder's causal cache
  (saved as it is, so decoding continues exactly);
* ``state.json``: next chunk index, frames written, the list of segments, the name of the tensor
  file, and the settings the render was started with (a resumed render must use the same ones).

Every file is written under a temporary name of its own and renamed, segment first, then tensors,
then ``state.json``, so a kill at any moment leaves either the previous or the new checkpoint;
files that ``state.json`` does not list are deleted on resume. The lock file
``out.mp4.resume.lock`` next to the folder is held for the whole render, so a second run on the same
output is refused at once instead of mixing its frames into the first one's progress. When all chunks are done the segments
are remuxed with the audio into ``out.mp4`` (atomic rename) and the folder is deleted.

A render killed at any point and resumed with the same command gives an mp4 whose decoded frames
are identical to an uninterrupted resumable render with the same seed. (Compared with a render
without ``--resume`` the generated frames are identical too, but the H.264 stream is encoded in
segments, so decoded frames differ by the codec's rounding.)
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from .audio import SAMPLE_RATE
from .errors import InputError, input_error, rename_argument
from .generation import LoopState
from .locks import LockHeld, LockUnsupported, OwnerLock
from .video_io import VideoWriter, _check_output_path, write_chunks
from .weights_digest import component_digest

STATE_FORMAT = 1
STATE_FILE = "state.json"
SEGMENT_THREADS = 4  # fixed x264 thread count: the encoding must not depend on the machine
SEGMENT_CRF = 18


def resume_folder(output) -> Path:
    """The progress folder of a render to ``output``: ``<output>.resume`` next to it."""
    output = Path(output)
    return output.with_name(output.name + ".resume")


def render_lock_path(output) -> Path:
    """The lock file of a resumable render to ``output``: ``<output>.resume.lock`` next to it."""
    output = Path(output)
    return output.with_name(output.name + ".resume.lock")


@contextmanager
def render_lock(output, argument: str = "output") -> Iterator[None]:
    """Hold the lock of the resumable render to ``output`` for the ``with`` block.

    Another run on the same output (another process, or another thread) is refused at once with a
    one-line error naming ``argument`` and the holder's PID. Reentrant within one thread, so a front
    end can take it before loading the model and :func:`render_resumable` again inside.
    """
    target = Path(output).expanduser()
    try:
        lock = OwnerLock(render_lock_path(target)).acquire()
    except LockHeld as held:
        raise input_error(argument, f"{target} is already being rendered by {held.holder} (its progress is in "
                          f"{resume_folder(target)})", "wait for that render to finish, or stop it and rerun "
                          "this command to continue its progress, or choose another output path") from None
    except LockUnsupported as exc:
        raise input_error(argument, f"{exc.reason}; a resumable render needs its lock to keep two runs of one "
                          "output apart", exc.fix) from None
    try:
        yield
    finally:
        lock.release()


@dataclass
class RenderState:
    """The chunk loop's state after chunk ``next_chunk - 1``.

    ``kernel``: motion kernel of chunk ``next_chunk``; ``generator_state``: ``torch.Generator``
    state (uint8) before that chunk; ``decoder_state``: :meth:`StreamingDecoder.get_state`;
    ``segments``: ``[{"file", "first_chunk", "stop_chunk", "frames"}]`` written so far.
    """

    settings: dict
    next_chunk: int = 0
    frames_written: int = 0
    segments: list[dict] = field(default_factory=list)
    kernel: torch.Tensor | None = None
    generator_state: torch.Tensor | None = None
    decoder_state: dict | None = None

    @property
    def loop(self) -> LoopState:
        """The chunk loop's part of the state (what :meth:`RenderSession.chunks` resumes from)."""
        return LoopState(kernel=self.kernel, generator_state=self.generator_state, decoder_state=self.decoder_state)

    @loop.setter
    def loop(self, value: LoopState) -> None:
        self.kernel, self.generator_state, self.decoder_state = value.kernel, value.generator_state, value.decoder_state


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``path`` atomically; on any failure (a full disk, ...) no temporary file is left behind."""
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_state(folder, state: RenderState, argument: str = "output") -> None:
    """Write ``state`` into ``folder`` atomically (tensors first, then ``state.json``).

    If writing fails (e.g. the disk is full), the new checkpoint's files are removed, the previous
    checkpoint stays valid, and a one-line error naming ``argument`` is raised."""
    folder = Path(folder)
    try:
        _save_state(folder, state)
    except OSError as exc:
        written = folder / f"state-{state.next_chunk:06d}.safetensors"
        try:
            saved = json.loads((folder / STATE_FILE).read_text()).get("tensors")
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved != written.name:  # state.json still points at the previous checkpoint
            written.unlink(missing_ok=True)
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise input_error(argument, f"writing the progress checkpoint in {folder} failed: the disk is full "
                              f"({reason}); the partial checkpoint was deleted and the previous one kept",
                              "free disk space and rerun the same command to continue") from None
        raise input_error(argument, f"writing the progress checkpoint in {folder} failed ({reason}); the partial "
                          "checkpoint was deleted and the previous one kept",
                          "check the disk, then rerun the same command to continue") from None


def _save_state(folder: Path, state: RenderState) -> None:
    tensors: dict[str, torch.Tensor] = {}
    if state.kernel is not None:
        tensors["kernel"] = state.kernel.detach().contiguous().cpu()
    if state.generator_state is not None:
        tensors["generator_state"] = state.generator_state.detach().contiguous().cpu()
    cache_kinds = None
    decoder_first = None
    if state.decoder_state is not None:
        cache_kinds = []
        decoder_first = bool(state.decoder_state["first"])
        for index, entry in enumerate(state.decoder_state["cache"]):
            if isinstance(entry, torch.Tensor):
                tensors[f"decoder.cache.{index}"] = entry.detach().contiguous().cpu()
                cache_kinds.append("tensor")
            else:
                cache_kinds.append(entry)  # None or diffusers' "Rep" marker
    tensor_file = f"state-{state.next_chunk:06d}.safetensors"
    _fsync_write(folder / tensor_file, save(tensors))
    record = dict(format=STATE_FORMAT, settings=state.settings, next_chunk=state.next_chunk,
                  frames_written=state.frames_written, segments=state.segments, tensors=tensor_file,
                  decoder_first=decoder_first, decoder_cache=cache_kinds)
    _fsync_write(folder / STATE_FILE, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    for stale in folder.glob("state-*.safetensors"):
        if stale.name != tensor_file:
            stale.unlink(missing_ok=True)


def _differences(saved: dict, wanted: dict) -> list[str]:
    return sorted(key for key in set(saved) | set(wanted) if saved.get(key) != wanted.get(key))


def load_state(folder, settings: dict, argument: str = "--resume") -> RenderState | None:
    """The state saved in ``folder``, or ``None`` when there is none yet.

    Raises a clear error naming ``argument`` when the state is unreadable or was saved for other
    ``settings`` (a different input, model, seed or option), so a render never mixes two runs.
    """
    folder = Path(folder)
    state_path = folder / STATE_FILE
    if not state_path.is_file():
        return None
    start_over = f"delete {folder} to start over"
    try:
        record = json.loads(state_path.read_text())
        version = record.get("format")
    except (OSError, ValueError, AttributeError) as exc:
        raise input_error(argument, f"the saved progress {state_path} is unreadable ({type(exc).__name__})",
                          start_over) from None
    if version != STATE_FORMAT:
        raise input_error(argument, f"{state_path} has format {version!r}, not {STATE_FORMAT}", start_over)
    try:
        tensors = load_file(str(folder / record["tensors"]))
    except Exception as exc:  # missing or corrupt tensor file (SafetensorError, OSError, KeyError)
        raise input_error(argument, f"the saved tensors in {folder} are unreadable ({type(exc).__name__})",
                          start_over) from None
    differ = _differences(record.get("settings") or {}, settings)
    if differ:
        named = ", ".join("model weights: a file of the model changed, or another model" if key == "model" else key
                          for key in differ)
        raise input_error(argument, f"the saved progress in {folder} was made with different settings ({named})",
                          f"rerun with the same arguments, or {start_over}")
    for segment in record["segments"]:
        if not (folder / segment["file"]).is_file():
            raise input_error(argument, f"segment {segment['file']} of the saved progress is missing", start_over)
    decoder_state = None
    if record.get("decoder_cache") is not None:
        cache = []
        for index, kind in enumerate(record["decoder_cache"]):
            cache.append(tensors[f"decoder.cache.{index}"] if kind == "tensor" else kind)
        decoder_state = {"first": bool(record["decoder_first"]), "cache": cache}
    return RenderState(settings=record["settings"], next_chunk=int(record["next_chunk"]),
                       frames_written=int(record["frames_written"]), segments=list(record["segments"]),
                       kernel=tensors.get("kernel"), generator_state=tensors.get("generator_state"),
                       decoder_state=decoder_state)


def _clean_folder(folder: Path, state: RenderState | None) -> None:
    """Delete what a killed run left that the saved state does not list (partial segments, temp files)."""
    keep = {STATE_FILE}
    if state is not None:
        keep |= {segment["file"] for segment in state.segments}
        keep.add(f"state-{state.next_chunk:06d}.safetensors")
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _digest(*arrays) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        data = np.ascontiguousarray(array)
        hasher.update(str((data.dtype.str, data.shape)).encode())
        hasher.update(data.tobytes())
    return hasher.hexdigest()[:32]


def model_digest(pipe) -> str:
    """A digest of every weight and setting of the pipeline: the full bytes of each component's files
    (hashed once per file version, then read from a cache; see :mod:`asymk_core.weights_digest`),
    or of its tensors when it was not loaded from a folder, plus the pipeline config."""
    hasher = hashlib.sha256()
    for name in ("transformer", "vae", "audio_encoder", "feature_extractor", "scheduler"):
        hasher.update(f"{name}={component_digest(getattr(pipe, name, None))}\n".encode())
    hasher.update(json.dumps(dict(pipe.config), sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:32]


def render_resumable(
    session,
    output,
    *,
    checkpoint_every: int = 4,
    argument: str = "output",
    resume_argument: str = "resume",
    on_chunk: Callable[[int, int, int, np.ndarray], None] | None = None,
) -> dict:
    """Render a prepared session (:meth:`AsymKPipeline.prepare`, with a seeded ``generator``) to
    ``output`` (mp4), checkpointing every ``checkpoint_every`` chunks in ``<output>.resume/`` and
    continuing from there if it exists.

    ``on_chunk(chunk_index, num_chunks, frames_written, frames)`` is called after each chunk is
    written and checkpointed (``frames`` float32 ``[f, H, W, 3]`` in [0, 1]). Returns
    ``dict(path, num_frames, num_chunks, resumed_from)``.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or not \
            1 <= checkpoint_every <= 100_000:
        raise input_error("checkpoint_every", f"{checkpoint_every!r} is not a positive number of chunks",
                          "pass an integer >= 1, e.g. 4")
    if not isinstance(session.generator, torch.Generator):
        raise input_error("generator", "a resumable render needs a seeded torch.Generator",
                          "prepare the session with generator=torch.Generator().manual_seed(seed)", kind=TypeError)
    if session.image is None:
        raise input_error("image", "a resumable render needs the portrait image", "prepare the session with image=")
    target = _check_output_path(output, argument)
    folder = resume_folder(target)
    if folder.exists() and not folder.is_dir():
        raise input_error(resume_argument, f"{folder} exists and is not a folder", f"delete or rename {folder}")
    with render_lock(target, argument):  # held until the output is complete and the folder removed
        return _render_locked(session, target, checkpoint_every, argument, resume_argument, on_chunk)


def _render_locked(session, target: Path, checkpoint_every: int, argument: str, resume_argument: str,
                   on_chunk) -> dict:
    """:func:`render_resumable` once its arguments are checked and its lock is held."""
    folder = resume_folder(target)
    pipe, settings, plan, audio = session.pipe, session.settings, session.plan, session.audio
    fingerprint = dict(
        image=_digest(session.image.cpu().numpy()), audio=_digest(audio.waveform), model=model_digest(pipe),
        height=settings.height, width=settings.width, fps=float(settings.fps), steps=settings.num_inference_steps,
        guidance=settings.guidance_scale, sampler=settings.sampler, shift=settings.shift,
        chunk_frames=plan.chunk_frames, kernel_frames=plan.kernel_frames, num_frames=plan.num_frames,
        seed=session.generator.initial_seed(), checkpoint_every=checkpoint_every,
        device=str(pipe._execution_device), dtype=str(pipe.transformer.dtype), torch=torch.__version__,
    )
    state = load_state(folder, fingerprint, resume_argument)
    folder.mkdir(exist_ok=True)
    _clean_folder(folder, state)
    resumed_from = 0 if state is None else state.next_chunk
    if state is None:
        state = RenderState(settings=fingerprint)

    if state.next_chunk < plan.num_chunks:
        chunks = session.chunks(state.next_chunk, state.loop if state.next_chunk else None)
        while state.next_chunk < plan.num_chunks:
            first_chunk = state.next_chunk
            count = min(checkpoint_every - first_chunk % checkpoint_every, plan.num_chunks - first_chunk)
            last = []

            def report(decoded, frames, writer):
                if last and on_chunk is not None:  # the segment's last chunk is reported once it is saved
                    on_chunk(*last[-1][1])
                last.append((decoded.chunk, (decoded.chunk.index, plan.num_chunks,
                                             state.frames_written + writer.frames_written, frames)))

            writer = write_chunks(itertools.islice(chunks, count), folder / f"segment-{first_chunk:06d}.mp4",
                                  settings.fps, settings.width, settings.height, argument=argument, crf=SEGMENT_CRF,
                                  threads=SEGMENT_THREADS, b_frames=0, on_chunk=report)
            state.frames_written += writer.frames_written
            state.segments.append(dict(file=writer.path.name, first_chunk=first_chunk,
                                       stop_chunk=first_chunk + count, frames=writer.frames_written))
            state.next_chunk = first_chunk + count
            state.loop = session.state_after(last[-1][0])
            try:
                save_state(folder, state)
            except InputError as error:  # e.g. the disk is full: name the caller's output argument
                raise rename_argument(error, argument) from None
            if on_chunk is not None:
                on_chunk(*last[-1][1])

    if state.frames_written != plan.num_frames or not state.segments:
        raise input_error(resume_argument, f"the saved progress in {folder} holds {state.frames_written} frames, "
                          f"expected {plan.num_frames}", f"delete {folder} to start over")
    final = VideoWriter(target, settings.fps, settings.width, settings.height, audio=audio.waveform, audio_sample_rate=SAMPLE_RATE,
                        argument=argument, video_template=folder / state.segments[0]["file"], partial_dir=folder)
    with final:
        for segment in state.segments:
            count = final.append_segment(folder / segment["file"])
            if count != segment["frames"]:
                raise input_error(resume_argument, f"segment {segment['file']} holds {count} frames, expected "
                                  f"{segment['frames']}", f"delete {folder} to start over")
    shutil.rmtree(folder, ignore_errors=True)
    return dict(path=target, num_frames=final.frames_written, num_chunks=plan.num_chunks, resumed_from=resumed_from)
