"""Live sessions: equivalence with pipe.stream, idle frames, interrupt, block sizes and rates, bad PCM."""

from __future__ import annotations

import gc
import itertools
import weakref

import numpy as np
import pytest
import torch

from asymk_talker import AsymKPipeline
from asymk_talker.asymk_core.audio import SAMPLE_RATE

CHUNK = 12  # video frames per chunk of the tiny preset (3 latent frames x 4)


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def streamed(pipe, image, audio, rate=SAMPLE_RATE, seed=0, **kwargs) -> np.ndarray:
    chunks = pipe.stream(image, audio, sample_rate=rate, generator=torch.Generator().manual_seed(seed), **kwargs)
    return np.concatenate([chunk.frames for chunk in chunks])


def live_session(pipe, image, seed=0, realtime=False, **kwargs):
    return pipe.live(image, generator=torch.Generator().manual_seed(seed), realtime=realtime, **kwargs)


def pieces(samples: np.ndarray, sizes=(1, 77, 1000, 333, 4096)):
    """Cut ``samples`` into blocks of cycling odd sizes."""
    start = 0
    for size in itertools.cycle(sizes):
        if start >= samples.size:
            return
        yield samples[start:start + size]
        start += size


@pytest.mark.parametrize("sampler, fps", [("teacher", 25), ("distilled", 30)])
def test_all_audio_pushed_at_once_equals_pipe_stream(tiny_pipe, portrait_array, speech, sampler, fps):
    audio = speech(1.3)
    expected = streamed(tiny_pipe, portrait_array, audio, seed=5, sampler=sampler, fps=fps)
    with live_session(tiny_pipe, portrait_array, seed=5, sampler=sampler, fps=fps) as live:
        for block in pieces(audio):
            live.push(block, SAMPLE_RATE)
        live.end()
        frames = list(live.frames())
    assert [frame.index for frame in frames] == list(range(expected.shape[0]))
    assert np.array_equal(np.stack([frame.image for frame in frames]), expected)
    assert all(frame.speaking for frame in frames)
    assert np.allclose([frame.pts for frame in frames], np.arange(len(frames)) / fps)
    played = np.concatenate([frame.audio for frame in frames])
    assert played.size == round(len(frames) * SAMPLE_RATE / fps)
    assert np.array_equal(played[: min(played.size, audio.size)], audio[: played.size])


def test_other_sample_rate_in_odd_blocks_equals_pipe_stream(tiny_pipe, portrait_array, speech):
    audio = speech(1.0, sample_rate=48000, seed=2)
    expected = streamed(tiny_pipe, portrait_array, audio, rate=48000, seed=1)
    with live_session(tiny_pipe, portrait_array, seed=1) as live:
        for block in pieces(audio, sizes=(480, 7, 12345, 999)):
            live.push(block, 48000)
        live.end()
        frames = np.stack([frame.image for frame in live.frames()])
    assert np.array_equal(frames, expected)


def test_idle_frames_between_pushes_then_speech_resumes(tiny_pipe, portrait_array, speech):
    with live_session(tiny_pipe, portrait_array) as live:
        stream = live.frames()
        idle = list(itertools.islice(stream, CHUNK))  # nothing pushed yet: idle
        assert not any(frame.speaking for frame in idle)
        assert all(not frame.audio.any() and frame.pushed_at is None for frame in idle)
        live.push(speech(0.5), SAMPLE_RATE)
        following = list(itertools.islice(stream, 5 * CHUNK))
        speaking = [frame.speaking for frame in following]
        assert any(speaking) and not speaking[-1]  # it spoke, then went back to idle without being told
        first, last = speaking.index(True), len(speaking) - 1 - speaking[::-1].index(True)
        assert all(speaking[first:last + 1])  # one utterance, no gap
        assert last - first + 1 == round(0.5 * 25)
        assert following[0].index == CHUNK  # the video never stopped
        live.push(speech(0.3, seed=1), SAMPLE_RATE)
        again = list(itertools.islice(stream, 3 * CHUNK))
        assert any(frame.speaking for frame in again)
        indices = [frame.index for frame in idle + following + again]
        assert indices == list(range(len(indices)))


