"""Streaming atomic video writer and exact readers (PyAV)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from asymk_talker.asymk_core.errors import InputError
from asymk_talker.asymk_core.video_io import VideoWriter, probe_video, read_video

AAC_FRAME_S = 1024 / 16000  # one AAC frame at 16 kHz: 0.064 s


def expect_error(kind, name, call, /, *args, **kwargs):
    """The call raises ``kind`` (an InputError) whose message names the argument ``name``."""
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, kind) and isinstance(info.value, InputError), repr(info.value)
    assert f"`{name}`" in str(info.value) and "Fix:" in str(info.value)
    return info.value


def smooth_frames(count: int, height: int = 48, width: int = 64, start: int = 0) -> np.ndarray:
    """Smooth moving gradients, uint8 [count, H, W, 3] (codec-friendly, so round trips are close)."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(start, start + count):
        r = 128 + 100 * np.sin(2 * np.pi * (xx / width + i / 25))
        g = 128 + 100 * np.cos(2 * np.pi * (yy / height - i / 30))
        frames.append(np.stack([r, g, np.full_like(r, 90.0)], -1))
    return np.stack(frames).astype(np.uint8)


def speech_tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_round_trip_exact_frame_count_and_audio_length(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = smooth_frames(37)
    with VideoWriter(path, 25, 64, 48, audio=speech_tone(1.48)) as writer:
        writer.write(frames)
        assert writer.frames_written == 37
    decoded, fps, audio, rate = read_video(path)
    assert decoded.shape == (37, 48, 64, 3) and decoded.dtype == np.uint8
    assert fps == pytest.approx(25)
    assert np.abs(decoded.astype(float) - frames).mean() < 6
    assert rate == 16000 and audio.dtype == np.float32
    assert abs(audio.size / rate - 37 / 25) <= AAC_FRAME_S
    assert 0.15 < np.abs(audio).max() < 0.45
    info = probe_video(path)
    assert info["num_frames"] == 37 and info["width"] == 64 and info["height"] == 48 and info["has_audio"]
    assert info["duration_s"] == pytest.approx(1.48)
    assert abs(info["audio_duration_s"] - info["duration_s"]) <= AAC_FRAME_S
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


@pytest.mark.parametrize("suffix,fps,audio_seconds", [(".mkv", 29.97, 0.3), (".mov", 12.5, 9.0),
                                                       (".mp4", 30000 / 1001, None)])
def test_streaming_chunks_pad_and_trim_audio(tmp_path, suffix, fps, audio_seconds):
    path = tmp_path / f"stream{suffix}"
    audio = None if audio_seconds is None else speech_tone(audio_seconds, 22050)
    with VideoWriter(path, fps, 32, 32, audio=audio, audio_sample_rate=22050) as writer:
        for start in range(0, 41, 8):
            writer.write(smooth_frames(min(8, 41 - start), 32, 32, start).astype(np.float32) / 255)
            names = os.listdir(tmp_path)  # the encoder may buffer before the file is created
            assert not path.exists() and len(names) <= 2 and all(".partial-" in name for name in names)  # + its .pid
    assert writer.frames_written == 41 and os.listdir(tmp_path) == [path.name]
    info = probe_video(path)
    assert info["num_frames"] == 41 and info["fps"] == pytest.approx(fps, rel=1e-4)
    if audio is None:
        assert not info["has_audio"] and info["audio_duration_s"] is None
    else:
        assert info["audio_sample_rate"] == 22050
        assert abs(info["audio_duration_s"] - 41 / fps) <= 1024 / 22050  # padded or trimmed to the video


def test_torch_frames_single_frames_and_nonstandard_audio_rate(tmp_path):
    path = tmp_path / "t.mp4"
    with VideoWriter(path, 24, 32, 32, audio=torch.from_numpy(speech_tone(1.0, 15000)),
                     audio_sample_rate=15000) as writer:
        writer.write(torch.from_numpy(smooth_frames(5, 32, 32)))
        writer.write(torch.from_numpy(smooth_frames(1, 32, 32)[0]).float() / 255)  # one [H, W, 3] frame
    info = probe_video(path)
    assert info["num_frames"] == 6 and info["has_audio"]
    assert abs(info["audio_duration_s"] - 6 / 24) <= 1024 / 48000 + 1e-9


def test_mpeg4_codec(tmp_path):
    path = tmp_path / "m.mp4"
    with VideoWriter(path, 25, 32, 32, codec="mpeg4") as writer:
        writer.write(smooth_frames(10, 32, 32))
    assert probe_video(path)["num_frames"] == 10


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 25, 32, 32, audio=speech_tone(1.0)) as writer:
            writer.write(smooth_frames(12, 32, 32))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        with VideoWriter(path, 25, 32, 32) as writer:
            writer.write(smooth_frames(3, 32, 32))
            writer.write(np.zeros((2, 30, 32, 3), np.uint8))  # wrong size inside the block
    assert os.listdir(tmp_path) == []
    writer = VideoWriter(path, 25, 32, 32)
    writer.write(smooth_frames(3, 32, 32))
    writer.abort()
    assert os.listdir(tmp_path) == []
    expect_error(ValueError, "frames", writer.write, smooth_frames(1, 32, 32))  # closed
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(path, 25, 32, 32):
            pass
    assert os.listdir(tmp_path) == []


