"""Shared fixtures: tiny components, portraits and speech-like signals made on the fly (offline)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

TEST_THREADS = 2
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Entry points called in-process (``--num-threads 1``) set torch's thread count for the process;
    put it back so that every test, and renders compared bit for bit across processes, run with
    ``TEST_THREADS``."""
    yield
    if torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def unfreeze_collector():
    """Real-time live sessions exempt every object alive from collection (asymk_core.gc_pauses);
    give the next test a collector that sees everything again."""
    yield
    gc.unfreeze()


class RandomAudioWindows:
    """Stand-in for FrameAudioFeatures: deterministic windows ``[n, W, L, D]`` per video frame."""

    def __init__(self, num_frames: int, window: int = 5, layers: int = 1, dim: int = 80, seed: int = 0):
        self.num_frames, self.window, self.layers, self.dim = num_frames, window, layers, dim
        generator = torch.Generator().manual_seed(seed)
        self._table = torch.randn(num_frames, window, layers, dim, generator=generator)

    def windows(self, start: int, count: int) -> torch.Tensor:
        out = torch.zeros(count, self.window, self.layers, self.dim)
        stop = min(start + count, self.num_frames)
        if stop > start:
            out[: stop - start] = self._table[start:stop]
        return out


@pytest.fixture
def random_audio_windows():
    return RandomAudioWindows


@pytest.fixture(scope="session")
def tiny_components():
    from asymk_talker.asymk_core.model_folder import preset_components

    components, config = preset_components("tiny", seed=0)
    return components, config


@pytest.fixture
def portrait_array():
    """A 48x40 RGB uint8 'portrait' with structure (gradients + a disc)."""
    height, width = 48, 40
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, np.full_like(xx, 128.0)], axis=-1)
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 3) ** 2
    image[disc] = [230, 180, 150]
    return image.astype(np.uint8)


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonic tone with noise bursts: float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    signal = 0.3 * voiced * envelope + 0.02 * rng.standard_normal(t.shape)
    return (signal / np.max(np.abs(signal)) * 0.8).astype(np.float32)


@pytest.fixture
def speech():
    return speech_like
