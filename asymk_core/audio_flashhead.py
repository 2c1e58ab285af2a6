"""Audio features in SoulX-FlashHead's layout: wav2vec2 states at the video frame rate, windows per frame.

wav2vec2's convolutional features (50 per second) are linearly resampled to one per video frame
(``align_corners=True`` over the stretch of audio encoded), then run through its transformer; the
outputs of its first ``L`` transformer layers (``hidden_states[1:]``: the embedding output is
skipped) make ``[n, L, D]``.
Video frame ``i`` sees the ``window`` frames ``i - window // 2 .. i + window // 2``, clamped to the
audio (frames past either end repeat the first / last). Recordings longer than ``segment_seconds``
are encoded in pieces with ``context_seconds`` of audio on both sides, keeping the centre; shorter
ones in one piece, as FlashHead's offline mode does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .audio import HOP_LENGTH, SAMPLE_RATE, _as_waveform
from .errors import input_error


def uses_flashhead_audio(transformer) -> bool:
    """Whether ``transformer`` takes audio in FlashHead's layout (``audio_projector="flashhead"``: video-rate
    wav2vec2 states over whole decoded windows) rather than this project's per-frame windows."""
    return transformer.config.get("audio_projector", "windows") == "flashhead"


def encoder_layer_outputs(encoder, hidden: torch.Tensor) -> list[torch.Tensor]:
    """Outputs ``[B, n, D]`` of every layer of a wav2vec2 encoder run on ``hidden`` (its
    ``hidden_states[1:]``), read with forward hooks, which works whether or not the installed
    transformers returns hidden states from the encoder itself."""
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda module, args, output: outputs.append(
        output[0] if isinstance(output, tuple) else output)) for layer in encoder.layers]
    try:
        encoder(hidden)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


