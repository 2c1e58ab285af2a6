"""Audio input: loading to 16 kHz mono, audio encoders, and per-video-frame feature windows.

Everything runs on one frame grid: ``FEATURE_RATE`` = 50 feature frames per second (hop 320
samples at 16 kHz, as wav2vec2). Feature frame ``j`` is centred at ``j * 0.02`` s and a waveform
of ``T`` samples has ``T // 320 + 1`` feature frames, whichever encoder is used.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .errors import InputError, input_error
from .files import check_input_file, ffmpeg_path
from .kclg import audio_frame_centres, audio_window_index

logger = logging.getLogger("asymk_talker.audio")

SAMPLE_RATE = 16_000
FEATURE_RATE = 50
HOP_LENGTH = SAMPLE_RATE // FEATURE_RATE  # 320 samples per feature frame
MIN_SECONDS = 0.04
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000
MAX_CHANNELS = 16
SILENCE_PEAK = 1e-4
LOUD_PEAK = 1.5  # float audio peaking above this is reported (it is scaled to peak 1 above 1.0)
BLOCK_SAMPLES = 1 << 18  # decoded samples (all channels together) per block: 1 MB of float32

_SOUNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64"}


# ------------------------------------------------------------------------------------- loading
def num_feature_frames(num_samples: int) -> int:
    """Feature frames for ``num_samples`` samples at 16 kHz: ``num_samples // 320 + 1``."""
    return int(num_samples) // HOP_LENGTH + 1


def _check_sample_rate(sample_rate, argument: str) -> int:
    if sample_rate is None:
        raise input_error(argument, "an array or tensor was given without its sample rate",
                          "also pass sample_rate (in Hz), e.g. sample_rate=16000")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise input_error("sample_rate", f"expected a number of Hz, got {type(sample_rate).__name__}",
                          "pass an integer such as 16000", kind=TypeError)
    if not math.isfinite(float(sample_rate)) or float(sample_rate) != int(sample_rate):
        raise input_error("sample_rate", f"{sample_rate!r} is not a whole number of Hz",
                          "pass an integer such as 16000")
    rate = int(sample_rate)
    problem = _rate_problem(rate)
    if problem:
        raise input_error("sample_rate", f"{rate} Hz is {problem}", "pass the real sample rate of the recording")
    return rate


def _array_to_float(array, argument: str) -> np.ndarray:
    """Array/tensor of any supported dtype -> float (PCM integers scaled to [-1, 1])."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise input_error(argument, f"tensor dtype {tensor.dtype} is not audio",
                              "pass float samples in [-1, 1] or int16/int32 PCM", kind=TypeError)
        array = tensor.numpy()
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(np.float32, copy=False)
    scales = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}
    if array.dtype in scales:
        return (array.astype(np.float64) / scales[array.dtype]).astype(np.float32)
    if array.dtype == np.uint8:
        return ((array.astype(np.float64) - 128.0) / 128.0).astype(np.float32)
    raise input_error(argument, f"samples of dtype {array.dtype} are not supported",
                      "pass float samples in [-1, 1] or int8/int16/int32 PCM", kind=TypeError)


def _array_to_mono(array: np.ndarray, argument: str) -> np.ndarray:
    """[T], [C, T] or [1, C, T] -> mono [T] (channel mean)."""
    if array.ndim == 3:
        if array.shape[0] != 1:
            raise input_error(argument, f"got a batch of {array.shape[0]} waveforms (shape {tuple(array.shape)})",
                              "pass one recording: a [1, C, T] waveform")
        array = array[0]
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise input_error(argument, f"expected shape [T], [C, T] or [1, C, T], got {tuple(array.shape)}",
                          "pass a mono [T] or channels-first [C, T] waveform")
    if array.shape[0] > MAX_CHANNELS:
        raise input_error(argument, f"shape {tuple(array.shape)} has {array.shape[0]} channels (at most "
                          f"{MAX_CHANNELS} allowed; layout must be channels-first [C, T])",
                          "transpose a [T, C] array to [C, T]")
    return array.mean(axis=0) if array.shape[0] > 1 else array[0]


def _wav_missing_bytes(path: Path) -> int:
    """Bytes a RIFF/WAVE file's ``data`` chunk declares beyond the end of the file (0 if intact).

    libsndfile silently reads what is there, so a cut-off download would otherwise give a shorter
    video. Streaming placeholders (size 0 or 0xFFFFFFFF) are not counted as truncation.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return 0
            offset = 12
            while offset + 8 <= size:
                handle.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
                if chunk_id == b"data":
                    if chunk_size in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, chunk_size - (size - offset - 8))
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return 0
    return 0