def test_interrupt_returns_to_idle_at_the_next_chunk(tiny_pipe, portrait_array, speech):
    with live_session(tiny_pipe, portrait_array) as live:
        live.push(speech(3.0), SAMPLE_RATE)
        stream = live.frames()
        spoken = list(itertools.islice(stream, CHUNK // 2))
        assert all(frame.speaking for frame in spoken)
        live.interrupt()
        rest = list(itertools.islice(stream, 3 * CHUNK))
        speaking = [frame.speaking for frame in rest]
        assert all(speaking[: CHUNK - CHUNK // 2])  # the chunk being shown finishes its lip motion,
        assert not any(frame.audio.any() for frame in rest)  # but the voice stops at once
        assert not any(speaking[CHUNK - CHUNK // 2:])  # then idle: within one chunk
        live.push(speech(0.4, seed=3), SAMPLE_RATE)  # and it can speak again
        assert any(frame.speaking for frame in itertools.islice(stream, 3 * CHUNK))


def test_interrupt_abandons_the_chunk_being_denoised(tiny_pipe, portrait_array, speech):
    """An interrupt that arrives while a speaking chunk is denoised makes that very chunk idle: it is
    generated again from the same kernel and noise, exactly as if the interrupt had come just before."""
    audio = speech(3.0)

    def render(interrupt_inside: bool) -> list:
        with live_session(tiny_pipe, portrait_array) as live:
            live.push(audio, SAMPLE_RATE)
            stream = live.frames()
            first_chunk = list(itertools.islice(stream, CHUNK))
            armed = [interrupt_inside]

            def interrupt_once(module, args, kwargs):
                if armed[0]:
                    armed[0] = False
                    live.interrupt()

            if interrupt_inside:
                handle = tiny_pipe.transformer.register_forward_pre_hook(interrupt_once, with_kwargs=True)
            else:
                live.interrupt()
            try:
                rest = list(itertools.islice(stream, 2 * CHUNK))
            finally:
                if interrupt_inside:
                    handle.remove()
            assert not armed[0]
            return first_chunk + rest

    abandoned, before = render(True), render(False)
    assert all(frame.speaking for frame in abandoned[:CHUNK])
    assert not any(frame.speaking or frame.audio.any() for frame in abandoned[CHUNK:])
    assert [frame.index for frame in abandoned] == list(range(3 * CHUNK))
    for a, b in zip(abandoned, before):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.audio, b.audio)


def queued_from_chunk_1(live, until: int, timeout: float) -> list[bool]:
    """Wait until frame ``until`` is queued (made, not yet read); the speaking flags of the queued
    frames from chunk 1 on (``[]`` after ``timeout`` seconds)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with live._lock:
            if any(frame.index >= until for frame in live._queue):
                return [frame.speaking for frame in live._queue if frame.index >= CHUNK]
        time.sleep(0.002)
    return []


@pytest.mark.parametrize("queued", [1, CHUNK])
def test_interrupt_takes_back_a_speaking_chunk_made_but_not_yet_shown(tiny_pipe, portrait_array, speech, queued):
    """In real time the next chunk is made ahead of its presentation time. An interrupt that comes
    after it was made (``queued`` of its frames waiting, speaking) but before any of them is shown
    makes it idle: it is made again from the same kernel, noise and decoder state, so the video
    equals that of an interrupt which came before the chunk was planned."""
    audio = speech(3.0)

    def render(after_made: bool) -> tuple[list, list]:
        with live_session(tiny_pipe, portrait_array, realtime=True) as live:
            live.push(audio, SAMPLE_RATE)
            stream = live.frames(timeout=60)
            frames = [next(stream)]
            waiting = queued_from_chunk_1(live, until=CHUNK + queued - 1, timeout=30) if after_made else []
            live.interrupt()
            frames += list(itertools.islice(stream, 3 * CHUNK - 1))
        return frames, waiting

    taken_back, waiting = render(True)
    before, _ = render(False)
    assert len(waiting) >= queued and all(waiting)  # the chunk had been made, speaking
    assert [frame.index for frame in taken_back] == list(range(3 * CHUNK))
    assert all(frame.speaking for frame in taken_back[:CHUNK])
    assert not any(frame.speaking or frame.audio.any() for frame in taken_back[CHUNK:])
    for a, b in zip(taken_back, before):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.speaking == b.speaking


def test_interrupt_takes_back_every_chunk_made_ahead_on_a_slow_cpu(tiny_pipe, portrait_array, speech, monkeypatch):
    """When the lead passes a chunk's duration (a slow CPU), two speaking chunks are made before the
    first of them is shown; an interrupt takes back both, so the face is still idle from the next chunk."""
    from asymk_talker.asymk_core.live import LiveSession

    audio = speech(4.0)

    def render(slow: bool) -> tuple[list, list]:
        with monkeypatch.context() as patch:
            if slow:
                patch.setattr(LiveSession, "lead_seconds", property(lambda self: 2.5 * self.chunk_seconds))
            with live_session(tiny_pipe, portrait_array, realtime=True) as live:
                live.push(audio, SAMPLE_RATE)
                stream = live.frames(timeout=60)
                frames = [next(stream)]
                waiting = queued_from_chunk_1(live, until=2 * CHUNK, timeout=60) if slow else []
                live.interrupt()
                frames += list(itertools.islice(stream, 4 * CHUNK - 1))
        return frames, waiting

    taken_back, waiting = render(True)
    before, _ = render(False)
    assert len(waiting) > CHUNK and all(waiting)  # chunk 1 whole and the start of chunk 2, speaking
    assert [frame.index for frame in taken_back] == list(range(4 * CHUNK))
    assert not any(frame.speaking or frame.audio.any() for frame in taken_back[CHUNK:])
    for a, b in zip(taken_back, before):
        np.testing.assert_array_equal(a.image, b.image)


def test_interrupt_while_the_reader_waits_for_a_chunks_first_frame_takes_that_chunk_back(
        tiny_pipe, portrait_array, speech, monkeypatch):
    """A reader blocked in ``next()`` is handed a frame only when it is due. An interrupt that comes
    while it waits for the first frame of a speaking chunk already made still takes that chunk back,
    so the face is idle from that very frame (not one chunk later)."""
    import threading
    import time

    from asymk_talker.asymk_core.live import LiveSession

    monkeypatch.setattr(LiveSession, "lead_seconds", property(lambda self: 1.5 * self.chunk_seconds))
    with live_session(tiny_pipe, portrait_array, realtime=True, clock=lambda: time.monotonic() / 4) as live:
        live.push(speech(3.0), SAMPLE_RATE)  # the clock runs at a quarter speed: a frame lasts 0.16 s
        stream = live.frames(timeout=60)
        shown = list(itertools.islice(stream, CHUNK))  # chunk 0
        assert queued_from_chunk_1(live, until=CHUNK, timeout=30)  # chunk 1 is made, speaking
        rest = []
        reader = threading.Thread(target=lambda: rest.extend(itertools.islice(stream, 2 * CHUNK)))
        reader.start()
        time.sleep(0.02)  # the reader now waits for frame CHUNK, due 0.16 s after the one before
        live.interrupt()
        reader.join(timeout=60)
    assert all(frame.speaking for frame in shown)
    assert [frame.index for frame in rest] == list(range(CHUNK, 3 * CHUNK))
    assert not any(frame.speaking or frame.audio.any() for frame in rest)


def test_realtime_waits_for_speech_a_little_late_instead_of_cutting_it(tiny_pipe, portrait_array, speech, monkeypatch):
    """The rest of an utterance arrives 0.15 s after the chunk that needs it was due to be planned
    (a late block, or a lead that grew): the session waits for it within the lead's margin, so the
    speech plays without a gap, as one utterance."""
    import threading
    import time

    from asymk_talker.asymk_core.live import LiveSession

    monkeypatch.setattr(LiveSession, "lead_seconds", property(lambda self: 0.6))  # margin for a slow CI
    audio = speech(2.2)
    head = int(1.2 * SAMPLE_RATE)  # covers chunks 0 and 1 (24 frames), not chunk 2 (planned at t0 + 0.36 s)
    with live_session(tiny_pipe, portrait_array, realtime=True) as live:
        def push_the_rest():
            while live.t0 is None:
                time.sleep(0.002)
            time.sleep(max(0.0, live.t0 + 2 * CHUNK / live.fps - 0.6 + 0.15 - time.monotonic()))
            live.push(audio[head:], SAMPLE_RATE)
            live.end()

        live.push(audio[:head], SAMPLE_RATE)
        feeder = threading.Thread(target=push_the_rest, daemon=True)
        feeder.start()
        frames = list(live.frames(timeout=60))
        feeder.join()
    assert [frame.index for frame in frames] == list(range(round(2.2 * live.fps)))
    assert all(frame.speaking for frame in frames)
    assert np.array_equal(np.concatenate([frame.audio for frame in frames]), audio[: sum(f.audio.size for f in frames)])


def test_end_without_speech_stops_after_the_current_chunk(tiny_pipe, portrait_array):
    with live_session(tiny_pipe, portrait_array) as live:
        stream = live.frames()
        next(stream)
        live.end()
        assert len(list(stream)) == CHUNK - 1


@pytest.mark.parametrize("pcm, rate, argument, kind", [
    (np.array([0.0, np.nan, 0.1], np.float32), 16000, "pcm", ValueError),
    ("not audio", 16000, "pcm", TypeError),
    (np.zeros(100, np.float32), 0, "sample_rate", ValueError),
    (np.zeros(100, np.float32), None, "pcm", ValueError),
    (np.zeros((2, 3, 100), np.float32), 16000, "pcm", ValueError),
    (np.zeros(100, np.complex64), 16000, "pcm", TypeError),
])
def test_bad_pcm_is_refused_and_leaves_the_session_unchanged(tiny_pipe, portrait_array, speech, pcm, rate,
                                                              argument, kind):
    audio = speech(0.8)
    expected = streamed(tiny_pipe, portrait_array, audio)
    with live_session(tiny_pipe, portrait_array) as live:
        with pytest.raises(kind, match=f"`{argument}`"):
            live.push(pcm, rate)
        live.push(audio, SAMPLE_RATE)
        live.end()
        with pytest.raises(ValueError, match="ended"):
            live.push(audio, SAMPLE_RATE)
        frames = np.stack([frame.image for frame in live.frames()])
    assert np.array_equal(frames, expected)


def test_memory_stays_bounded_over_a_long_session(tiny_pipe, portrait_array, speech):
    with live_session(tiny_pipe, portrait_array) as live:
        stream = live.frames()
        for round_ in range(12):
            live.push(speech(0.6, seed=round_), SAMPLE_RATE)
            for _ in itertools.islice(stream, 2 * CHUNK):
                pass
            timeline = live.timeline
            assert len(timeline.utterances) <= 2 and len(timeline.planned) <= 1
            assert sum(u.buffer.size for u in timeline.utterances) <= SAMPLE_RATE
            assert len(live._queue) <= CHUNK
        assert live.stats["frames"] == 24 * 12 and live.stats["dropped_frames"] == 0


def test_realtime_session_paces_frames_and_matches_pipe_stream(tiny_pipe, portrait_array, speech):
    audio = speech(0.6)
    expected = streamed(tiny_pipe, portrait_array, audio, seed=2)
    with live_session(tiny_pipe, portrait_array, seed=2, realtime=True) as live:
        live.push(audio, SAMPLE_RATE)
        live.end()
        frames = list(live.frames(timeout=60))
    assert np.array_equal(np.stack([frame.image for frame in frames]), expected)
    assert live.t0 is not None and live.stats["frames"] == len(frames)


def test_closed_session_refuses_input(tiny_pipe, portrait_array, speech):
    live = live_session(tiny_pipe, portrait_array, realtime=True)
    live.close()
    with pytest.raises(RuntimeError, match="closed"):
        live.push(speech(0.2), SAMPLE_RATE)
    assert list(live.frames(timeout=5)) == []


class _Node:
    pass


def test_realtime_session_collects_then_exempts_what_is_alive_from_collection(tiny_pipe, portrait_array):
    garbage = _Node()
    garbage.cycle = garbage  # reference-cycle garbage: only the collector frees it
    collected, kept = weakref.ref(garbage), _Node()
    del garbage
    with live_session(tiny_pipe, portrait_array, realtime=True):
        assert collected() is None
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())  # in the permanent generation


def test_closing_a_session_frees_its_frames_and_caches_though_a_later_session_exempted_them(
        tiny_pipe, portrait_array, speech):
    first = live_session(tiny_pipe, portrait_array, realtime=True)
    first.push(speech(0.5), SAMPLE_RATE)
    frames = first.frames(timeout=60)
    next(frames)
    decoder = weakref.ref(first._decoder)
    queued = [weakref.ref(frame.image) for frame in list(first._queue)]
    assert queued
    with live_session(tiny_pipe, portrait_array, realtime=True):  # its start exempts the first's state
        frames.close()
        first.close()
        assert decoder() is None
        assert all(image() is None for image in queued)


def test_interrupt_keeps_the_audio_of_a_chunk_already_being_generated(tiny_pipe, speech):
    from asymk_talker.asymk_core.live_audio import FeatureWindows, LiveAudioTimeline

    timeline = LiveAudioTimeline(FeatureWindows(tiny_pipe.audio_encoder, None, 25.0, 5))
    audio = speech(3.0)
    timeline.push(audio, now=0.0)
    sources = timeline.plan(0, CHUNK)  # the worker planned chunk 0 and is denoising it
    timeline.interrupt(next_frame=0)  # the session's next chunk index was still 0
    played = np.concatenate([timeline.frame_audio(source, frame)[0] for frame, source in enumerate(sources)])
    assert all(source.utterance is not None for source in sources)
    assert np.array_equal(played, audio[: played.size])  # the lips and their sound stay together
    assert not any(source.utterance for source in timeline.plan(CHUNK, CHUNK))  # and the rest is dropped


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_log_mel_look_ahead_is_exact(tiny_pipe, speech, fps):
    """A frame is made as soon as its features equal the offline ones, and not one sample sooner."""
    from asymk_talker.asymk_core.live_audio import FeatureWindows, Utterance

    features = FeatureWindows(tiny_pipe.audio_encoder, None, fps, 5)
    audio = speech(2.0)

    def windows(samples, frames, closed=False):
        utterance = Utterance(closed=closed)
        utterance.append(samples, 0.0)
        return features.utterance_windows(utterance, frames)

    for frames in (1, 7, 12, 31):
        need = features.samples_needed(frames)
        offline = windows(audio, list(range(frames)), closed=True)
        assert torch.equal(windows(audio[:need], list(range(frames))), offline)
        assert not torch.equal(windows(audio[:need - 1], list(range(frames))), offline)
    assert features.look_ahead_seconds == pytest.approx(0.0525)


def test_realtime_chunks_are_planned_when_due_with_their_kernel_tokens_computed_before(portrait_array, speech):
    """In real time a chunk's audio is planned no earlier than ``t0 + (its first frame's time) - lead``,
    and a block-causal model's kernel tokens for it are computed before that wait, not after."""
    import time

    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    causal = AsymKTransformer.from_preset("tiny", kernel_attention="block_causal")
    causal.load_state_dict(pipe.transformer.state_dict())
    pipe.register_modules(transformer=causal.eval())
    pipe.set_progress_bar_config(disable=True)
    events = []

    def record(module, args, kwargs):
        events.append(("kernel" if not kwargs["kernel_cache"].filled else "chunk", time.monotonic()))

    handle = causal.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with live_session(pipe, portrait_array, realtime=True, num_inference_steps=2) as live:
            plans = []
            windows = live.timeline.windows

            def planned(start, count):
                plans.append((time.monotonic(), start / live.fps, live.t0, live.lead_seconds))
                events.append(("plan", plans[-1][0]))
                return windows(start, count)

            live.timeline.windows = planned
            live.push(speech(2.0), SAMPLE_RATE)
            frames = list(itertools.islice(live.frames(timeout=60), 4 * CHUNK))
    finally:
        handle.remove()
    assert [frame.index for frame in frames] == list(range(4 * CHUNK))
    for when, first_frame_time, t0, lead in plans[1:]:
        assert when >= t0 + first_frame_time - lead - 1e-3
    names = [name for name, _ in events]
    per_chunk = ["kernel", "plan", "chunk", "chunk"]
    assert names[: 4 * len(per_chunk)] == per_chunk * 4
