"""The live audio timeline: speech pushed in pieces, placed on the video frame grid chunk by chunk.

Pushed audio forms *utterances*. An utterance is placed (its local time 0 pinned to a video frame)
when the chunk that starts it is planned, as late in that chunk as its arrived audio requires, so
every frame it covers has all the audio (and encoder look-ahead) it needs. Each utterance frame
gets exactly the feature window an offline render of that utterance would give it
(:class:`asymk_core.audio.FrameAudioFeatures`); frames outside any utterance are *idle*: windows of
the encoder's silence features (closed mouth). If a placed utterance runs dry mid-chunk, it is cut
there and whatever arrives later starts a new utterance (in real time the session first waits a
little for the audio: :meth:`LiveAudioTimeline.samples_short`).

Frame ``g`` plays the 16 kHz samples ``[round(g r), round((g + 1) r))``, ``r = 16000 / fps``, of
the placed audio (zeros when idle), so the audio handed out with the frames never drifts from them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import (FEATURE_RATE, HOP_LENGTH, MIN_SECONDS, SAMPLE_RATE, LogMelAudioEncoder, encode_span,
                    num_feature_frames, silence_features)
from .kclg import audio_frame_centres, audio_window_index

MIN_UTTERANCE_SAMPLES = int(MIN_SECONDS * SAMPLE_RATE)


@dataclass
class Utterance:
    """Speech pushed without a gap. Samples are kept from local sample ``base`` on (older ones are
    dropped once no frame needs them); ``arrivals`` holds ``(end_sample, clock_time)`` per push."""

    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    base: int = 0
    start_frame: int | None = None
    planned_frames: int = 0
    closed: bool = False
    arrivals: deque = field(default_factory=deque)

    @property
    def total(self) -> int:
        """Samples pushed so far (local count, including dropped ones)."""
        return self.base + self.buffer.size

    def append(self, samples: np.ndarray, now: float) -> None:
        if samples.size:
            self.buffer = np.concatenate([self.buffer, samples])
            self.arrivals.append((self.total, now))

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Local samples ``[start, stop)`` (zeros past the pushed end; ``start >= base``)."""
        out = np.zeros(max(0, stop - start), np.float32)
        piece = self.buffer[max(0, start - self.base): max(0, min(stop, self.total) - self.base)]
        out[: piece.size] = piece
        return out

    def arrival(self, sample: int) -> float | None:
        """Clock time at which local sample ``sample`` was pushed."""
        for end, when in self.arrivals:
            if sample < end:
                return when
        return None

    def drop_before(self, sample: int) -> None:
        sample = min(sample, self.total) // HOP_LENGTH * HOP_LENGTH  # spans start on the feature grid
        if sample > self.base:
            self.buffer = self.buffer[sample - self.base:].copy()
            self.base = sample
        while len(self.arrivals) > 1 and self.arrivals[0][0] <= self.base:
            self.arrivals.popleft()


@dataclass
class FrameSource:
    """Where a planned video frame's conditioning comes from: utterance ``utterance`` at local frame
    ``local``, or idle (``utterance is None``); ``padding``: a frame past the end of the stream
    (never shown), conditioned as an offline render conditions the frames past the end of its
    audio in the last chunk: the last utterance's windows, zeros past its features."""

    utterance: Utterance | None = None
    local: int = 0
    padding: bool = False


