"""Audio loading, log-mel / wav2vec2 encoding on the 50 Hz grid, and lazy per-frame windows."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asymk_talker.asymk_core.audio import (
    FEATURE_RATE, SAMPLE_RATE, FrameAudioFeatures, LogMelAudioEncoder, encode_audio, load_audio,
)
from asymk_talker.asymk_core.errors import InputError


def tone(seconds: float, rate: int = SAMPLE_RATE, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.4 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave * (c + 1) / channels for c in range(channels)]).astype(np.float32)  # [C, T]


def expect_error(kind, name, call, /, *args, **kwargs):
    """The call raises ``kind`` (an InputError) whose message names the argument ``name``."""
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    assert type(info.value) is not AssertionError
    assert isinstance(info.value, kind) and isinstance(info.value, InputError), repr(info.value)
    assert f"`{name}`" in str(info.value) and "Fix:" in str(info.value)
    return info.value


def write_pyav(path, samples: np.ndarray, rate: int, codec: str, fmt: str | None = None):
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# --------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_24")])
def test_load_soundfile_formats(tmp_path, suffix, subtype):
    wave = tone(0.73)
    path = tmp_path / f"a{suffix}"
    sf.write(path, wave, SAMPLE_RATE, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.shape == wave.shape
    assert np.abs(out - wave).max() < 1e-3
    assert np.array_equal(load_audio(str(path)), out)


def test_load_stereo_file_is_mean_and_resampled(tmp_path):
    stereo = tone(0.5, 44100, channels=2)  # [2, T]
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo.T, 44100, subtype="FLOAT")
    out = load_audio(path)
    assert abs(out.size - 0.5 * SAMPLE_RATE) <= 1
    reference = load_audio(stereo.mean(axis=0), 44100)
    assert np.allclose(out, reference, atol=1e-6)


@pytest.mark.parametrize("codec,suffix,fmt", [("aac", ".m4a", "mp4"), ("libmp3lame", ".mp3", "mp3")])
def test_load_compressed_via_pyav(tmp_path, codec, suffix, fmt):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder missing")
    wave = tone(1.3, 44100, freq=440)
    path = tmp_path / f"speech{suffix}"
    write_pyav(path, wave, 44100, codec, fmt)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size / SAMPLE_RATE - 1.3) < 0.08  # encoder padding is at most a frame or two
    assert 0.2 < np.abs(out).max() < 0.6


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_resampled_length_preserves_duration(rate):
    for seconds in (0.37, 1.0, 2.123):
        wave = tone(seconds, rate)
        out = load_audio(wave, rate)
        assert abs(out.size - wave.size * SAMPLE_RATE / rate) <= 1
        assert out.dtype == np.float32


def test_resampled_tone_keeps_frequency():
    wave = tone(1.0, 44100, freq=1000)
    out = load_audio(wave, 44100)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / out.size - 1000) < 5


def test_integer_pcm_arrays_are_scaled():
    wave = tone(0.5)
    pcm16 = np.round(wave * 32767).astype(np.int16)
    assert np.allclose(load_audio(pcm16, SAMPLE_RATE), wave, atol=1e-4)
    pcm32 = np.round(wave.astype(np.float64) * 2**31).astype(np.int32)
    assert np.allclose(load_audio(pcm32, SAMPLE_RATE), wave, atol=1e-6)
    pcm8 = np.round(wave * 127 + 128).astype(np.uint8)
    assert np.allclose(load_audio(pcm8, SAMPLE_RATE), wave, atol=1e-2)
    assert np.allclose(load_audio(torch.from_numpy(pcm16), SAMPLE_RATE), wave, atol=1e-4)


def test_comfy_and_channel_first_tensors():
    stereo = tone(0.6, 48000, channels=2)
    expected = load_audio(stereo.mean(axis=0), 48000)
    comfy = torch.from_numpy(stereo)[None]  # [1, C, T]
    assert np.allclose(load_audio(comfy, 48000), expected, atol=1e-6)
    assert np.allclose(load_audio(stereo, 48000), expected, atol=1e-6)
    assert np.allclose(load_audio(comfy.to(torch.bfloat16), 48000), expected, atol=2e-2)
    mono = load_audio(torch.from_numpy(tone(0.3))[None], SAMPLE_RATE)  # [1, T]
    assert mono.shape == (int(0.3 * SAMPLE_RATE),)
    assert load_audio(np.float64(1) * tone(0.3), sample_rate=16000.0).dtype == np.float32


def test_audio_errors_name_the_argument(tmp_path):
    wave = tone(0.5)
    expect_error(ValueError, "audio", load_audio, tmp_path / "missing.wav")
    expect_error(ValueError, "audio", load_audio, tmp_path)
    expect_error(ValueError, "audio", load_audio, "")
    for name, payload in (("bad.wav", b"RIFF\x00\x00junk" * 10), ("bad.mp3", b"\x00\x01garbage" * 50),
                          ("bad.m4a", b"not audio at all"), ("empty.flac", b"")):
        (tmp_path / name).write_bytes(payload)
        expect_error(ValueError, "--audio", load_audio, tmp_path / name, argument="--audio")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, tmp_path / "zero.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), SAMPLE_RATE)
    error = expect_error(ValueError, "audio", load_audio, tmp_path / "silent.wav")
    assert "silent" in str(error)
    sf.write(tmp_path / "long.wav", wave, SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, tmp_path / "long.wav", max_seconds=0.25)
    expect_error(ValueError, "a", load_audio, wave, SAMPLE_RATE, argument="a", max_seconds=0.25)
    expect_error(ValueError, "audio", load_audio, np.zeros(0, np.float32), SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, wave[:500], SAMPLE_RATE)  # 31 ms < 40 ms
    for bad in (np.nan, np.inf, -np.inf):
        broken = wave.copy()
        broken[100] = bad
        expect_error(ValueError, "audio", load_audio, broken, SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, np.full(8000, 1e-5, np.float32), SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, wave)  # no sample rate
    expect_error(ValueError, "sample_rate", load_audio, wave, 3000)
    expect_error(ValueError, "sample_rate", load_audio, wave, 500_000)
    expect_error(ValueError, "sample_rate", load_audio, wave, 16000.5)
    expect_error(TypeError, "sample_rate", load_audio, wave, "16000")
    expect_error(ValueError, "audio", load_audio, np.zeros((17, 4000), np.float32) + wave[:4000], SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, np.stack([wave, wave])[None].repeat(2, 0), SAMPLE_RATE)
    expect_error(ValueError, "audio", load_audio, np.zeros((1, 1, 2, 800), np.float32), SAMPLE_RATE)
    expect_error(TypeError, "audio", load_audio, wave.tolist(), SAMPLE_RATE)
    expect_error(TypeError, "audio", load_audio, 42)
    expect_error(TypeError, "audio", load_audio, np.ones(8000, np.int64), SAMPLE_RATE)
    expect_error(TypeError, "audio", load_audio, torch.ones(8000, dtype=torch.bool), SAMPLE_RATE)
    expect_error(ValueError, "max_seconds", load_audio, wave, SAMPLE_RATE, max_seconds=0)


# -------------------------------------------------------------------------------- log-mel
def test_log_mel_shape_grid_and_scale():
    encoder = LogMelAudioEncoder()
    assert encoder.num_layers == 1 and encoder.feature_dim == 80
    for length in (640, 1000, 16000, 16001, 23456):
        features = encoder(tone(length / SAMPLE_RATE))
        assert features.shape == (length // 320 + 1, 1, 80) and features.dtype == torch.float32
    speech = encoder(torch.from_numpy(tone(2.0)))
    assert torch.isfinite(speech).all() and speech.abs().max() < 5 and speech.std() < 2


def test_log_mel_frames_are_centred_on_hop_grid():
    encoder = LogMelAudioEncoder()
    wave = np.zeros(16000, np.float32)
    wave[::2] = 1e-4  # quiet floor so the audio is not exactly zero
    for frame in (7, 20, 33):
        clicked = wave.copy()
        clicked[frame * 320] = 1.0
        energy = encoder(clicked)[:, 0].mean(-1)
        assert int(energy.argmax()) == frame


def test_log_mel_save_load_round_trip(tmp_path):
    encoder = LogMelAudioEncoder(n_mels=64)
    encoder.save_pretrained(tmp_path / "enc")
    loaded = LogMelAudioEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config.n_mels == 64 and loaded.feature_dim == 64
    assert torch.equal(loaded.mel_filters, encoder.mel_filters)
    wave = tone(0.7)
    assert torch.equal(loaded(wave), encoder(wave))


def test_log_mel_config_errors():
    expect_error(ValueError, "n_mels", LogMelAudioEncoder, n_mels=0)
    expect_error(ValueError, "hop_length", LogMelAudioEncoder, hop_length=160)
    expect_error(ValueError, "win_length", LogMelAudioEncoder, win_length=1024)


# ------------------------------------------------------------------------ frame windows
def reference_windows(features: torch.Tensor, num: int, fps: float, window: int) -> torch.Tensor:
    half = window // 2
    out = torch.zeros(num, window, *features.shape[1:])
    for i in range(num):
        centre = int(np.floor(i * FEATURE_RATE / fps + 0.5))
        for k in range(window):
            j = centre - half + k
            if 0 <= j < features.shape[0]:
                out[i, k] = features[j]
    return out


@pytest.mark.parametrize("fps", [25, 29.97, 24])
def test_chunked_windows_equal_whole_audio(fps):
    encoder = LogMelAudioEncoder()
    wave = tone(7.31, freq=180)
    whole = encoder(wave)
    assert torch.equal(encode_audio(encoder, wave), whole)
    assert torch.equal(encode_audio(encoder, wave, segment_seconds=0.5, context_seconds=0.1), whole)
    features = FrameAudioFeatures(encoder, wave, fps, window=5, segment_seconds=1.0, context_seconds=0.2)
    assert features.num_frames == round(wave.size / SAMPLE_RATE * fps)
    total = features.num_frames + 6  # a little past the end of the audio
    chunks = [features.windows(start, min(9, total - start)) for start in range(0, total, 9)]
    chunked = torch.cat(chunks)
    expected = reference_windows(whole, total, fps, 5)
    assert torch.equal(chunked, expected)
    assert chunked[-1].abs().sum() == 0  # past the audio: zeros
    assert torch.equal(features.windows(0, 0), torch.zeros(0, 5, 1, 80))


def test_windows_memory_stays_bounded_over_long_audio():
    encoder = LogMelAudioEncoder()
    wave = tone(40.0)
    features = FrameAudioFeatures(encoder, wave, 25, window=7, segment_seconds=2.0)
    largest = 0
    for start in range(0, features.num_frames, 16):
        features.windows(start, 16)
        largest = max(largest, features._cache.shape[0])
    assert largest <= 2.0 * FEATURE_RATE + 40
    assert features.num_features == wave.size // 320 + 1 > 10 * largest


def test_frame_count_follows_duration_exactly():
    encoder = LogMelAudioEncoder()
    for seconds, fps in ((1.37, 25), (2.019, 30), (0.9, 12.5), (3.3333, 29.97), (1.02, 60)):
        wave = tone(seconds)
        features = FrameAudioFeatures(encoder, wave, fps)
        assert features.num_frames == round(wave.size / SAMPLE_RATE * fps)
        assert features.duration_s == pytest.approx(wave.size / SAMPLE_RATE)
        assert features.windows(0, features.num_frames).shape == (features.num_frames, 5, 1, 80)
        assert features.waveform.dtype == np.float32


def test_frame_features_errors():
    encoder = LogMelAudioEncoder()
    wave = tone(1.0)
    expect_error(ValueError, "fps", FrameAudioFeatures, encoder, wave, 0)
    expect_error(ValueError, "fps", FrameAudioFeatures, encoder, wave, 121)
    expect_error(ValueError, "fps", FrameAudioFeatures, encoder, wave, float("nan"))
    expect_error(ValueError, "window", FrameAudioFeatures, encoder, wave, 25, window=4)
    expect_error(ValueError, "window", FrameAudioFeatures, encoder, wave, 25, window=0)
    expect_error(TypeError, "waveform", FrameAudioFeatures, encoder, "speech.wav", 25)
    expect_error(ValueError, "waveform", FrameAudioFeatures, encoder, np.zeros((2, 100), np.float32), 25)
    expect_error(TypeError, "audio_encoder", FrameAudioFeatures, object(), wave, 25)
    expect_error(ValueError, "segment_seconds", FrameAudioFeatures, encoder, wave, 25, segment_seconds=0)
    features = FrameAudioFeatures(encoder, wave, 25)
    expect_error(ValueError, "start_frame", features.windows, -1, 3)
    expect_error(ValueError, "num_frames", features.windows, 0, -3)
    expect_error(TypeError, "start_frame", features.windows, 1.5, 3)
    expect_error(TypeError, "audio_encoder", encode_audio, "encoder", wave)


# ---------------------------------------------------------------------------- wav2vec2
@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("wav2vec2")
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            vocab_size=8)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder)
    model = Wav2Vec2Model.from_pretrained(folder).eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    return model, extractor


def test_wav2vec2_hidden_states_on_the_frame_grid(tiny_wav2vec2):
    model, extractor = tiny_wav2vec2
    for seconds in (0.5, 1.234):
        wave = tone(seconds)
        features = encode_audio(model, wave, extractor)
        assert features.shape == (wave.size // 320 + 1, 3, 32)
        assert features.dtype == torch.float32 and features.device.type == "cpu"
        assert torch.isfinite(features).all()
    long = tone(2.5)
    segmented = encode_audio(model, long, extractor, segment_seconds=1.0, context_seconds=0.5)
    assert segmented.shape == (long.size // 320 + 1, 3, 32)
    features = FrameAudioFeatures(model, long, 25, window=3, feature_extractor=extractor)
    assert (features.num_layers, features.feature_dim) == (3, 32)
    assert features.windows(10, 20).shape == (20, 3, 3, 32)
    expect_error(ValueError, "feature_extractor", encode_audio, model, long)
    expect_error(ValueError, "feature_extractor", FrameAudioFeatures, model, long, 25)


# --------------------------------------------------------------- decompression bombs: memory
def _write_multichannel_flac(path, seconds: float, rate: int, channels: int) -> None:
    """A real FLAC written block by block (the test itself never holds the decoded file)."""
    block = rate
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as handle:
        for start in range(0, int(seconds * rate), block):
            t = (start + np.arange(block)) / rate
            voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
            handle.write(np.stack([voice * (c + 1) / channels for c in range(channels)], axis=1))


def _peak_traced_bytes(call) -> tuple[object, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_multichannel_high_rate_file_decodes_in_bounded_memory(tmp_path):
    """An 8-channel 192 kHz FLAC: peak memory is that of the 16 kHz mono result plus a block, not
    of the decoded file (10 s x 8 x 192 kHz = 61 MB of float32), and matches a mono 16 kHz file's."""
    seconds = 10.0
    bomb, plain = tmp_path / "8ch_192k.flac", tmp_path / "mono_16k.flac"
    _write_multichannel_flac(bomb, seconds, 192_000, 8)
    _write_multichannel_flac(plain, seconds, SAMPLE_RATE, 1)
    out, peak = _peak_traced_bytes(lambda: load_audio(bomb))
    _, plain_peak = _peak_traced_bytes(lambda: load_audio(plain))
    assert out.dtype == np.float32 and out.size == int(seconds * SAMPLE_RATE)
    assert 0.1 < np.abs(out).max() <= 1.0
    result_bytes = out.nbytes  # 0.64 MB
    assert peak < 4 * result_bytes + 4 * 2**20, f"peak {peak / 2**20:.1f} MB"
    print(f"peak {peak / 2**20:.1f} MB, mono 16 kHz {plain_peak / 2**20:.1f} MB")
    assert peak < plain_peak + 4 * 2**20, (peak, plain_peak)