class FlashHeadAudioFeatures:
    """Per-video-frame windows ``[n, window, L, D]`` (float32) for FlashHead-layout transformers.

    Same interface as :class:`asymk_core.audio.FrameAudioFeatures` (``windows``, ``num_frames``,
    ``fps``, ``duration_s``); ``num_frames = round(T / 16000 * fps)``.
    """

    def __init__(self, audio_encoder, waveform, fps: float, window: int = 5, feature_extractor=None,
                 num_layers: int = 12, segment_seconds: float = 20.0, context_seconds: float = 2.0):
        if feature_extractor is None or not hasattr(audio_encoder, "feature_projection"):
            raise input_error("audio_encoder", "FlashHead-layout features need a wav2vec2 model and its feature "
                              "extractor", "use the pipeline's Wav2Vec2Model and Wav2Vec2FeatureExtractor")
        if not 1 <= num_layers <= int(audio_encoder.config.num_hidden_layers):
            raise input_error("num_layers", f"{num_layers} is not in 1..{audio_encoder.config.num_hidden_layers}",
                              "use the transformer's audio_layers")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < float(fps) <= 120:
            raise input_error("fps", f"{fps!r} is not a frame rate", "pass a number in (0, 120]")
        self.audio_encoder, self.feature_extractor = audio_encoder, feature_extractor
        self.waveform = _as_waveform(waveform)
        self.fps, self.window, self.num_layers = float(fps), int(window), int(num_layers)
        self.feature_dim = int(audio_encoder.config.hidden_size)
        self.duration_s = self.waveform.size / SAMPLE_RATE
        self.num_frames = int(round(self.duration_s * self.fps))
        if self.num_frames < 1:
            raise input_error("audio", f"{self.duration_s * 1000:.0f} ms of audio gives no video frame",
                              "pass a longer recording")
        self.segment_frames = max(1, int(round(segment_seconds * self.fps)))
        self.context_frames = max(0, int(round(context_seconds * self.fps)))
        self._segments: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.num_frames

    def _encode(self, first: int, stop: int) -> torch.Tensor:
        """States ``[stop - first, L, D]`` for video frames ``first .. stop - 1`` encoded as one stretch."""
        model = self.audio_encoder
        lo = int(round(first * SAMPLE_RATE / self.fps))
        hi = self.waveform.size if stop >= self.num_frames else int(round(stop * SAMPLE_RATE / self.fps))
        values = self.feature_extractor(self.waveform[lo:hi], sampling_rate=SAMPLE_RATE,
                                        return_tensors="pt")["input_values"]
        parameter = next(model.parameters())
        values = values.reshape(1, -1).to(device=parameter.device, dtype=parameter.dtype)
        with torch.no_grad():
            conv = model.feature_extractor(values)  # [1, 512, T']
            conv = torch.nn.functional.interpolate(conv, size=stop - first, mode="linear", align_corners=True)
            hidden, _ = model.feature_projection(conv.transpose(1, 2))
            states = encoder_layer_outputs(model.encoder, hidden)
        return torch.stack(states[: self.num_layers], dim=2)[0].float().cpu()

    def _features(self, frame: int) -> torch.Tensor:
        """``(segment start, states [s, L, D])`` of the segment holding video frame ``frame``."""
        if self.num_frames <= self.segment_frames:
            if 0 not in self._segments:
                self._segments = {0: self._encode(0, self.num_frames)}
            return 0, self._segments[0]
        start = (frame // self.segment_frames) * self.segment_frames
        if start not in self._segments:
            stop = min(start + self.segment_frames, self.num_frames)
            lo, hi = max(0, start - self.context_frames), min(self.num_frames, stop + self.context_frames)
            states = self._encode(lo, hi)[start - lo: stop - lo]
            kept = {k: v for k, v in self._segments.items() if abs(k - start) == self.segment_frames}
            self._segments = {**kept, start: states}  # this segment and a neighbour: constant memory
        return start, self._segments[start]

    def windows(self, start_frame: int, num_frames: int) -> torch.Tensor:
        """Windows for video frames ``start_frame ..``: float32 ``[num_frames, window, L, D]``."""
        if not isinstance(start_frame, (int, np.integer)) or not isinstance(num_frames, (int, np.integer)) \
                or start_frame < 0 or num_frames < 0:
            raise input_error("start_frame", f"({start_frame!r}, {num_frames!r}) are not frame counts",
                              "pass integers >= 0")
        half = self.window // 2
        index = np.arange(start_frame, start_frame + num_frames)[:, None] + np.arange(-half, half + 1)[None]
        index = np.clip(index, 0, self.num_frames - 1)
        out = torch.empty(num_frames, self.window, self.num_layers, self.feature_dim)
        for frame in np.unique(index):
            segment_start, states = self._features(int(frame))
            out[torch.from_numpy(index == frame)] = states[int(frame) - segment_start]
        return out

    @property
    def num_segments(self) -> int:
        return math.ceil(self.num_frames / self.segment_frames)


class FlashHeadLiveWindows:
    """The live timeline's feature layout for FlashHead-layout transformers (the members of
    :class:`asymk_core.live_audio.FeatureWindows`).

    Each request encodes the stretch of the utterance around the frames asked for, with
    ``context_frames`` (20 ms feature frames) of audio on both sides, as :class:`FlashHeadAudioFeatures`
    encodes a recording. The interpolation to the video rate and wav2vec2's attention then see that
    stretch rather than the whole recording, so the windows approximate an offline render's; they
    equal them when the context covers the whole (closed) utterance.
    """

    def __init__(self, audio_encoder, feature_extractor, fps: float, window: int = 5, num_layers: int = 12,
                 context_frames: int = 10):
        self.audio_encoder, self.feature_extractor = audio_encoder, feature_extractor
        self.fps, self.window, self.num_layers = float(fps), int(window), int(num_layers)
        self.context_frames = int(context_frames)
        self.samples_per_frame = SAMPLE_RATE / self.fps
        self.context_video_frames = math.ceil(self.context_frames * HOP_LENGTH / self.samples_per_frame)
        half = self.window // 2
        self.margin_samples = int(math.ceil((half + self.context_video_frames + 1) * self.samples_per_frame))
        self.look_ahead_seconds = half / self.fps + self.context_frames * HOP_LENGTH / SAMPLE_RATE

    def _features(self, waveform: np.ndarray) -> FlashHeadAudioFeatures:
        return FlashHeadAudioFeatures(self.audio_encoder, waveform, self.fps, self.window, self.feature_extractor,
                                      num_layers=self.num_layers, segment_seconds=waveform.size / SAMPLE_RATE + 1.0)

    def silence(self) -> torch.Tensor:
        """States ``[L, D]`` of a frame in the middle of a second of digital silence."""
        features = self._features(np.zeros(SAMPLE_RATE, np.float32))
        return features.windows(features.num_frames // 2, 1)[0, self.window // 2]

    def samples_needed(self, local_frames: int) -> int:
        """Local samples that must have arrived before local frames ``0 .. local_frames - 1`` can be made."""
        frames = local_frames + self.window // 2
        return int(round(frames * self.samples_per_frame)) + self.context_frames * HOP_LENGTH

    def utterance_windows(self, utterance, frames: list[int]) -> torch.Tensor:
        """Windows ``[n, W, L, D]`` of the utterance's local frames ``frames`` (consecutive)."""
        spf, margin = self.samples_per_frame, self.window // 2 + self.context_video_frames
        first = max(frames[0] - margin, 0)
        while first * spf < utterance.base:  # older samples were dropped: start after them
            first += 1
        a = int(round(first * spf))
        total_frames = int(round(utterance.total / SAMPLE_RATE * self.fps))
        stop = frames[-1] + 1 + margin
        b = utterance.total if utterance.closed and stop >= total_frames else min(utterance.total, int(round(stop * spf)))
        b = max(b, a + int(math.ceil(spf)))  # at least one frame (zeros past the pushed end)
        return self._features(utterance.samples(a, b)).windows(frames[0] - first, len(frames))