def _rate_problem(rate) -> str | None:
    """Why a sample rate cannot be used (the one rule for arrays and files), or ``None``."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return f"outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
    return None


class BlockResampler:
    """Mono float blocks at ``rate`` Hz in, 16 kHz float32 blocks out, for audio that arrives in pieces.

    libswresample (``av.AudioResampler``) keeps its filter state between blocks, so the output does
    not depend on how the input was cut; :meth:`flush` returns the filter's tail at the end. At
    16 kHz the blocks pass through unchanged.
    """

    def __init__(self, rate: int):
        self.rate, self._pts, self._swr = int(rate), 0, None
        if self.rate != SAMPLE_RATE:
            import av

            self._swr = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def _drain(self, frames) -> np.ndarray:
        pieces = [out.to_ndarray().reshape(-1) for out in frames]
        return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)

    def add(self, block: np.ndarray) -> np.ndarray:
        """A mono block ``[n]`` at ``rate`` -> the 16 kHz samples ready so far (a new array)."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self._swr is None or block.size == 0:
            return block.copy()
        import av

        frame = av.AudioFrame.from_ndarray(block[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.rate, self._pts
        self._pts += block.size
        return self._drain(self._swr.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples still inside the resampling filter (empty at 16 kHz)."""
        if self._swr is None or self._pts == 0:
            return np.zeros(0, np.float32)
        return self._drain(self._swr.resample(None))


def pcm_block(pcm, sample_rate, argument: str = "pcm") -> tuple[np.ndarray, int]:
    """One block of live audio -> (mono float32 samples ``[n]``, checked sample rate in Hz).

    ``pcm``: numpy array or torch tensor ``[n]`` or channels-first ``[C, n]``; float in [-1, 1] or
    int8/int16/int32/uint8 PCM. Non-finite samples raise an error naming ``argument``.
    """
    rate = _check_sample_rate(sample_rate, argument)
    if not isinstance(pcm, (np.ndarray, torch.Tensor)):
        raise input_error(argument, f"expected a numpy array or torch tensor, got {type(pcm).__name__}",
                          "pass PCM samples as an array with sample_rate", kind=TypeError)
    samples = _array_to_mono(_array_to_float(pcm, argument), argument)
    if samples.size and not np.isfinite(samples).all():
        raise input_error(argument, "the block contains NaN or infinite samples", "pass finite samples")
    return np.ascontiguousarray(samples, dtype=np.float32), rate


class _MonoTo16k:
    """Mono blocks at the source rate in, 16 kHz float32 out: the streaming half of ``load_audio``.

    Resampling is libswresample's (``av.AudioResampler``), which keeps its filter state between
    blocks, so the result does not depend on the block size, and memory holds one block plus the
    16 kHz output, whatever the source rate or channel count. Keeps what the checks need: the
    source sample count, the peak and whether every sample was finite.
    """

    def __init__(self, rate: int, argument: str, where: str, max_seconds: float):
        self.rate, self.argument, self.where, self.max_seconds = rate, argument, where, max_seconds
        self.limit = int(max_seconds * rate)  # source samples allowed
        self.samples, self.peak, self.finite = 0, 0.0, True
        self.pieces: list[np.ndarray] = []
        self._resampler = BlockResampler(rate)

    def add(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        self.samples += block.size
        if self.samples > self.limit:
            raise input_error(self.argument, f"{self.where} lasts more than the {self.max_seconds:g} s allowed",
                              "split the audio into shorter parts")
        low, high = float(np.min(block)), float(np.max(block))  # NaN propagates through min/max
        if math.isfinite(low) and math.isfinite(high):
            self.peak = max(self.peak, high, -low)
        else:
            self.finite = False
        self.pieces.append(self._resampler.add(block))

    def finish(self) -> np.ndarray:
        if self.samples:
            self.pieces.append(self._resampler.flush())
        waveform = np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)
        self.pieces = []
        return waveform


def _block_frames(channels: int) -> int:
    """Frames per decoded block: ``BLOCK_SAMPLES`` samples over all channels (at least one frame)."""
    return max(1, BLOCK_SAMPLES // max(1, channels))


def _read_soundfile(path: Path, argument: str, max_seconds: float) -> _MonoTo16k | None:
    """Decode with libsndfile block by block, mixing each block to mono (channel mean)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # not something libsndfile understands: let PyAV try
        return None
    missing = _wav_missing_bytes(path)
    if missing:
        raise input_error(argument, f"{path} is truncated: its header declares {missing} more bytes of audio "
                          "than the file holds", "pass the complete file (re-download or re-export it)")
    problem = _rate_problem(info.samplerate)
    if problem:
        raise input_error(argument, f"{path} is sampled at {info.samplerate} Hz, {problem}",
                          "resample the recording, e.g. `ffmpeg -i in.wav -ar 16000 out.wav`")
    if info.frames / info.samplerate > max_seconds:  # from the header, before decoding anything
        raise input_error(argument, f"{path} lasts {info.frames / info.samplerate:.1f} s, more than the "
                          f"{max_seconds:g} s allowed", "split the audio into shorter parts")
    stream = _MonoTo16k(int(info.samplerate), argument, str(path), max_seconds)
    try:
        with sf.SoundFile(str(path)) as handle:
            frames = _block_frames(handle.channels)
            while True:
                block = handle.read(frames, dtype="float32", always_2d=True)  # [frames, C]
                if not len(block):
                    break
                stream.add(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0])
    except Exception as exc:
        if isinstance(exc, InputError):
            raise
        raise input_error(argument, f"{path} could not be decoded ({type(exc).__name__}: {exc})",
                          "pass an intact wav/flac/ogg/mp3/m4a file") from None
    return stream


def _read_pyav(path: Path, argument: str, max_seconds: float) -> _MonoTo16k:
    """Decode the first audio stream with PyAV frame by frame, each resampled to 16 kHz mono."""
    import av

    try:
        container = av.open(ffmpeg_path(path))
    except Exception as exc:
        raise input_error(argument, f"{path} is not a readable audio file ({type(exc).__name__})",
                          "pass an intact wav/flac/ogg/mp3/m4a/mp4 file") from None
    stream = _MonoTo16k(SAMPLE_RATE, argument, str(path), max_seconds)
    try:
        if not container.streams.audio:
            raise input_error(argument, f"{path} has no audio stream", "pass a file that contains speech audio")
        audio = container.streams.audio[0]
        rate = audio.codec_context.sample_rate or SAMPLE_RATE
        problem = _rate_problem(rate)
        if problem:
            raise input_error(argument, f"{path} is sampled at {rate} Hz, {problem}",
                              "resample the recording, e.g. `ffmpeg -i in.m4a -ar 16000 out.wav`")
        if audio.duration is not None and audio.time_base is not None \
                and float(audio.duration * audio.time_base) > max_seconds + 1:
            raise input_error(argument, f"{path} lasts {float(audio.duration * audio.time_base):.1f} s, more than "
                              f"the {max_seconds:g} s allowed", "split the audio into shorter parts")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio):
            for out in resampler.resample(frame):
                stream.add(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            stream.add(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise input_error(argument, f"{path} could not be decoded ({type(exc).__name__}: {exc})",
                          "pass an intact audio file") from None
    finally:
        container.close()
    return stream


def load_audio(audio, sample_rate: int | None = None, *, argument: str = "audio",
               max_seconds: float = 4 * 3600) -> np.ndarray:
    """Load speech as float32 mono at 16 kHz, shape ``[T]``.

    ``audio``: a path (wav/flac/ogg via soundfile; mp3/m4a/aac/mp4/... via PyAV), or a numpy
    array / torch tensor shaped ``[T]``, ``[C, T]`` (channels first, C <= 16) or ``[1, C, T]``
    (ComfyUI AUDIO waveform) with ``sample_rate`` in Hz (4 kHz..384 kHz, for files and arrays
    alike). int8/int16/int32/uint8 PCM is scaled to [-1, 1]; float audio that peaks above 1 is
    scaled down to peak 1 (with a logged warning when it peaks above ``LOUD_PEAK``). Files are
    decoded in blocks, each mixed to mono and resampled to 16 kHz (``av.AudioResampler``) as it
    arrives, so memory does not depend on the channel count or the source rate; the length limit
    ``max_seconds`` is checked from the header before decoding where the header says it.
    Bad input raises a ``ValueError``/``TypeError`` naming ``argument``.
    """
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
        raise input_error("max_seconds", f"{max_seconds!r} is not a positive number of seconds",
                          "pass e.g. 14400")
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        if str(audio) == "":
            raise input_error(argument, "the path is empty", "pass the path of a speech recording")
        check_input_file(audio, path, argument, "audio")
        if path.is_dir():
            raise input_error(argument, f"{path} is a folder, not an audio file", "pass the path of an audio file")
        stream = _read_soundfile(path, argument, max_seconds) if path.suffix.lower() in _SOUNDFILE_SUFFIXES else None
        if stream is None:
            stream = _read_pyav(path, argument, max_seconds)
        where = str(path)
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        rate = _check_sample_rate(sample_rate, argument)
        waveform = _array_to_mono(_array_to_float(audio, argument), argument)
        where = "the waveform"
        if waveform.size / rate > max_seconds:
            raise input_error(argument, f"{where} lasts {waveform.size / rate:.1f} s, more than the "
                              f"{max_seconds:g} s allowed", "split the audio into shorter parts")
        stream = _MonoTo16k(rate, argument, where, max_seconds)
        for start in range(0, waveform.size, BLOCK_SAMPLES):
            stream.add(waveform[start:start + BLOCK_SAMPLES])
        del waveform
    else:
        raise input_error(argument, f"expected a file path, numpy array or torch tensor, got {type(audio).__name__}",
                          "pass a path to a speech recording, or an array with sample_rate", kind=TypeError)

    if stream.samples == 0:
        raise input_error(argument, f"{where} has no samples", "pass a speech recording")
    seconds = stream.samples / stream.rate
    if seconds < MIN_SECONDS:
        raise input_error(argument, f"{where} lasts {seconds * 1000:.1f} ms, shorter than {MIN_SECONDS * 1000:.0f} ms",
                          "pass a longer speech recording")
    if not stream.finite:
        raise input_error(argument, f"{where} contains NaN or infinite samples", "pass finite samples")
    if stream.peak < SILENCE_PEAK:
        raise input_error(argument, "the audio is silent", "pass a speech recording")
    waveform = stream.finish()
    if stream.peak > 1.0:
        if stream.peak > LOUD_PEAK:
            logger.warning("`%s`: %s peaks at %.3g, far outside the [-1, 1] range of float audio; it was scaled "
                           "down to peak 1 (check the recording's gain or sample format)", argument, where,
                           stream.peak)
        waveform /= np.float32(stream.peak)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _as_waveform(waveform, argument: str = "waveform") -> np.ndarray:
    """A 16 kHz mono waveform (numpy or torch) -> float32 numpy [T], validated."""
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().float().numpy()
    if not isinstance(waveform, np.ndarray):
        raise input_error(argument, f"expected a numpy array or torch tensor, got {type(waveform).__name__}",
                          "pass a 16 kHz mono waveform from load_audio", kind=TypeError)
    if waveform.ndim == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.ndim != 1:
        raise input_error(argument, f"expected a mono waveform [T], got shape {tuple(waveform.shape)}",
                          "pass the output of load_audio")
    if waveform.dtype.kind != "f":
        raise input_error(argument, f"expected float samples, got {waveform.dtype}", "pass the output of load_audio",
                          kind=TypeError)
    if waveform.size < int(MIN_SECONDS * SAMPLE_RATE):
        raise input_error(argument, f"{waveform.size} samples is shorter than {MIN_SECONDS} s at 16 kHz",
                          "pass a longer recording")
    return np.ascontiguousarray(waveform, dtype=np.float32)


# -------------------------------------------------------------------------------------- encoders
class LogMelAudioEncoder(ModelMixin, ConfigMixin):
    """Parameter-free log-mel front end on the 50 Hz feature grid.

    ``forward(waveform [T] at 16 kHz) -> torch.float32 [T // hop_length + 1, 1, n_mels]``;
    frame ``j`` is centred at ``j * hop_length / sample_rate`` s (reflect centre padding). Values
    are ``(max(log10(mel power), -6) + 2) / 1.5`` with fixed constants: O(1) (silence -2.67,
    speech about 0 +- 0.7), and independent of which segment of the audio is encoded. The mel
    filter matrix ``[n_fft // 2 + 1, n_mels]`` is a persistent buffer so
    ``save_pretrained``/``from_pretrained`` round-trip.
    """

    LOG_FLOOR = -6.0  # log10 mel power floor (about -60 dB re full scale)
    LOG_OFFSET = 2.0  # typical speech log10 mel power is about -2
    LOG_SCALE = 1.5  # and spreads about +-1.5 around it

    @register_to_config
    def __init__(self, n_mels: int = 80, n_fft: int = 512, win_length: int = 400, hop_length: int = 320,
                 sample_rate: int = 16000):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        for name, value in (("n_mels", n_mels), ("n_fft", n_fft), ("win_length", win_length),
                            ("hop_length", hop_length), ("sample_rate", sample_rate)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise input_error(name, f"{value!r} is not a positive integer", "use the default")
        if win_length > n_fft:
            raise input_error("win_length", f"{win_length} is longer than n_fft={n_fft}", "use win_length <= n_fft")
        if sample_rate != SAMPLE_RATE or hop_length != HOP_LENGTH:
            raise input_error("hop_length", f"hop {hop_length} at {sample_rate} Hz is not the 50 Hz feature grid",
                              "use hop_length=320 and sample_rate=16000")
        filters = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                                  max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                                  mel_scale="slaney")
        self.register_buffer("mel_filters", torch.from_numpy(filters.astype(np.float32)), persistent=True)

    @property
    def num_layers(self) -> int:
        return 1

    @property
    def feature_dim(self) -> int:
        return int(self.config.n_mels)

    def forward(self, waveform) -> torch.Tensor:
        """``waveform`` [T] (numpy or torch, 16 kHz) -> float32 ``[T // hop + 1, 1, n_mels]``."""
        from transformers.audio_utils import spectrogram, window_function

        samples = _as_waveform(waveform)
        config = self.config
        window = window_function(config.win_length, "hann", frame_length=config.n_fft)
        filters = self.mel_filters.detach().float().cpu().numpy().astype(np.float64)
        log_mel = spectrogram(samples, window, frame_length=config.n_fft, hop_length=config.hop_length,
                              power=2.0, center=True, pad_mode="reflect", mel_filters=filters, mel_floor=1e-10,
                              log_mel="log10", dtype=np.float32)  # [n_mels, T_feat]
        log_mel = (np.maximum(log_mel, self.LOG_FLOOR) + self.LOG_OFFSET) / self.LOG_SCALE
        features = torch.from_numpy(np.ascontiguousarray(log_mel.T)).unsqueeze(1)
        return features.to(self.mel_filters.device)


def _is_hf_audio_model(encoder) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(encoder, PreTrainedModel)


def encoder_dims(audio_encoder) -> tuple[int, int]:
    """``(num_layers L, feature_dim D)`` of the features ``encode_audio`` returns for this encoder."""
    if isinstance(audio_encoder, LogMelAudioEncoder):
        return audio_encoder.num_layers, audio_encoder.feature_dim
    if _is_hf_audio_model(audio_encoder):
        config = audio_encoder.config
        return int(config.num_hidden_layers) + 1, int(config.hidden_size)
    raise input_error("audio_encoder", f"{type(audio_encoder).__name__} is not a supported audio encoder",
                      "pass a LogMelAudioEncoder or a transformers Wav2Vec2Model", kind=TypeError)


def _conv_geometry(model) -> tuple[int, int]:
    """Receptive field and stride (samples) of a wav2vec2-family convolutional feature encoder."""
    config = model.config
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not kernels or not strides:
        raise input_error("audio_encoder", f"{type(model).__name__} has no wav2vec2-style conv_kernel/conv_stride",
                          "pass a Wav2Vec2Model (or HuBERT/WavLM-style model)", kind=TypeError)
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (int(kernel) - 1) * jump
        jump *= int(stride)
    if jump != HOP_LENGTH:
        raise input_error("audio_encoder", f"its total conv stride is {jump} samples, not {HOP_LENGTH}",
                          "use a wav2vec2-family model with 50 feature frames per second")
    return field, jump


def _encode_hf(model, samples: np.ndarray, feature_extractor) -> torch.Tensor:
    """All hidden states of a wav2vec2-family model, centred on the 320-sample grid: [T//320+1, L, D]."""
    if feature_extractor is None:
        raise input_error("feature_extractor", "a transformers audio model needs its feature extractor",
                          "pass the Wav2Vec2FeatureExtractor saved with the model")
    field, _ = _conv_geometry(model)
    inputs = feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    values = inputs["input_values"]
    if values.ndim == 1:
        values = values[None]
    pad = field // 2  # centre frame j on sample j * 320, giving T // 320 + 1 frames
    values = torch.nn.functional.pad(values.float(), (pad, field - pad))
    parameter = next(model.parameters())
    with torch.no_grad():
        output = model(values.to(device=parameter.device, dtype=parameter.dtype), output_hidden_states=True)
    hidden = torch.stack([h[0] for h in output.hidden_states], dim=1)  # [n, L, D]
    return hidden.float().cpu()


def _encode_samples(audio_encoder, samples: np.ndarray, feature_extractor) -> torch.Tensor:
    """One call of the encoder on ``samples``, padded/trimmed to ``len // 320 + 1`` frames: [n, L, D]."""
    if isinstance(audio_encoder, LogMelAudioEncoder):
        with torch.no_grad():
            features = audio_encoder(samples).float().cpu()
    elif _is_hf_audio_model(audio_encoder):
        features = _encode_hf(audio_encoder, samples, feature_extractor)
    else:
        encoder_dims(audio_encoder)  # raises the TypeError
        raise AssertionError  # pragma: no cover
    frames = num_feature_frames(samples.size)
    if features.shape[0] > frames:
        features = features[:frames]
    elif features.shape[0] < frames:
        features = torch.cat([features, features.new_zeros(frames - features.shape[0], *features.shape[1:])])
    return features


def encode_span(audio_encoder, samples: np.ndarray, feature_extractor=None) -> torch.Tensor:
    """Features of one stretch of 16 kHz audio as it stands, edges padded like a whole recording:
    float32 ``[len // 320 + 1, L, D]`` (live mode encodes the audio around each chunk with it)."""
    return _encode_samples(audio_encoder, np.ascontiguousarray(samples, dtype=np.float32), feature_extractor)


def silence_features(audio_encoder, feature_extractor=None) -> torch.Tensor:
    """The encoder's features for digital silence, ``[L, D]`` (what a closed mouth is conditioned on)."""
    features = encode_span(audio_encoder, np.zeros(SAMPLE_RATE, np.float32), feature_extractor)
    return features[features.shape[0] // 2].clone()


def _encode_range(audio_encoder, samples: np.ndarray, start: int, stop: int, feature_extractor,
                  segment_frames: int, context_frames: int) -> torch.Tensor:
    """Features ``[stop - start, L, D]`` for feature frames ``start..stop-1`` of the whole waveform.

    Encodes pieces of ``segment_frames`` frames, each with ``context_frames`` frames of audio on
    both sides, and keeps only the centre, so memory and attention cost stay bounded. For the
    log-mel encoder the result equals encoding the whole waveform at once.
    """
    total = num_feature_frames(samples.size)
    context_frames = max(int(context_frames), 2)
    pieces = []
    for a in range(start, stop, segment_frames):
        b = min(a + segment_frames, stop)
        lo = max(0, (a - context_frames) * HOP_LENGTH)
        hi = min(samples.size, (b + context_frames) * HOP_LENGTH)
        if b + context_frames >= total:
            hi = samples.size  # the true end: same edge padding as the whole waveform
        span = _encode_samples(audio_encoder, samples[lo:hi], feature_extractor)
        first = a - lo // HOP_LENGTH
        pieces.append(span[first: first + (b - a)])
    return torch.cat(pieces) if pieces else torch.zeros(0, *encoder_dims(audio_encoder))


def encode_audio(audio_encoder, waveform, feature_extractor=None, *, segment_seconds: float = 20.0,
                 context_seconds: float = 1.0) -> torch.Tensor:
    """Whole-audio features: 16 kHz mono ``waveform`` [T] -> float32 CPU ``[T // 320 + 1, L, D]``.

    ``LogMelAudioEncoder``: L = 1, D = n_mels. A transformers wav2vec2-family model (with its
    ``feature_extractor``): all hidden states stacked, L = num_hidden_layers + 1, D = hidden_size,
    run on the model's device/dtype. Long audio is encoded in ``segment_seconds`` pieces with
    ``context_seconds`` of context on each side, keeping only the centre of each.
    """
    encoder_dims(audio_encoder)
    samples = _as_waveform(waveform)
    segment_frames, context_frames = _segment_frames(segment_seconds, context_seconds)
    return _encode_range(audio_encoder, samples, 0, num_feature_frames(samples.size), feature_extractor,
                         segment_frames, context_frames)


def _segment_frames(segment_seconds, context_seconds) -> tuple[int, int]:
    for name, value, low in (("segment_seconds", segment_seconds, 0.5), ("context_seconds", context_seconds, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= 600:
            raise input_error(name, f"{value!r} is invalid", f"pass a number of seconds in [{low}, 600]")
    return int(round(segment_seconds * FEATURE_RATE)), int(round(context_seconds * FEATURE_RATE))


# --------------------------------------------------------------------------- per-frame windows
class FrameAudioFeatures:
    """Audio feature windows per video frame, computed lazily segment by segment.

    Video frame ``i`` is centred at ``i / fps`` s, i.e. feature frame ``c = round(i * 50 / fps)``
    (half up); its window is feature frames ``c - window // 2 .. c + window // 2`` (zeros outside
    the audio). ``windows(start, n)`` returns float32 ``[n, window, L, D]``. Only the audio segment
    a call needs (plus ``context_seconds`` each side) is encoded; the last segment is cached, so
    walking a long recording chunk by chunk keeps memory constant.

    Attributes: ``waveform`` (float32 [T], 16 kHz), ``num_frames = round(T / 16000 * fps)``,
    ``duration_s``, ``fps``, ``window``, ``num_layers`` (L), ``feature_dim`` (D),
    ``num_features = T // 320 + 1``.
    """

    def __init__(self, audio_encoder, waveform, fps: float, window: int = 5, feature_extractor=None,
                 segment_seconds: float = 10.0, context_seconds: float = 1.0):
        self.num_layers, self.feature_dim = encoder_dims(audio_encoder)
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(fps)) or not 0 < float(fps) <= 120:
            raise input_error("fps", f"{fps!r} is not a frame rate", "pass a number in (0, 120]")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0 \
                or window > 101:
            raise input_error("window", f"{window!r} is not an odd positive window length", "pass e.g. 5")
        if _is_hf_audio_model(audio_encoder):
            _conv_geometry(audio_encoder)
            if feature_extractor is None:
                raise input_error("feature_extractor", "a transformers audio model needs its feature extractor",
                                  "pass the Wav2Vec2FeatureExtractor saved with the model")
        self.segment_frames, self.context_frames = _segment_frames(segment_seconds, context_seconds)
        self.audio_encoder = audio_encoder
        self.feature_extractor = feature_extractor
        self.waveform = _as_waveform(waveform)
        self.fps = float(fps)
        self.window = int(window)
        self.duration_s = self.waveform.size / SAMPLE_RATE
        self.num_frames = int(round(self.duration_s * self.fps))
        if self.num_frames < 1:
            raise input_error("audio", f"{self.duration_s * 1000:.0f} ms of audio at {self.fps:g} fps gives no video "
                              "frame (frames = round(duration x fps))", "pass a longer recording or a higher fps")
        self.num_features = num_feature_frames(self.waveform.size)
        self._cache_start = 0
        self._cache = torch.zeros(0, self.num_layers, self.feature_dim)

    def __repr__(self) -> str:
        return (f"FrameAudioFeatures(num_frames={self.num_frames}, fps={self.fps:g}, duration_s={self.duration_s:.3f}, "
                f"window={self.window}, layers={self.num_layers}, dim={self.feature_dim})")

    def __len__(self) -> int:
        return self.num_frames

    def feature_index(self, frames) -> np.ndarray:
        """Centre feature frame of each video frame index (int64 array)."""
        return audio_frame_centres(frames, self.fps, FEATURE_RATE)

    def _features(self, start: int, stop: int) -> torch.Tensor:
        """Features for feature frames [start, stop) (inside the audio), from the cached segment.

        Segments are encoded on a fixed grid (multiples of ``segment_frames``, as
        :func:`encode_audio` does), so every feature frame has the same value whatever was asked
        before: a render resumed at chunk k gets exactly the features an uninterrupted one got.
        The cache keeps ``start`` .. the end of the last grid segment (at most
        ``stop - start + segment_frames`` frames).
        """
        cached_stop = self._cache_start + self._cache.shape[0]
        if not (self._cache_start <= start and stop <= cached_stop):
            seg = self.segment_frames
            first = (start // seg) * seg
            end = min(self.num_features, -(-stop // seg) * seg)
            encoded = _encode_range(self.audio_encoder, self.waveform, first, end, self.feature_extractor,
                                    seg, self.context_frames)
            self._cache = encoded[start - first:].clone()
            self._cache_start = start
        return self._cache[start - self._cache_start: stop - self._cache_start]

    def windows(self, start_frame: int, num_frames: int) -> torch.Tensor:
        """Windows for video frames ``start_frame .. start_frame + num_frames - 1``: float32 ``[n, W, L, D]``.

        Frames past the end of the audio get zero windows.
        """
        for name, value in (("start_frame", start_frame), ("num_frames", num_frames)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise input_error(name, f"expected an integer, got {type(value).__name__}", "pass an int",
                                  kind=TypeError)
            if value < 0:
                raise input_error(name, f"{value} is negative", "pass a value >= 0")
        start_frame, num_frames = int(start_frame), int(num_frames)
        out = torch.zeros(num_frames, self.window, self.num_layers, self.feature_dim)
        if num_frames == 0:
            return out
        index = audio_window_index(start_frame, num_frames, self.fps, self.window, FEATURE_RATE)  # [n, W]
        valid = (index >= 0) & (index < self.num_features)
        if valid.any():
            lo, hi = int(index[valid].min()), int(index[valid].max()) + 1
            features = self._features(lo, hi)
            out[torch.from_numpy(valid)] = features[torch.from_numpy(index[valid] - lo)]
        return out
