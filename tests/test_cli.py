"""The `asymk-talker` command: init + generate end to end, and clear failures without output files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from asymk_talker.cli.main import main
from asymk_talker.asymk_core.video_io import probe_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init", "--preset", "tiny", "--output", str(folder)]) == 0
    return folder


@pytest.fixture
def inputs(tmp_path, portrait_array, speech):
    image, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    Image.fromarray(portrait_array).save(image)
    sf.write(audio, speech(1.3), 16000)
    return image, audio


def test_init_then_generate_writes_mp4_with_matching_audio(model_dir, inputs, tmp_path):
    image, audio = inputs
    output = tmp_path / "out.mp4"
    code = main(["generate", "--model", str(model_dir), "--image", str(image), "--audio", str(audio),
                 "--output", str(output), "--steps", "2", "--quiet"])
    assert code == 0
    info = probe_video(output)
    assert info["num_frames"] == round(1.3 * 25) and info["fps"] == 25
    assert info["has_audio"] and abs(info["audio_duration_s"] - info["duration_s"]) < 0.07
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_init_refuses_non_empty_folder(model_dir, capsys):
    assert main(["init", "--preset", "tiny", "--output", str(model_dir)]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "mutate, argument",
    [
        (lambda image, audio: ["--audio", str(audio.with_name("missing.wav"))], "--audio"),
        (lambda image, audio: ["--audio", str(image)], "--audio"),
        (lambda image, audio: ["--image", str(audio)], "--image"),
    ],
)
def test_bad_inputs_exit_2_with_one_clear_line_and_no_output(model_dir, inputs, tmp_path, capsys, mutate, argument):
    image, audio = inputs
    output = tmp_path / "out.mp4"
    args = {"--image": str(image), "--audio": str(audio)}
    extra = mutate(image, audio)
    args[extra[0]] = extra[1]
    argv = ["generate", "--model", str(model_dir), "--output", str(output), "--quiet"]
    for key, value in args.items():
        argv += [key, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"`{argument}`" in err and "Traceback" not in err
    assert not output.exists() and not list(tmp_path.glob("*.partial*"))


def test_silent_audio_and_bad_output_path(model_dir, inputs, tmp_path, capsys):
    image, _ = inputs
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["generate", "--model", str(model_dir), "--image", str(image), "--audio", str(silent),
                 "--output", str(tmp_path / "o.mp4"), "--quiet"]) == 2
    assert "silent" in capsys.readouterr().err
    _, audio = inputs
    assert main(["generate", "--model", str(model_dir), "--image", str(image), "--audio", str(audio),
                 "--output", str(tmp_path / "no" / "such" / "dir" / "o.mp4"), "--quiet"]) == 2
    assert "`--output`" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "asymk_talker.cli.main", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "generate" in result.stdout and "init" in result.stdout


def _umask(mask: int) -> int:
    return os.umask(mask)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_init_and_save_pretrained_weights_follow_the_umask(tmp_path, mask, mode):
    """safetensors alone writes 0600; the saved model's weights get 0666 & ~umask like every other file."""
    import stat

    from asymk_talker import AsymKPipeline

    previous = _umask(mask)
    try:
        assert main(["init", "--preset", "tiny", "--output", str(tmp_path / "init")]) == 0
        AsymKPipeline.from_preset("tiny").save_pretrained(tmp_path / "saved")
    finally:
        _umask(previous)
    for folder in ("init", "saved"):
        weights = sorted((tmp_path / folder).rglob("*.safetensors"))
        assert len(weights) == 3
        for path in weights:
            assert stat.S_IMODE(os.stat(path).st_mode) == mode, (path, oct(os.stat(path).st_mode))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not hasattr(os, "fork"),
                    reason="needs root to read the files as another user")
def test_saved_model_is_readable_by_another_user():
    """The ComfyUI-service case: a model saved under the default umask is readable by user `nobody`."""
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="asymk_umask_")
    try:
        os.chmod(root, 0o755)
        previous = _umask(0o022)
        try:
            assert main(["init", "--preset", "tiny", "--output", os.path.join(root, "m")]) == 0
        finally:
            _umask(previous)
        weights = sorted(Path(root, "m").rglob("*.safetensors"))
        assert len(weights) == 3
        child = os.fork()
        if child == 0:  # the other user: drop root, then read every weights file
            status = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                for path in weights:
                    with open(path, "rb") as handle:
                        handle.read(16)
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "user nobody could not read the saved weights"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: not enough memory: you tried "
                                                               "to allocate 68719476736 bytes")])
def test_out_of_memory_mid_render_is_one_line_and_leaves_nothing(model_dir, inputs, tmp_path, monkeypatch, capsys,
                                                                  error):
    from asymk_talker.asymk_core import generation

    real, calls = generation.sample_chunk_teacher, []

    def failing_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "sample_chunk_teacher", failing_on_the_second_chunk)
    image, audio = inputs
    output = tmp_path / "out.mp4"
    code = main(["generate", "--model", str(model_dir), "--image", str(image), "--audio", str(audio),
                 "--output", str(output), "--steps", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "out of memory while rendering 32x32" in err and "Fix: lower --height/--width" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "speech.wav"]  # no output, no partial


def test_a_broken_torchaudio_leaves_the_cli_and_the_library_working(tmp_path):
    """A torchaudio whose import raises (a build for another torch): one warning line, then normal work."""
    site = tmp_path / "site"
    (site / "torchaudio").mkdir(parents=True)
    (site / "torchaudio" / "__init__.py").write_text("raise OSError('libtorchaudio.so: undefined symbol: _ZN3c10')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cli = subprocess.run([sys.executable, "-m", "asymk_talker.cli", "init", "--preset", "tiny", "--output",
                          str(tmp_path / "model")], capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "warning: the installed torchaudio does not import (OSError: libtorchaudio.so" in cli.stderr
    api = subprocess.run([sys.executable, "-c", "from asymk_talker import AsymKPipeline; "
                          f"print(type(AsymKPipeline.from_pretrained({str(tmp_path / 'model')!r})).__name__)"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert api.returncode == 0 and api.stdout.strip() == "AsymKPipeline", api.stderr[-2000:]
    assert "the installed torchaudio does not import" in api.stderr