def test_length_limit_is_checked_before_decoding(tmp_path):
    bomb = tmp_path / "long.flac"
    _write_multichannel_flac(bomb, 6.0, 192_000, 8)
    (error, peak) = _peak_traced_bytes(lambda: expect_error(ValueError, "audio", load_audio, bomb, max_seconds=5))
    assert "lasts 6.0 s, more than the 5 s allowed" in str(error)
    assert peak < 2**20


def test_float_audio_far_above_full_scale_is_normalised_and_reported(tmp_path, caplog):
    wave = tone(0.5) / 0.4 * 30.0  # peaks at 30
    path = tmp_path / "loud.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    for source, kwargs in ((path, {}), (wave, {"sample_rate": SAMPLE_RATE})):
        caplog.clear()
        with caplog.at_level("WARNING", logger="asymk_talker.audio"):
            out = load_audio(source, **kwargs)
        assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(out * np.abs(wave).max(), wave, atol=1e-4)
        assert "peaks at 30" in caplog.text and "scaled down to peak 1" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="asymk_talker.audio"):
        assert np.allclose(load_audio(tone(0.5), SAMPLE_RATE), tone(0.5))  # within [-1, 1]: as is, no warning
    assert not caplog.text


def test_file_and_array_share_the_sample_rate_rule(tmp_path):
    path = tmp_path / "1khz.wav"
    sf.write(path, tone(1.0, 1000, freq=100), 1000)
    file_error = expect_error(ValueError, "audio", load_audio, path)
    array_error = expect_error(ValueError, "sample_rate", load_audio, tone(1.0, 1000, freq=100), 1000)
    assert "is sampled at 1000 Hz, outside 4000..384000 Hz" in str(file_error) and "1000 Hz is outside" in str(array_error)