def test_existing_output_is_replaced_only_on_success(tmp_path):
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"old")
    with pytest.raises(KeyError):
        with VideoWriter(path, 25, 32, 32) as writer:
            writer.write(smooth_frames(2, 32, 32))
            raise KeyError("stop")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["keep.mp4"]
    with VideoWriter(path, 25, 32, 32) as writer:
        writer.write(smooth_frames(2, 32, 32))
    assert probe_video(path)["num_frames"] == 2


def test_bad_paths_and_settings(tmp_path):
    frames_ok = dict(fps=25, width=32, height=32)
    expect_error(ValueError, "output", VideoWriter, tmp_path / "missing" / "a.mp4", **frames_ok)
    expect_error(ValueError, "output", VideoWriter, tmp_path / "a.avi", **frames_ok)
    expect_error(ValueError, "--output", VideoWriter, tmp_path / "noext", **frames_ok, argument="--output")
    (tmp_path / "dir.mp4").mkdir()
    expect_error(ValueError, "output", VideoWriter, tmp_path / "dir.mp4", **frames_ok)
    expect_error(ValueError, "output", VideoWriter, "", **frames_ok)
    expect_error(TypeError, "output", VideoWriter, 123, **frames_ok)
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        expect_error(ValueError, "output", VideoWriter, locked / "a.mp4", **frames_ok)
    target = tmp_path / "b.mp4"
    expect_error(ValueError, "width", VideoWriter, target, 25, 33, 32)
    expect_error(ValueError, "height", VideoWriter, target, 25, 32, 31)
    expect_error(ValueError, "fps", VideoWriter, target, 0, 32, 32)
    expect_error(ValueError, "fps", VideoWriter, target, 121, 32, 32)
    expect_error(TypeError, "width", VideoWriter, target, 25, 32.0, 32)
    expect_error(ValueError, "crf", VideoWriter, target, 25, 32, 32, crf=60)
    expect_error(ValueError, "codec", VideoWriter, target, 25, 32, 32, codec="no-such-codec")
    expect_error(ValueError, "audio", VideoWriter, target, 25, 32, 32, audio=np.zeros((2, 100), np.float32))
    expect_error(TypeError, "audio", VideoWriter, target, 25, 32, 32, audio=[0.0, 0.1])
    expect_error(ValueError, "audio", VideoWriter, target, 25, 32, 32, audio=np.full(100, np.nan, np.float32))
    expect_error(ValueError, "audio_sample_rate", VideoWriter, target, 25, 32, 32, audio=speech_tone(0.1),
                 audio_sample_rate=1000)
    assert sorted(os.listdir(tmp_path)) == ["dir.mp4"] + (["locked"] if os.geteuid() != 0 else [])


def test_wrong_frames_are_refused(tmp_path):
    path = tmp_path / "f.mp4"
    writer = VideoWriter(path, 25, 32, 32)
    expect_error(ValueError, "frames", writer.write, np.zeros((2, 32, 30, 3), np.uint8))
    expect_error(ValueError, "frames", writer.write, np.zeros((2, 3, 32, 32), np.uint8))
    expect_error(ValueError, "frames", writer.write, np.zeros((2, 32, 32, 4), np.uint8))
    expect_error(ValueError, "frames", writer.write, np.zeros((32, 32), np.uint8))
    expect_error(TypeError, "frames", writer.write, np.zeros((2, 32, 32, 3), np.int16))
    expect_error(TypeError, "frames", writer.write, [[0]])
    nan = np.zeros((1, 32, 32, 3), np.float32)
    nan[0, 1, 1, 1] = np.nan
    expect_error(ValueError, "frames", writer.write, nan)
    expect_error(ValueError, "frames", writer.write, np.full((1, 32, 32, 3), 255.0, np.float32))
    expect_error(ValueError, "frames", writer.write, torch.full((1, 32, 32, 3), -1.0))
    writer.write(np.zeros((1, 32, 32, 3), np.float32))
    writer.close()
    assert probe_video(path)["num_frames"] == 1


