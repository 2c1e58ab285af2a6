"""Live mode: a talking head that follows speech as it arrives, paced to a clock at the video fps.

A :class:`LiveSession` runs the KCLG chunk loop (:func:`asymk_core.generation.generate_chunks`)
without an end: each chunk is planned from the speech pushed so far
(:class:`asymk_core.live_audio.LiveAudioTimeline`) when it must be generated, and idle chunks
(silence features: a closed mouth and the model's own idle motion) fill the gaps, so the video never
freezes. Frames are decoded one latent frame at a time (a ``"decoded"`` plan, SoulX-FlashHead's
loop, decodes whole windows) and come out with their timestamps and the 16 kHz audio they play.
An interrupt abandons the chunk being denoised (:class:`asymk_core.generation.RestartChunk`), or
takes back a speaking chunk already made but not yet shown: the loop goes back to that chunk's
kernel, generator and decoder state and makes it again, idle.

Real time (``realtime=True``): a worker thread plans chunk ``c``'s audio at ``t0 + c * D - lead``
(``D`` the chunk duration, ``lead`` the measured time from planning to a chunk's first frame plus a
margin), so speech is shown ``D + lead`` plus the encoder's look-ahead after it arrives, and
:meth:`frames` releases each frame at ``t0 + pts``. What needs no audio (a block-causal model's
kernel tokens) is computed before that wait. Otherwise chunks are generated on demand, as fast as
possible; when all the audio is pushed before the first frame is asked for and :meth:`end` is
called, the frames equal those of ``AsymKPipeline.stream`` with the same generator.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .audio import BlockResampler, pcm_block
from .audio_flashhead import FlashHeadLiveWindows, uses_flashhead_audio
from .errors import input_error
from .gc_pauses import freeze_long_lived
from .generation import RestartChunk, SamplingSettings, generate_chunks, to_frames
from .portrait_anchor import portrait_anchor
from .kclg import ChunkPlan, initial_kernel
from .live_audio import FeatureWindows, FrameSource, LiveAudioTimeline
from .openmp import release_idle_team
from .vae import StreamingDecoder, temporal_factor

ENDLESS_FRAMES = 1 << 60  # a live stream's plan has no end in practice
LATE_AUDIO_MARGIN_SECONDS = 0.02  # kept before a chunk's expected first frame when waiting for late speech


@dataclass
class LiveFrame:
    """One live video frame. ``index``: frame number from the start; ``pts``: its presentation time
    in seconds (``index / fps``); ``image``: float32 ``[H, W, 3]`` in [0, 1]; ``audio``: the float32
    16 kHz samples it plays; ``speaking``: made from pushed speech (else idle); ``pushed_at``: clock
    time its first audio sample was pushed (``None`` when idle)."""

    index: int
    pts: float
    image: np.ndarray
    audio: np.ndarray
    speaking: bool
    pushed_at: float | None = None

    def to_uint8(self) -> np.ndarray:
        """``image`` as uint8 ``[H, W, 3]``."""
        return (self.image * 255.0).round().astype(np.uint8)


class _SessionStopped(Exception):
    """Raised out of the chunk loop when the session closes, or runs out of audio, before a chunk is planned."""


class _Revoked(Exception):
    """Raised out of the chunk loop when an interrupt took back a chunk made (see :meth:`LiveSession.interrupt`)."""


@dataclass
class _RollbackPoint:
    """What remaking chunk ``index`` needs: its motion kernel, the generator state before its noise,
    and the streaming decoder's state before its frames (``None`` for a ``"decoded"`` plan);
    ``speaking``: whether it shows speech."""

    index: int
    kernel: torch.Tensor
    generator_state: torch.Tensor | None
    decoder_state: dict | None
    speaking: bool


class _SessionAudio:
    """The audio source the chunk denoiser sees: :meth:`LiveSession._plan_chunk`."""

    def __init__(self, session: "LiveSession"):
        self.session = session

    def windows(self, start_frame: int, num_frames: int) -> torch.Tensor:
        return self.session._plan_chunk(start_frame, num_frames)


class LiveSession:
    """A live render: ``push`` speech in any block size and sample rate, read ``frames``.

    Use as a context manager (``with pipe.live(image) as live: ...``); :meth:`close` stops the
    worker. ``reference_latents``: TRE latents ``[1, C, kernel + chunk, h, w]``. ``clock``: seconds,
    monotonic (``time.monotonic``). ``context_frames``: audio context in 20 ms feature frames
    (default 1 for the log-mel encoder, whose look-ahead is exact; 10 for transformer encoders, which
    also wait for it). ``jitter_seconds``:
    arrived speech held back when an utterance starts, absorbing late blocks (default 0.04 s in
    real time, 0 otherwise). ``colour_reference`` (the portrait ``[1, 3, H, W]`` in [-1, 1]),
    ``colour_correction``, ``decoder_calibration`` and ``colour_lock``: the loop settings that correct decoded frames
    towards the portrait, as in :func:`asymk_core.generation.generate_chunks`.
    """

    def __init__(self, *, transformer, vae, scheduler, reference_latents: torch.Tensor, chunk_frames: int,
                 kernel_frames: int, sampling: SamplingSettings, audio_encoder, feature_extractor, fps: float,
                 audio_window: int, generator: torch.Generator | None = None, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, context_frames: int | None = None,
                 jitter_seconds: float | None = None, max_queued_seconds: float = 4.0,
                 first_kernel_frames: int | None = None, kernel_source: str = "latents",
                 colour_reference: torch.Tensor | None = None, colour_correction: float = 0.0,
                 decoder_calibration: float = 0.0, colour_lock: float = 0.0):
        self.transformer, self.vae = transformer, vae
        self.fps = float(fps)
        self.realtime, self.clock = bool(realtime), clock
        self.plan = ChunkPlan(ENDLESS_FRAMES, chunk_frames, kernel_frames, temporal_factor(vae),
                              first_kernel_frames=first_kernel_frames, kernel_source=kernel_source)
        self.frames_per_chunk = self.plan.video_frames_per_chunk  # every chunk's after the first
        self.chunk_seconds = self.frames_per_chunk / self.fps
        if context_frames is None:
            context_frames = 1 if type(audio_encoder).__name__ == "LogMelAudioEncoder" else 10
        if uses_flashhead_audio(transformer):
            features = FlashHeadLiveWindows(audio_encoder, feature_extractor, self.fps, audio_window,
                                            num_layers=transformer.config.audio_layers, context_frames=context_frames)
        else:
            features = FeatureWindows(audio_encoder, feature_extractor, self.fps, audio_window, context_frames)
        if jitter_seconds is None:
            jitter_seconds = 0.04 if self.realtime else 0.0
        self.timeline = LiveAudioTimeline(features, jitter_frames=int(round(jitter_seconds * self.fps)))
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._wake = threading.Event()
        # A "decoded" plan (SoulX-FlashHead's loop) decodes each window whole, so its chunks come decoded.
        self._decoded_windows = self.plan.kernel_source == "decoded"
        self._generator = generator
        self._loop_arguments = dict(transformer=transformer, vae=vae, scheduler=scheduler,
                                    reference_latents=reference_latents, audio=_SessionAudio(self), plan=self.plan,
                                    settings=sampling, generator=generator, decode=self._decoded_windows,
                                    step_callback=self._on_step, colour_reference=colour_reference,
                                    colour_correction=colour_correction, decoder_calibration=decoder_calibration,
                                    colour_lock=colour_lock)
        self._chunks = generate_chunks(**self._loop_arguments)
        first_kernel = initial_kernel(reference_latents.to(transformer.device), self.plan)
        self._anchor = portrait_anchor(vae, self.plan, colour_reference, first_kernel, decoder_calibration,
                                       colour_correction, colour_lock)  # None for a "decoded" plan
        self._decoder = None
        if not self._decoded_windows:
            self._decoder = StreamingDecoder(vae)
            self._decoder.decode(first_kernel)  # context only
        self._queue: deque[LiveFrame] = deque()
        self._max_queued = max(self.plan.first_chunk_video_frames, int(max_queued_seconds * self.fps))
        self._resamplers: dict[int, BlockResampler] = {}
        self._rate: int | None = None
        self._next_chunk = 0
        self._denoising: int | None = None  # the chunk being denoised, which an interrupt abandons
        self._abandon = False
        self._planned_chunk = -1  # the last chunk whose audio was planned
        self._planned_speaking = False  # whether that chunk shows speech
        self._taken = -1  # index of the last frame handed to the reader (each when it is due)
        self._revoke: int | None = None  # a chunk made but not shown, taken back by an interrupt
        # How to make again each chunk made whose first frame is not handed out yet (on a slow CPU
        # the lead can pass a chunk's duration, so more than one is made ahead); oldest first.
        self._rollbacks: dict[int, _RollbackPoint] = {}
        self._max_rollbacks = -(-self._max_queued // self.frames_per_chunk) + 1
        self._planned_at: float | None = None  # clock time the chunk being made was (last) planned
        self._mute_before = 0  # frames before this index made after an interrupt play silence
        self._finished = False  # every frame of the stream has been generated (after end())
        self._closed = False
        self._error: BaseException | None = None
        self._worker: threading.Thread | None = None
        self.t0: float | None = None  # clock time of frame 0 (moved on after a stall)
        self._first_frame_seconds: float | None = None  # time from a chunk's start to its first frame
        self.stats = {"frames": 0, "speaking_frames": 0, "late_frames": 0, "stalls": 0, "dropped_frames": 0,
                      "chunks": 0, "chunk_seconds": 0.0, "audio_seconds_pushed": 0.0, "audio_samples_out": 0}
        if self.realtime:
            freeze_long_lived()  # no full collection of the model's objects mid-stream (see .gc_pauses)
            release_idle_team()  # this thread is done with the model for now; the worker generates (see .openmp)

    # ------------------------------------------------------------------------------------ input
    def push(self, pcm, sample_rate: int) -> None:
        """Queue speech: ``pcm`` ``[n]`` or ``[C, n]`` (float in [-1, 1] or int PCM) at ``sample_rate`` Hz.

        Blocks may have any size (empty ones are ignored); a block at a new rate flushes the previous
        rate's resampler first. Bad blocks raise a one-line error and leave the session unchanged."""
        samples, rate = pcm_block(pcm, sample_rate)
        with self._lock:
            self._check_open("push")
            if self.timeline.ended:
                raise input_error("pcm", "the session has ended", "start a new live session to speak again")
            pieces = []
            if self._rate is not None and rate != self._rate:
                pieces.append(self._resamplers.pop(self._rate).flush())
            self._rate = rate
            resampler = self._resamplers.setdefault(rate, BlockResampler(rate))
            pieces.append(resampler.add(samples))
            out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            self.timeline.push(out, self.clock())
            self.stats["audio_seconds_pushed"] += samples.size / rate
        self._wake.set()

    def interrupt(self) -> None:
        """Stop talking now: the queued speech is dropped, the frames still to be shown from it play
        silence (so the voice stops at once), and the face is idle from the first chunk not yet
        shown: a chunk still being denoised is abandoned and generated again, idle, and the first
        speaking chunk already made whose frames have not started playing is taken back, with every
        chunk after it, and made again, idle (from its own kernel, noise and decoder state). So the
        face is idle within one chunk."""
        with self._lock:
            self._check_open("interrupt")
            self._resamplers.clear()
            self._rate = None
            revoke = self._revocable()
            if revoke is not None:
                self._revoke, self._planned_speaking = revoke, False
                first = self.plan.video_range(revoke)[0]
                planned_end = self.timeline.interrupt(first, keep_planned=False)
                self._queue = deque(frame for frame in self._queue if frame.index < first)
            else:
                abandon = self._denoising is not None
                self._abandon = self._abandon or abandon
                first = self.plan.video_range(self._denoising if abandon else self._next_chunk)[0]
                planned_end = self.timeline.interrupt(first, keep_planned=not abandon)
            self._mute_before = max(self._mute_before, planned_end)
            for frame in self._queue:
                frame.audio = np.zeros_like(frame.audio)
        self._wake.set()

    def _revocable(self) -> int | None:
        """The chunk an interrupt takes back (under the lock), with every chunk after it: the first
        one made (denoised) that shows speech and none of whose frames has been handed out."""
        if self._finished:
            return None
        made = {index: point.speaking for index, point in self._rollbacks.items()}
        if self._planned_chunk >= 0 and self._denoising is None:  # made, its rollback point on its way
            made[self._planned_chunk] = self._planned_speaking
        return next((chunk for chunk in sorted(made)
                     if made[chunk] and self._taken < self.plan.video_range(chunk)[0]), None)

    def end(self) -> None:
        """No more speech: the stream finishes with what was pushed (its last frame is the last one
        of the audio, as in an offline render), then :meth:`frames` stops."""
        with self._lock:
            self._check_open("end")
            if self._rate is not None:
                self.timeline.push(self._resamplers.pop(self._rate).flush(), self.clock())
                self._rate = None
            self.timeline.end()
        self._wake.set()

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"cannot {what}: the live session is closed")

    # ----------------------------------------------------------------------------------- output
    def frames(self, timeout: float | None = None) -> Iterator[LiveFrame]:
        """The video, frame by frame, until the stream ends (after :meth:`end`) or :meth:`close`.

        Real time: each frame is released at ``t0 + pts``; a frame later than 0.1 s moves the clock
        on (a stall) rather than being dropped. ``timeout``: seconds to wait for a frame before
        raising ``TimeoutError`` (real time only)."""
        if self.realtime:
            self._start_worker()
        while True:
            frame = self._next_frame(timeout)
            if frame is None:
                return
            if self.realtime:
                self._note_lateness(frame)
            self.stats["frames"] += 1
            self.stats["speaking_frames"] += frame.speaking
            self.stats["audio_samples_out"] += frame.audio.size
            yield frame

    __iter__ = frames

    def _next_frame(self, timeout: float | None) -> LiveFrame | None:
        if not self.realtime:
            while not self._queue and not self._finished and not self._closed:
                self._generate_chunk()
            return self._take() if self._queue else None
        # A frame is taken from the queue only when it is due (t0 + pts), not as soon as the one before
        # it was shown: until then an interrupt can still take its chunk back (see _revocable), so a
        # chunk about to start never plays out its speech after an interrupt.
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while True:
                if self._queue:
                    left = self.t0 + self._queue[0].pts - self.clock()
                    if left <= 0:
                        return self._take()
                    self._ready.wait(left)  # the head may be taken back meanwhile: look again
                    continue
                if self._error is not None:
                    raise self._error
                if self._finished or self._closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no live frame within {timeout:g} s")
                self._ready.wait(left if left is not None else 0.5)

    def _take(self) -> LiveFrame:
        frame = self._queue.popleft()
        self._taken = frame.index
        return frame

    def _note_lateness(self, frame: LiveFrame) -> None:
        """(Real time, after a frame was taken at or after its due time.) Count it late when it is
        more than a frame period past due."""
        due = self.t0 + frame.pts
        now = self.clock()
        if now - due > 1.0 / self.fps:
            self.stats["late_frames"] += 1
            if now - due > 0.1:
                self.stats["stalls"] += 1
                self.t0 += now - due

    # ------------------------------------------------------------------------------- generation
    def _generate_chunk(self) -> None:
        """Plan, denoise and decode the next chunk, queueing its frames as they are decoded."""
        if self._revoke is not None:  # taken back between two calls (not in real time)
            self._roll_back()
        generator_state = None if self._generator is None else self._generator.get_state()
        try:
            made = next(self._chunks)  # waits in _plan_chunk (real time), then plans this chunk's audio
        except _SessionStopped:
            return
        except _Revoked:  # while waiting to plan the next chunk
            self._roll_back()
            return
        chunk = made.chunk if self._decoded_windows else made
        decoder_state = None if self._decoder is None else self._decoder.get_state()
        first, stop = self.plan.video_range(chunk.index)
        with self._lock:
            self._rollbacks[chunk.index] = _RollbackPoint(chunk.index, chunk.kernel, generator_state, decoder_state,
                                                          self._planned_speaking)
            self._denoising = None
            started = self._planned_at  # after an interrupt's restart: the new start
            sources = list(self.timeline.plan(first, stop - first))
        frame, first_piece = first, True
        pieces = [made.frames] if self._decoded_windows else \
            (to_frames(video) for video in self._decoder.decode_frames(made.latents))
        for piece in pieces:
            if self._anchor is not None:
                piece = self._anchor.apply(piece, frame)
            images = piece[0].cpu().numpy()  # [f, H, W, 3]
            with self._ready:
                if self._revoke is not None:
                    break
                piece_start = frame
                for image in images:
                    source: FrameSource = sources[frame - first]
                    if source.padding:
                        self._finished = True
                        break
                    audio, pushed_at = self.timeline.frame_audio(source, frame)
                    if frame < self._mute_before:
                        audio = np.zeros_like(audio)
                    self._queue.append(LiveFrame(frame, frame / self.fps, image, audio,
                                                 source.utterance is not None, pushed_at))
                    frame += 1
                if frame > piece_start:
                    self._bound_queue()
            if first_piece:
                self._note_first_frame(self.clock() - started)
                first_piece = False
            if self._finished:
                break
        with self._lock:
            revoked = self._revoke is not None
            if not revoked:
                self._next_chunk += 1
                self._forget_shown_chunks()
        if revoked:
            self._roll_back()
            return
        seconds = self.clock() - started
        self.stats["chunks"] += 1
        self.stats["chunk_seconds"] = seconds if self.stats["chunks"] == 1 else \
            0.8 * self.stats["chunk_seconds"] + 0.2 * seconds

    def _forget_shown_chunks(self) -> None:
        """(Under the lock, after a chunk was made.) Drop the rollback points of chunks an interrupt
        can no longer take back (one of their frames was handed out, or more chunks are waiting than
        the queue holds: nobody reads), and what the timeline kept for the chunks before the first
        one left. A "decoded" window starts with the frames of its kernel."""
        for index in sorted(self._rollbacks):
            if self._taken >= self.plan.video_range(index)[0] or len(self._rollbacks) > self._max_rollbacks:
                del self._rollbacks[index]
        oldest = min(self._rollbacks, default=self._next_chunk - 1)
        self.timeline.release(self.plan.window_video_start(oldest) if self._decoded_windows
                              else self.plan.video_range(oldest)[0])

    def _roll_back(self) -> None:
        """Make the chunk an interrupt took back again, and those after it: restart the chunk loop
        at it, from the kernel, generator state and decoder state it was first made with."""
        point = self._rollbacks.get(self._revoke)
        if point is None:
            raise RuntimeError(f"cannot take back chunk {self._revoke}: no rollback point for it")
        self._chunks.close()
        if point.generator_state is not None:
            self._generator.set_state(point.generator_state)
        if point.decoder_state is not None:
            self._decoder.set_state(point.decoder_state)
        self._chunks = generate_chunks(**self._loop_arguments, start_chunk=point.index, kernel=point.kernel)
        with self._lock:
            for index in [index for index in self._rollbacks if index >= point.index]:
                del self._rollbacks[index]
            self._next_chunk, self._planned_chunk, self._revoke = point.index, point.index - 1, None
            self._denoising, self._abandon = None, False

    def _plan_chunk(self, start_frame: int, num_frames: int) -> torch.Tensor:
        """The chunk denoiser's audio: in real time, wait until the next chunk is due to start, then
        plan its frames (under the lock) and mark it as being denoised. Raises
        :class:`_SessionStopped` when the session closed or everything pushed was shown."""
        if self.realtime:
            self._wait_for_start()
            self._wait_for_speech(start_frame, num_frames)
        with self._lock:
            if self._closed or (self.timeline.ended and not self.timeline.pending):
                self._finished = not self._closed  # everything pushed has been shown
                raise _SessionStopped
            if self._revoke is not None:
                raise _Revoked
            self._denoising, self._abandon, self._planned_at = self._next_chunk, False, self.clock()
            windows = self.timeline.windows(start_frame, num_frames)
            self._planned_chunk = self._next_chunk
            first, stop = self.plan.video_range(self._next_chunk)
            self._planned_speaking = any(source.utterance is not None and not source.padding
                                         for source in self.timeline.sources(first, stop - first))
            return windows

    def _wait_for_start(self) -> None:
        """Sleep until ``t0 + (first frame time of the next chunk) - lead`` (recomputed on every wake:
        ``t0`` moves on after a stall, ``lead`` with each chunk); no wait before the first frame."""
        while not self._closed and self.t0 is not None:
            if self._revoke is not None:
                raise _Revoked
            left = self.t0 + self._chunk_time(self._next_chunk) - self.lead_seconds - self.clock()
            if left <= 0:
                return
            self._wake.wait(min(0.05, left))
            self._wake.clear()

    def _wait_for_speech(self, start_frame: int, num_frames: int) -> None:
        """If the utterance being shown has not yet pushed the audio this chunk needs (a block a little
        late, or a lead that grew), wait for it while the lead's margin lasts rather than cut the
        speech (a closed mouth mid-sentence, the rest shown later): until ``lead - (plan-to-first-frame
        estimate) - 20 ms`` after the planned start."""
        if self._first_frame_seconds is None or self.t0 is None:
            return
        deadline = (self.t0 + self._chunk_time(self._next_chunk) - self._first_frame_seconds
                    - LATE_AUDIO_MARGIN_SECONDS)
        while not self._closed and self._revoke is None:
            with self._lock:
                short = self.timeline.samples_short(start_frame, num_frames)
            left = deadline - self.clock()
            if short == 0 or left <= 0:
                return
            self._wake.wait(min(0.005, left))
            self._wake.clear()

    def _on_step(self, chunk_index: int, step: int, num_steps: int, latents) -> None:
        """After each denoising step: restart the chunk if an interrupt abandoned it, or leave it if
        an interrupt took back a chunk before it; after the last step the chunk is made."""
        with self._lock:
            if self._revoke is not None:  # an earlier chunk was taken back: this one goes too
                raise _Revoked
            if self._abandon:
                self._abandon = False
                raise RestartChunk
            if step == num_steps - 1:
                self._denoising = None

    def _note_first_frame(self, seconds: float) -> None:
        previous = self._first_frame_seconds
        self._first_frame_seconds = seconds if previous is None else max(seconds, 0.8 * previous + 0.2 * seconds)

    def _bound_queue(self) -> None:
        """After frames were queued (under the lock): start the clock, drop the oldest frames past
        the bound (nobody is reading: memory stays bounded) and wake the reader."""
        if self.t0 is None:
            self.t0 = self.clock()
        while len(self._queue) > self._max_queued:
            self._queue.popleft()
            self.stats["dropped_frames"] += 1
        self._ready.notify_all()

    @property
    def lead_seconds(self) -> float:
        """How long before its presentation time a chunk is planned: 1.25 x the time from planning
        to a chunk's first frame (a running estimate that follows slow chunks at once and fast ones
        slowly) + 40 ms. Without the 1.25 a busy 2-core CPU stalled nearly twice as often."""
        return 1.25 * (self._first_frame_seconds or self.chunk_seconds) + 0.04

    @property
    def latency_seconds(self) -> float:
        """Expected audio-to-frame latency in real time: chunk duration + lead + encoder look-ahead."""
        timeline = self.timeline
        return (self.chunk_seconds + self.lead_seconds + timeline.features.look_ahead_seconds
                + timeline.jitter_frames / self.fps)

    def _chunk_time(self, chunk_index: int) -> float:
        """Presentation time (s) of the first frame chunk ``chunk_index`` shows."""
        return self.plan.video_range(chunk_index)[0] / self.fps

    def _start_worker(self) -> None:
        if self._worker is None:
            # The reading thread's idle OpenMP threads would halve the worker's speed (see .openmp).
            release_idle_team()
            self._worker = threading.Thread(target=self._run_worker, name="asymk-live", daemon=True)
            self._worker.start()

    def _run_worker(self) -> None:
        try:
            with torch.no_grad():
                while not self._closed and not self._finished:
                    self._generate_chunk()
        except BaseException as error:  # handed to the reader, which raises it
            self._error = error
        finally:
            with self._ready:
                self._ready.notify_all()

    # --------------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Stop generating, release the worker and drop the session's frames, caches and chunk loop
        (idempotent). The session's own reference cycles may have been exempted from collection by a
        later session's start (see .gc_pauses): what they hold must not outlive it."""
        self._closed = True
        self._wake.set()
        with self._ready:
            self._ready.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30)
        if self._worker is None or not self._worker.is_alive():
            with self._lock:
                self._queue.clear()
                self._rollbacks.clear()
            self._chunks = self._decoder = self._anchor = None
            self._loop_arguments = {}

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
