"""Property-based checks (hypothesis, derandomized, few examples: these run on 2 shared CPU cores).

Over audio lengths, sample rates, channel counts, fps, chunk / kernel sizes and image sizes:
* the video has exactly ``round(duration_s * fps)`` frames (duration of the 16 kHz waveform);
* through the writer, the mp4's audio lasts as long as its video (within one AAC frame);
* nothing raises except the documented input errors (``InputError`` subclasses).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asymk_talker.asymk_core.audio import SAMPLE_RATE, LogMelAudioEncoder, FrameAudioFeatures, load_audio
from asymk_talker.asymk_core.errors import InputError
from asymk_talker.asymk_core.kclg import ChunkPlan
from asymk_talker.asymk_core.video_io import VideoWriter, probe_video

FUZZ = settings(max_examples=15, deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RATES = [4000, 8000, 11025, 16000, 22050, 44100, 48000, 96000]
AAC_FRAME_S = 1024 / SAMPLE_RATE


def waveform(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = max(int(round(seconds * rate)), 0)
    t = np.arange(n) / rate
    mono = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)]).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_pipe():
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@FUZZ
@given(seconds=st.floats(0.0, 30.0), rate=st.sampled_from(RATES), channels=st.integers(1, 6),
       fps=st.floats(0.5, 130.0), window=st.sampled_from([1, 3, 5, 7]))
def test_audio_front_end_frame_count(seconds, rate, channels, fps, window):
    """load_audio + FrameAudioFeatures (no model): frame count and window shapes, or an InputError."""
    audio = waveform(seconds, rate, channels, 0)
    try:
        wave = load_audio(audio if channels > 1 else audio[0], rate)
        features = FrameAudioFeatures(LogMelAudioEncoder(), wave, fps, window=window)
    except InputError:
        assert seconds < 0.04 + 1 / rate or fps > 120 or seconds * fps < 0.5 + 1e-3
        return
    assert abs(wave.size - seconds * SAMPLE_RATE) <= SAMPLE_RATE / rate + 1
    assert features.num_frames == round(wave.size / SAMPLE_RATE * fps)
    last = max(features.num_frames - 3, 0)
    assert features.windows(last, 3).shape == (3, window, 1, 80)


@FUZZ
@given(seconds=st.floats(0.0, 0.7), rate=st.sampled_from(RATES), channels=st.integers(1, 3),
       fps=st.sampled_from([1.0, 8.0, 12.5, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0, 121.0]),
       chunk_frames=st.integers(1, 4), kernel_frames=st.integers(1, 3),
       image_hw=st.tuples(st.integers(20, 120), st.integers(20, 120)),
       out_hw=st.tuples(st.sampled_from([16, 24, 32, 40]), st.sampled_from([16, 24, 32, 40])),
       seed=st.integers(0, 3), through_writer=st.booleans())
def test_generation_invariants(tiny_pipe, seconds, rate, channels, fps, chunk_frames, kernel_frames, image_hw,
                               out_hw, seed, through_writer):
    audio = waveform(seconds, rate, channels, seed)
    image = np.random.default_rng(seed).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    height, width = out_hw
    try:
        wave = load_audio(audio, rate)
        frames = tiny_pipe(image, wave, sample_rate=SAMPLE_RATE, height=height, width=width, fps=fps,
                           num_inference_steps=1, chunk_frames=chunk_frames, kernel_frames=kernel_frames,
                           output_type="np").frames
    except InputError:  # the documented refusals: too short, too small an image, fps out of range
        assert seconds < 0.05 or min(image_hw) < 32 or fps > 120 or seconds * fps < 0.5 + 1e-3
        event("refused with an InputError")
        return
    event("generated")
    expected = round(wave.size / SAMPLE_RATE * fps)
    plan = ChunkPlan(expected, chunk_frames, kernel_frames, 4)
    assert frames.shape == (expected, height, width, 3) and frames.dtype == np.float32
    assert np.isfinite(frames).all() and 0.0 <= frames.min() and frames.max() <= 1.0
    assert plan.num_chunks * plan.video_frames_per_chunk >= expected
    if through_writer and expected:
        event("written to mp4")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "clip.mp4"
            with VideoWriter(path, fps, width, height, audio=wave, audio_sample_rate=SAMPLE_RATE) as writer:
                writer.write(frames)
            info = probe_video(path)
            assert info["num_frames"] == expected
            assert abs(info["audio_duration_s"] - expected / fps) <= AAC_FRAME_S + 1e-9
            assert sorted(p.name for p in Path(folder).iterdir()) == ["clip.mp4"]