def test_reader_errors(tmp_path):
    expect_error(ValueError, "path", read_video, tmp_path / "missing.mp4")
    expect_error(ValueError, "path", probe_video, tmp_path)
    (tmp_path / "junk.mp4").write_bytes(b"definitely not a video" * 20)
    expect_error(ValueError, "path", read_video, tmp_path / "junk.mp4")
    expect_error(ValueError, "path", probe_video, tmp_path / "junk.mp4")
    expect_error(TypeError, "path", probe_video, None)


WRITER_PROCESS = """
import sys
import numpy as np
from asymk_talker.asymk_core.video_io import VideoWriter
writer = VideoWriter(sys.argv[1], 25, 64, 48)
writer.write(np.zeros((2, 48, 64, 3), np.uint8))
print(writer.partial_path, flush=True)
sys.stdin.readline()  # until told to finish
writer.write(np.full((1, 48, 64, 3), 200, np.uint8))
writer.close()
"""


def test_partials_of_dead_writers_are_removed_by_the_next_writer_and_live_ones_kept(tmp_path):
    """Real processes: one writer is SIGKILLed mid-file, one is still writing. The next writer of
    the same output deletes the dead one's partial and owner record, keeps the live one's (and a
    partial from an older version, which names no owner), and the live writer still finishes."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from asymk_talker.asymk_core.locks import lock_holder

    output = tmp_path / "out.mp4"

    def start_writer():
        process = subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(output)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return process, Path(process.stdout.readline().strip())

    live, live_partial = start_writer()
    dead, dead_partial = start_writer()
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=60)
    legacy = tmp_path / "out.partial-0badc0de.mp4"
    legacy.write_bytes(b"left by an older version")
    try:
        assert dead_partial.exists() and dead_partial.with_suffix(".pid").exists()
        assert lock_holder(live_partial.with_suffix(".pid")) == f"PID {live.pid}"
        assert str(live.pid) not in live_partial.name and live_partial.name != dead_partial.name

        with VideoWriter(output, 25, 64, 48) as writer:
            writer.write(smooth_frames(3))
        assert not dead_partial.exists() and not dead_partial.with_suffix(".pid").exists()
        assert live_partial.exists() and live_partial.with_suffix(".pid").exists() and legacy.exists()
        assert probe_video(output)["num_frames"] == 3

        live.communicate("finish\n", timeout=60)
    finally:
        live.kill()
        live.wait(timeout=60)
    assert live.returncode == 0 and probe_video(output)["num_frames"] == 3  # the live writer's video
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.name, legacy.name])


def test_two_writers_of_one_output_in_one_process_keep_their_own_partials(tmp_path):
    output = tmp_path / "out.mp4"
    first = VideoWriter(output, 25, 64, 48)
    second = VideoWriter(output, 25, 64, 48)  # its clean-up must not take the first one for abandoned
    assert first.partial_path != second.partial_path
    assert first.partial_path.exists() and second.partial_path.exists()
    first.write(smooth_frames(2))
    second.write(smooth_frames(4))
    first.close()
    second.abort()
    assert probe_video(output)["num_frames"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


def test_names_that_look_like_ffmpeg_protocols_are_plain_files(tmp_path, monkeypatch):
    """``pipe:1.mp4`` is a file in the current folder, never FFmpeg's stdout; ``pipe:0.m4a`` is read
    from the file, never from stdin."""
    from asymk_talker.asymk_core.audio import load_audio
    from test_audio import write_pyav

    monkeypatch.chdir(tmp_path)
    speech = (0.5 * np.sin(np.linspace(0, 400 * np.pi, 16000))).astype(np.float32)
    write_pyav(tmp_path / "pipe:0.m4a", speech, 16000, "aac")
    assert load_audio("pipe:0.m4a").size > 15000
    frames = np.full((8, 32, 32, 3), 0.5, np.float32)
    with VideoWriter("pipe:1.mp4", 25.0, 32, 32) as writer:
        writer.write(frames)
    assert (tmp_path / "pipe:1.mp4").stat().st_size > 0
    assert read_video(tmp_path / "pipe:1.mp4")[0].shape[0] == 8
