"""The `asymk-talker` command: init + generate end to end, and clear failures without output files."""

from __future__ import annotations

import subprocess
import sys

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
