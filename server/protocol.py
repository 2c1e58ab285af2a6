"""The live WebSocket protocol: one ordered socket carries the client's speech and the avatar's
frames with their audio, so each frame and the sound it plays arrive together.

Client -> server
  text   ``{"type": "start", "portrait": "<built-in name>" | "upload"}`` (an upload follows as one
         binary ``IMAGE`` message), then ``{"type": "interrupt"}``, ``{"type": "end"}``.
  binary ``AUDIO``: tag byte 0x01, uint32 sample rate (Hz), then int16 little-endian mono PCM.
  binary ``IMAGE``: tag byte 0x02, then the image file's bytes (PNG, JPEG, WebP).

Server -> client
  text   ``ready`` (fps, width, height, sample_rate, chunk_seconds, latency_seconds), ``stats``
         (about once a second), ``error`` and ``busy`` (``message``: one line for the page), ``ended``.
  binary ``FRAME``: tag 0x10, then :data:`FRAME_HEADER` (frame index, pts in s, speaking flag,
         audio-to-frame latency in ms or -1 when idle, JPEG length), the JPEG, then the frame's audio
         as int16 little-endian PCM at 16 kHz.
"""

from __future__ import annotations

import struct

import numpy as np

AUDIO, IMAGE, FRAME = 0x01, 0x02, 0x10
AUDIO_HEADER = struct.Struct("<I")  # sample rate
FRAME_HEADER = struct.Struct("<IdBfI")  # index, pts, speaking, latency_ms, jpeg bytes


class ProtocolError(ValueError):
    """A client message the server cannot use; its text is shown on the page."""


def to_int16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> int16 little-endian bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def pack_audio(samples: np.ndarray, sample_rate: int) -> bytes:
    """What a client sends: float ``[n]`` at ``sample_rate`` -> an ``AUDIO`` message."""
    return bytes([AUDIO]) + AUDIO_HEADER.pack(int(sample_rate)) + to_int16(samples)


def unpack_audio(message: bytes, max_rate: int = 192_000) -> tuple[np.ndarray, int]:
    """An ``AUDIO`` message -> (int16 samples ``[n]``, sample rate)."""
    if len(message) < 1 + AUDIO_HEADER.size:
        raise ProtocolError("audio message too short: expected a sample rate and int16 PCM")
    (rate,) = AUDIO_HEADER.unpack_from(message, 1)
    if not 8_000 <= rate <= max_rate:
        raise ProtocolError(f"unsupported audio sample rate {rate} Hz: send 8000 to {max_rate} Hz mono PCM")
    payload = memoryview(message)[1 + AUDIO_HEADER.size:]
    if len(payload) % 2:
        raise ProtocolError("audio payload has an odd byte count: send int16 little-endian PCM")
    return np.frombuffer(payload, dtype="<i2").copy(), rate


def pack_frame(index: int, pts: float, speaking: bool, latency_ms: float, jpeg: bytes, audio: np.ndarray) -> bytes:
    """A ``FRAME`` message (``audio``: float samples at 16 kHz)."""
    header = FRAME_HEADER.pack(index, pts, int(speaking), latency_ms, len(jpeg))
    return bytes([FRAME]) + header + jpeg + to_int16(audio)


def unpack_frame(message: bytes) -> dict:
    """A ``FRAME`` message -> ``{index, pts, speaking, latency_ms, jpeg, audio (int16)}``."""
    if not message or message[0] != FRAME:
        raise ProtocolError("not a frame message")
    index, pts, speaking, latency_ms, size = FRAME_HEADER.unpack_from(message, 1)
    start = 1 + FRAME_HEADER.size
    jpeg = bytes(message[start:start + size])
    audio = np.frombuffer(message[start + size:], dtype="<i2")
    return {"index": index, "pts": pts, "speaking": bool(speaking), "latency_ms": latency_ms, "jpeg": jpeg,
            "audio": audio}