class FeatureWindows:
    """How an utterance's samples become the transformer's audio windows: this project's layout
    (:class:`asymk_core.audio.FrameAudioFeatures`: encoder features at 50 Hz, ``window`` of them
    around each video frame's centre). ``context_frames``: feature frames of audio encoded on each
    side of those used; a transformer encoder also waits for that many past the last one (more
    approximates its context), the log-mel encoder only for the half analysis window it reads
    (``tail_samples``, exact). Another layout has the same members
    (:class:`asymk_core.audio_flashhead.FlashHeadLiveWindows`)."""

    def __init__(self, audio_encoder, feature_extractor, fps: float, window: int, context_frames: int = 1):
        self.audio_encoder, self.feature_extractor = audio_encoder, feature_extractor
        self.fps, self.window, self.context_frames = float(fps), int(window), int(context_frames)
        self.margin_samples = (self.window // 2 + self.context_frames + 2) * HOP_LENGTH  # kept before a frame
        # Samples read past the centre of the last feature frame used. The log-mel encoder is exact
        # with half its analysis window (the rest of its FFT frame has zero weight, so the reflected
        # padding at a span's end never reaches a used frame); another encoder waits for its context.
        if isinstance(audio_encoder, LogMelAudioEncoder):
            self.tail_samples = int(audio_encoder.config.win_length) // 2
        else:
            self.tail_samples = (self.context_frames + 1) * HOP_LENGTH
        # audio a frame waits for past its centre: the window's half width and that tail
        self.look_ahead_seconds = ((self.window // 2) * HOP_LENGTH + self.tail_samples) / SAMPLE_RATE

    def silence(self) -> torch.Tensor:
        """Features of digital silence ``[L, D]``: what idle frames are conditioned on."""
        return silence_features(self.audio_encoder, self.feature_extractor)

    def samples_needed(self, local_frames: int) -> int:
        """Local samples that must have arrived before local frames ``0 .. local_frames - 1`` can be made."""
        last_centre = int(audio_frame_centres([local_frames - 1], self.fps, FEATURE_RATE)[0])
        return (last_centre + self.window // 2) * HOP_LENGTH + self.tail_samples

    def utterance_windows(self, utterance: Utterance, frames: list[int]) -> torch.Tensor | None:
        """Windows ``[n, W, L, D]`` of the utterance's local frames ``frames`` (consecutive), as an
        offline render of the utterance gives them (zeros past its features once it is closed;
        ``None`` when every window lies past them)."""
        index = audio_window_index(frames[0], len(frames), self.fps, self.window, FEATURE_RATE)  # [n, W]
        limit = num_feature_frames(utterance.total) if utterance.closed else math.inf
        valid = (index >= 0) & (index < limit)
        block = None
        if valid.any():
            lo, hi = int(index[valid].min()), int(index[valid].max()) + 1
            features = self._features(utterance, lo, hi)
            block = torch.zeros(len(frames), self.window, *features.shape[1:])
            block[torch.from_numpy(valid)] = features[torch.from_numpy(index[valid] - lo)]
        return block

    def _features(self, utterance: Utterance, lo: int, hi: int) -> torch.Tensor:
        """Local feature frames ``[lo, hi)`` of an utterance, as an offline encode gives them."""
        ctx = self.context_frames
        a = max(0, (lo - ctx) * HOP_LENGTH)
        a = max(a, utterance.base)
        b = min(utterance.total, (hi + ctx) * HOP_LENGTH)
        if utterance.closed and hi + ctx >= num_feature_frames(utterance.total):
            b = utterance.total  # the true end: padded like the end of a whole recording
        samples = utterance.samples(a, b)
        if samples.size < MIN_UTTERANCE_SAMPLES:  # a few ms of speech: pad to the encoder's minimum
            samples = np.pad(samples, (0, MIN_UTTERANCE_SAMPLES - samples.size))
        span = encode_span(self.audio_encoder, samples, self.feature_extractor)
        first = lo - a // HOP_LENGTH
        return span[first: first + (hi - lo)]


class LiveAudioTimeline:
    """Pushed speech -> per-chunk feature windows, the ``audio`` object of the KCLG chunk denoiser.

    ``windows(start, n)`` plans the frames of ``[start, start + n)`` not planned yet as one chunk
    (placing, continuing or cutting utterances with the audio that has arrived; frames planned by
    the chunk before keep their sources) and returns float32 ``[n, W, L, D]``. ``features``: the
    :class:`FeatureWindows` layout (or another with its members).
    ``jitter_frames``: video frames of arrived speech held back when an utterance is placed, so
    audio that arrives a little late (network, audio callbacks) does not cut it.
    """

    def __init__(self, features: FeatureWindows, jitter_frames: int = 0):
        self.features = features
        self.fps, self.window = features.fps, features.window
        self.jitter_frames = int(jitter_frames)
        self.silence = features.silence().float()  # [L, D]
        self.samples_per_frame = SAMPLE_RATE / self.fps
        self.utterances: deque[Utterance] = deque()
        self.ended = False
        self.planned: dict[int, list[FrameSource]] = {}  # first frame of a chunk -> its frames

    # ------------------------------------------------------------------------------- arrivals
    def push(self, samples: np.ndarray, now: float) -> None:
        """Append 16 kHz samples to the open utterance (or open one)."""
        if self.ended:
            raise RuntimeError("the live session has ended: no more audio can be pushed")
        if not self.utterances or self.utterances[-1].closed:
            self.utterances.append(Utterance())
        self.utterances[-1].append(samples, now)

    def end(self) -> None:
        """No more audio: the open utterance is complete, and the stream stops after it."""
        self.ended = True
        for utterance in self.utterances:
            utterance.closed = True

    def interrupt(self, next_frame: int, keep_planned: bool = True) -> int:
        """Drop all queued speech: utterances not yet placed, and the placed one from ``next_frame`` on
        (or, with ``keep_planned``, from the end of the last chunk already planned). Without
        ``keep_planned`` the plans of chunks from ``next_frame`` on are forgotten too (their generation
        is being abandoned). Returns the first frame that is idle."""
        if not keep_planned:
            for first in [f for f in self.planned if f >= next_frame]:
                del self.planned[first]
        next_frame = max([next_frame] + [first + len(sources) for first, sources in self.planned.items()])
        kept = deque()
        for utterance in self.utterances:
            if utterance.start_frame is not None and utterance.start_frame < next_frame:
                self._cut(utterance, next_frame - utterance.start_frame)
                kept.append(utterance)
        self.utterances = kept
        return next_frame

    @property
    def pending(self) -> bool:
        """Whether pushed speech remains to be planned (an open utterance always may grow)."""
        return any(not u.closed or u.start_frame is None or u.planned_frames < self.num_frames(u)
                   for u in self.utterances)

    # ------------------------------------------------------------------------------- geometry
    def num_frames(self, utterance: Utterance) -> int:
        """Frames of a closed utterance (the offline rule, ``round(duration * fps)``)."""
        return int(round(utterance.total / SAMPLE_RATE * self.fps))

    def ready_frames(self, utterance: Utterance) -> int:
        """Local frames whose audio has all arrived (all of them once the utterance is closed)."""
        if utterance.closed:
            return self.num_frames(utterance)
        frames = int(utterance.total / self.samples_per_frame) + 1
        while frames > 0 and self.features.samples_needed(frames) > utterance.total:
            frames -= 1
        return frames

    def _cut(self, utterance: Utterance, local_frames: int) -> Utterance | None:
        """Close ``utterance`` after ``local_frames`` frames; returns the rest of its audio as a new
        (unplaced) utterance, or ``None`` when nothing is left."""
        cut = int(round(local_frames * self.samples_per_frame))
        rest = None
        if cut < utterance.total:
            rest = Utterance(closed=utterance.closed)
            rest.append(utterance.samples(max(cut, utterance.base), utterance.total), 0.0)
            rest.arrivals = deque((end - cut, when) for end, when in utterance.arrivals if end > cut) or rest.arrivals
            utterance.buffer = utterance.buffer[: max(0, cut - utterance.base)]
            utterance.base = min(utterance.base, cut)  # samples past the cut may have been released already
        utterance.closed = True
        if rest is None or (rest.closed and rest.total < MIN_UTTERANCE_SAMPLES):
            return None
        return rest

    def samples_short(self, start: int, count: int) -> int:
        """Samples the utterance being shown still lacks to cover frames up to ``start + count``
        (0 when it has them, is closed, or none is placed): planning the chunk now would cut it there."""
        utterance = next((u for u in self.utterances if u.start_frame is not None and not u.closed), None)
        if utterance is None or start + count <= utterance.start_frame:
            return 0
        return max(0, self.features.samples_needed(start + count - utterance.start_frame) - utterance.total)

    # -------------------------------------------------------------------------------- planning
    def plan(self, start: int, count: int) -> list[FrameSource]:
        """Decide the source of frames ``[start, start + count)`` (the chunk about to be generated)."""
        if start in self.planned:
            return self.planned[start]
        sources = [FrameSource() for _ in range(count)]
        position, stop = start, start + count
        queue = list(self.utterances)
        index = 0
        while position < stop and index < len(queue):
            utterance = queue[index]
            if utterance.closed and utterance.start_frame is None and self.num_frames(utterance) < 1:
                self.utterances.remove(utterance)  # too short to give a frame
                index += 1
                continue
            ready = self.ready_frames(utterance)
            if utterance.start_frame is None:
                usable = ready if utterance.closed else ready - self.jitter_frames
                if usable <= 0:
                    break
                # As late as the arrived audio requires (plus the jitter margin for open speech), so
                # neither this chunk nor the next waits for audio still on its way.
                offset = 0 if utterance.closed else max(0, (stop - position) - usable)
                utterance.start_frame = position + offset
                position += offset
            local = position - utterance.start_frame
            if not utterance.closed and ready < local + (stop - position):
                # Ran dry: nothing more arrived in time, so this is where the utterance stops
                # (its last frames padded as at the end of a recording); later audio starts a new one.
                utterance.closed = True
            total = self.num_frames(utterance) if utterance.closed else ready
            take = max(0, min(stop - position, total - local))
            for k in range(take):
                sources[position - start + k] = FrameSource(utterance, local + k)
            position += take
            utterance.planned_frames = local + take
            if not utterance.closed:
                break  # it covers the whole chunk and goes on
            index += 1
        if self.ended and not self.pending:
            last = next((source for source in reversed(sources[: position - start]) if source.utterance), None)
            for k in range(position - start, count):
                local = 0 if last is None else last.local + k - (position - start) + 1
                sources[k] = FrameSource(None if last is None else last.utterance, local, padding=True)
        self.planned[start] = sources
        return sources

    def sources(self, start: int, count: int) -> list[FrameSource]:
        """Sources of frames ``[start, start + count)``: those already planned (by this chunk or the one
        before) as they were planned, the rest planned now as one chunk."""
        out, frame, stop = [], start, start + count
        while frame < stop:
            owner = next(((first, planned) for first, planned in self.planned.items()
                          if first <= frame < first + len(planned)), None)
            if owner is None:
                out.extend(self.plan(frame, stop - frame))
                break
            first, planned = owner
            take = min(first + len(planned), stop) - frame
            out.extend(planned[frame - first: frame - first + take])
            frame += take
        return out

    # ----------------------------------------------------------------------------- conditioning
    def windows(self, start_frame: int, num_frames: int) -> torch.Tensor:
        """Plan frames ``start_frame ..`` and return their windows, float32 ``[n, W, L, D]``."""
        sources = self.sources(start_frame, num_frames)
        layers, dim = self.silence.shape
        out = self.silence.expand(num_frames, self.window, layers, dim).clone()
        by_utterance: dict[int, list[int]] = {}
        for k, source in enumerate(sources):
            if source.padding and source.utterance is None:
                out[k] = 0.0
            elif source.utterance is not None:
                by_utterance.setdefault(id(source.utterance), []).append(k)
        for ks in by_utterance.values():
            utterance = sources[ks[0]].utterance
            block = self.features.utterance_windows(utterance, [sources[k].local for k in ks])
            out[ks] = 0.0 if block is None else block
        return out

    # ---------------------------------------------------------------------------------- output
    def frame_audio(self, source: FrameSource, frame: int) -> tuple[np.ndarray, float | None]:
        """The 16 kHz samples frame ``frame`` plays, and when its first one was pushed (``None`` if idle)."""
        begin = int(round(frame * self.samples_per_frame))
        end = int(round((frame + 1) * self.samples_per_frame))
        utterance = source.utterance
        if utterance is None:
            return np.zeros(end - begin, np.float32), None
        origin = int(round(utterance.start_frame * self.samples_per_frame))
        return utterance.samples(begin - origin, end - origin), utterance.arrival(begin - origin)

    def release(self, next_frame: int) -> None:
        """Forget what frames before ``next_frame`` needed: old samples, finished utterances, and the
        plans of chunks that end by then."""
        for first in [f for f, planned in self.planned.items() if f + len(planned) <= next_frame]:
            del self.planned[first]
        margin = self.features.margin_samples
        while self.utterances:
            utterance = self.utterances[0]
            if utterance.start_frame is None:
                break
            local = next_frame - utterance.start_frame
            if utterance.closed and local >= self.num_frames(utterance):
                self.utterances.popleft()
                continue
            sample = int(round(local * self.samples_per_frame))
            utterance.drop_before(max(0, sample - margin))
            break
