"""Resumable long renders (`generate --resume`) and training resume after a real kill.

A render interrupted anywhere (in-process interrupts at chosen points, and a real SIGKILL of a
subprocess at a random point) and rerun with the same command must give an mp4 whose decoded
frames are identical to an uninterrupted resumable render with the same seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from asymk_talker.asymk_core import render_state
from asymk_talker.cli.main import main
from asymk_talker.asymk_core.video_io import VideoWriter, read_video

REPO = Path(__file__).resolve().parents[1]
SECONDS = 2.0  # 50 frames; chunk-frames 1 -> 13 chunks of 4 frames (the last one trimmed to 2)
ARGS = ["--steps", "2", "--chunk-frames", "1", "--seed", "7", "--quiet"]
# Renders compared bit for bit run alike: in-process ones against an in-process reference, and
# subprocesses (this environment) against a subprocess reference. On some CPUs the process's
# thread count and kernel choices change rounding, so the two kinds are never mixed.
RENDER_ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, portrait_array_module, speech_module):
    root = tmp_path_factory.mktemp("resume")
    model = root / "tiny"
    assert main(["init", "--preset", "tiny", "--output", str(model)]) == 0
    image, audio = root / "face.png", root / "speech.wav"
    Image.fromarray(portrait_array_module).save(image)
    sf.write(audio, speech_module(SECONDS), 16000)
    base = ["generate", "--model", str(model), "--image", str(image), "--audio", str(audio), *ARGS]
    references = {}
    for every in (1, 3):
        out = root / f"reference-every{every}.mp4"
        assert main([*base, "--output", str(out), "--resume", "--checkpoint-every", str(every)]) == 0
        references[every] = read_video(out)
    return dict(root=root, model=model, image=image, audio=audio, base=base, references=references)


@pytest.fixture(scope="module")
def subprocess_reference(workspace):
    """The uninterrupted resumable render (checkpoint every chunk) made by the CLI in a subprocess."""
    out = workspace["root"] / "reference-subprocess.mp4"
    arguments = [*workspace["base"], "--output", str(out), "--resume", "--checkpoint-every", "1"]
    result = subprocess.run(cli_command(arguments), capture_output=True, text=True, timeout=600, env=RENDER_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_video(out)


def cli_command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "asymk_talker.cli.main", *arguments]


@pytest.fixture(scope="module")
def portrait_array_module():
    height, width = 48, 40
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, np.full_like(xx, 128.0)], axis=-1)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def speech_module():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import speech_like

    return speech_like


PACED_CLI = """
import sys, time
from asymk_talker.asymk_core.models.transformer import AsymKTransformer
from asymk_talker.cli.main import main
forward = AsymKTransformer.forward
def paced_forward(self, *args, **kwargs):
    time.sleep(0.05)
    return forward(self, *args, **kwargs)
AsymKTransformer.forward = paced_forward
sys.exit(main(sys.argv[1:]))
"""


def assert_same_video(path: Path, reference) -> None:
    frames, fps, audio, rate = read_video(path)
    ref_frames, ref_fps, ref_audio, ref_rate = reference
    assert frames.shape == ref_frames.shape == (round(SECONDS * 25), 32, 32, 3)
    assert np.array_equal(frames, ref_frames), "decoded frames differ from the uninterrupted render"
    assert fps == ref_fps and rate == ref_rate and np.array_equal(audio, ref_audio)


def only_output_left(folder: Path, output: Path) -> None:
    """No progress folder, no partial files: just the output next to the inputs."""
    leftovers = [p.name for p in folder.iterdir() if p != output]
    assert leftovers == [], leftovers


def test_uninterrupted_resumable_render_is_complete_and_cleans_up(workspace):
    frames, fps, audio, rate = workspace["references"][1]
    assert frames.shape[0] == round(SECONDS * 25) and fps == 25
    assert abs(audio.size / rate - frames.shape[0] / fps) <= 1024 / rate  # one AAC frame at most
    assert not list(workspace["root"].glob("*.resume")) and not list(workspace["root"].glob("*partial*"))


class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("where", ["after_checkpoint", "mid_segment", "during_final_remux"])
def test_interrupted_render_resumes_to_identical_video(workspace, tmp_path, monkeypatch, capsys, where):
    output = tmp_path / "out.mp4"
    argv = [*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "3"]
    counts = {"save": 0, "write": 0, "append": 0}
    save_state, write, append = render_state.save_state, VideoWriter.write, VideoWriter.append_segment

    def save_then_stop(folder, state):
        save_state(folder, state)
        counts["save"] += 1
        if where == "after_checkpoint" and counts["save"] == 2:
            raise Interrupt

    def write_then_stop(self, frames):
        write(self, frames)
        counts["write"] += 1
        if where == "mid_segment" and counts["write"] == 8:  # chunk 7 of 13: inside the third segment
            raise Interrupt

    def append_then_stop(self, segment):
        counts["append"] += 1
        if where == "during_final_remux" and counts["append"] == 3:
            raise Interrupt
        return append(self, segment)

    monkeypatch.setattr(render_state, "save_state", save_then_stop)
    monkeypatch.setattr(VideoWriter, "write", write_then_stop)
    monkeypatch.setattr(VideoWriter, "append_segment", append_then_stop)
    assert main(argv) == 130
    assert not output.exists()
    progress = render_state.resume_folder(output)
    saved = json.loads((progress / "state.json").read_text())
    assert saved["next_chunk"] == {"after_checkpoint": 6, "mid_segment": 6, "during_final_remux": 13}[where]
    assert [p.name for p in tmp_path.iterdir()] == [progress.name]  # no partial file next to the output
    capsys.readouterr()

    monkeypatch.undo()
    assert main(argv) == 0
    assert "resumed at chunk" in capsys.readouterr().out
    assert_same_video(output, workspace["references"][3])
    only_output_left(tmp_path, output)


def test_sigkill_at_a_random_point_then_rerun_gives_identical_video(workspace, subprocess_reference, tmp_path):
    """A real kill: the render subprocess is SIGKILLed after its first checkpoint, then rerun."""
    output = tmp_path / "out.mp4"
    arguments = [*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "1"]
    env = RENDER_ENV
    state_file = render_state.resume_folder(output) / "state.json"
    delay = random.Random(1234).uniform(0.0, 0.4)
    # The killed run is paced (>= 50 ms per transformer call, 26 calls) so that on any machine the
    # kill lands mid-render; the rerun below is the plain command.
    process = subprocess.Popen([sys.executable, "-c", PACED_CLI, *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while not state_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state_file.exists(), process.communicate(timeout=60)[1][-2000:] if process.poll() is not None else ""
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not output.exists(), "the render finished before it could be killed; lengthen the audio"
    done = json.loads(state_file.read_text())["next_chunk"]
    assert 1 <= done <= 13

    result = subprocess.run(cli_command(arguments), capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at chunk {done}" in result.stdout or done == 13
    assert_same_video(output, subprocess_reference)
    only_output_left(tmp_path, output)


def test_resume_refuses_progress_made_with_other_settings(workspace, tmp_path, monkeypatch, capsys):
    output = tmp_path / "out.mp4"
    argv = [*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "3"]
    save_state = render_state.save_state

    def stop_after_first(folder, state):
        save_state(folder, state)
        raise Interrupt

    monkeypatch.setattr(render_state, "save_state", stop_after_first)
    assert main(argv) == 130
    monkeypatch.undo()
    capsys.readouterr()
    changed = [a if a != "7" else "8" for a in argv]  # another seed
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "`--resume`" in err and "seed" in err and "delete" in err and "Traceback" not in err
    assert not output.exists()

    (render_state.resume_folder(output) / "state.json").write_text("{ truncated")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "`--resume`" in err and "unreadable" in err and not output.exists()


def test_a_second_run_on_an_output_being_rendered_is_refused_then_takes_over_once_its_holder_dies(
        workspace, subprocess_reference, tmp_path, capsys):
    """Two real processes on one output: while a render runs, another run on its output is refused
    in one line before loading anything (here its --model does not even exist) and touches
    nothing; after the first is SIGKILLed (its lock file stays, but the kernel dropped the lock),
    the same command takes over and resumes to the video of an uninterrupted render."""
    output = tmp_path / "out.mp4"
    arguments = [*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "1"]
    lock_file, state_file = render_state.render_lock_path(output), render_state.resume_folder(output) / "state.json"
    holder = subprocess.Popen([sys.executable, "-c", PACED_CLI, *arguments], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=RENDER_ENV)
    try:
        deadline = time.monotonic() + 300
        while not state_file.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state_file.exists() and holder.poll() is None, holder.stderr.read()[-2000:]
        progress = sorted(p.name for p in render_state.resume_folder(output).iterdir())
        second = [a if a != str(workspace["model"]) else str(tmp_path / "no-such-model") for a in arguments]
        assert main(second) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "`--output`:" in lines[0], lines
        assert f"is already being rendered by PID {holder.pid}" in lines[0] and "Fix:" in lines[0], lines[0]
        assert set(progress) <= set(p.name for p in render_state.resume_folder(output).iterdir())
        holder.send_signal(signal.SIGKILL)
    finally:
        holder.wait(timeout=60)
        holder.stdout.close()
        holder.stderr.close()
    assert holder.returncode == -signal.SIGKILL and not output.exists() and lock_file.exists()
    result = subprocess.run(cli_command(arguments), capture_output=True, text=True, timeout=600, env=RENDER_ENV)
    assert result.returncode == 0 and "resumed at chunk" in result.stdout, result.stderr[-3000:]
    assert_same_video(output, subprocess_reference)
    only_output_left(tmp_path, output)


def test_render_lock_refuses_another_thread_and_is_reentrant_in_its_own(tmp_path):
    import threading

    output = tmp_path / "out.mp4"
    refused = []

    def second_run():
        try:
            with render_state.render_lock(output, "--output"):
                refused.append(None)
        except ValueError as error:
            refused.append(str(error))

    with render_state.render_lock(output, "--output"):
        with render_state.render_lock(output):  # the CLI holds it, then render_resumable takes it again
            pass
        assert render_state.render_lock_path(output).exists()
        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
    assert refused[0] and f"is already being rendered by PID {os.getpid()}" in refused[0], refused
    assert not render_state.render_lock_path(output).exists()


def test_checkpoint_files_are_written_under_temporary_names_of_their_own(tmp_path, monkeypatch):
    renamed = []
    replace = os.replace
    monkeypatch.setattr(render_state.os, "replace", lambda a, b: (renamed.append(Path(a).name), replace(a, b)))
    state = render_state.RenderState(settings={"x": 1}, next_chunk=1, kernel=torch.zeros(1, 4, 1, 2, 2))
    render_state.save_state(tmp_path, state)
    render_state.save_state(tmp_path, state)
    assert len(renamed) == len(set(renamed)) == 4 and all(name.endswith(".tmp") for name in renamed), renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-000001.safetensors", "state.json"]


def _edit_a_weight_in_the_middle_of_a_tensor(weights: Path) -> None:
    """Change one float32 value halfway into the largest tensor (off the 64-value grid a sampled
    digest would read), keeping the file's size and mtime."""
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    name = max((k for k in header if k != "__metadata__"), key=lambda k: np.prod(header[k]["shape"]))
    start, stop = header[name]["data_offsets"]
    assert header[name]["dtype"] == "F32"
    count = (stop - start) // 4
    offset = 8 + header_size + start + 4 * (count // 2 + max(1, count // 64) // 2)
    value = np.frombuffer(bytes(data[offset:offset + 4]), np.float32)[0]
    data[offset:offset + 4] = np.float32(value + 0.5).tobytes()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns == before.st_mtime_ns


def test_resume_refuses_weights_edited_anywhere_and_takes_unchanged_ones_from_the_digest_cache(workspace, tmp_path,
                                                                                               monkeypatch, capsys):
    import shutil

    from asymk_talker.asymk_core import weights_digest

    model = tmp_path / "model"
    shutil.copytree(workspace["model"], model)
    monkeypatch.setattr(weights_digest, "cache_file", lambda: tmp_path / "digests.json")
    monkeypatch.setattr(weights_digest, "SETTLED_SECONDS", 0.0)  # the copy was written just now
    hashed = []
    hash_file = weights_digest.hash_file
    monkeypatch.setattr(weights_digest, "hash_file", lambda path: hashed.append(path.name) or hash_file(path))
    save_state = render_state.save_state

    def save_then_stop(folder, state):
        save_state(folder, state)
        raise Interrupt

    monkeypatch.setattr(render_state, "save_state", save_then_stop)
    output = tmp_path / "out.mp4"
    argv = [*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "3"]
    argv[argv.index(str(workspace["model"]))] = str(model)
    state_file = render_state.resume_folder(output) / "state.json"

    assert main(argv) == 130  # every file hashed once: the weights, configs and scheduler config
    assert sorted(hashed) == sorted(p.name for p in model.rglob("*") if p.is_file() and p.name != "model_index.json")
    hashed.clear()
    assert main(argv) == 130  # unchanged weights: resumed (one more checkpoint), every digest from the cache
    assert hashed == [] and json.loads(state_file.read_text())["next_chunk"] == 6
    saved = state_file.read_text()
    capsys.readouterr()

    _edit_a_weight_in_the_middle_of_a_tensor(model / "transformer" / "diffusion_pytorch_model.safetensors")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`--resume`:" in err[0] and "model weights: a file of the model changed" in err[0], err
    assert hashed == ["diffusion_pytorch_model.safetensors"]  # only the edited file is read again
    assert state_file.read_text() == saved and not output.exists()


def test_model_digest_of_a_pipeline_made_in_python_covers_every_value():
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_preset("tiny")
    before = render_state.model_digest(pipe)
    weight = pipe.transformer.proj_out.weight
    with torch.no_grad():
        weight.view(-1)[weight.numel() // 2 + 1] += 0.5
    assert render_state.model_digest(pipe) != before


def test_checkpoint_every_needs_resume_and_must_be_positive(workspace, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    assert main([*workspace["base"], "--output", str(output), "--checkpoint-every", "2"]) == 2
    assert "`--checkpoint-every`" in capsys.readouterr().err
    assert main([*workspace["base"], "--output", str(output), "--resume", "--checkpoint-every", "0"]) == 2
    assert "`--checkpoint-every`" in capsys.readouterr().err
    assert not output.exists() and not render_state.resume_folder(output).exists()


def test_resumable_render_generates_the_pipeline_frames(workspace, tmp_path, speech_module):
    """The checkpointing loop produces exactly the frames of AsymKPipeline (same seed)."""
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(workspace["model"])
    pipe.set_progress_bar_config(disable=True)
    image, wave = str(workspace["image"]), speech_module(0.9)
    captured = []
    session = pipe.prepare(image, wave, sample_rate=16000, num_inference_steps=2, chunk_frames=1,
                           generator=torch.Generator().manual_seed(3))
    render_state.render_resumable(session, tmp_path / "a.mp4", checkpoint_every=2,
                                  on_chunk=lambda i, n, written, frames: captured.append(frames))
    expected = pipe(image, wave, sample_rate=16000, num_inference_steps=2, chunk_frames=1, output_type="np",
                    generator=torch.Generator().manual_seed(3)).frames
    assert np.array_equal(np.concatenate(captured), expected)


def test_streaming_decoder_state_survives_a_save_load_round_trip(tmp_path):
    from asymk_talker.asymk_core.vae import StreamingDecoder, vae_from_preset

    torch.manual_seed(0)
    vae = vae_from_preset("tiny").eval()
    latents = torch.randn(1, 4, 5, 8, 8)
    whole = StreamingDecoder(vae)
    expected = torch.cat([whole.decode(latents[:, :, :2]), whole.decode(latents[:, :, 2:])], dim=2)
    first = StreamingDecoder(vae)
    head = first.decode(latents[:, :, :2])
    state = render_state.RenderState(settings={"x": 1}, next_chunk=1, decoder_state=first.get_state(),
                                     kernel=latents[:, :, 1:2], generator_state=torch.Generator().get_state())
    render_state.save_state(tmp_path, state)
    loaded = render_state.load_state(tmp_path, {"x": 1})
    second = StreamingDecoder(vae)
    second.set_state(loaded.decoder_state)
    assert torch.equal(torch.cat([head, second.decode(latents[:, :, 2:])], dim=2), expected)
    assert torch.equal(loaded.kernel, latents[:, :, 1:2])
    with pytest.raises(ValueError, match="`resume`.*different settings"):
        render_state.load_state(tmp_path, {"x": 2}, argument="resume")


def test_wav2vec2_features_do_not_depend_on_what_was_asked_before(tmp_path):
    """Audio features are encoded on a fixed segment grid, so a resumed render sees the same ones."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from asymk_talker.asymk_core.audio import FrameAudioFeatures, encode_audio

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            vocab_size=8)
    model = Wav2Vec2Model(config).eval()
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                         return_attention_mask=False)
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(40000) * 0.05) + 0.05 * rng.standard_normal(40000)).astype(np.float32)

    def features():
        return FrameAudioFeatures(model, wave, 25, window=3, feature_extractor=extractor, segment_seconds=0.5,
                                  context_seconds=0.2)

    walked = features()
    in_order = [walked.windows(start, 8) for start in range(0, 56, 8)]
    jumped = features()
    assert torch.equal(jumped.windows(40, 8), in_order[5])  # "resumed" at frame 40
    assert torch.equal(jumped.windows(24, 8), in_order[3])
    whole = encode_audio(model, wave, extractor, segment_seconds=0.5, context_seconds=0.2)
    centre = walked.feature_index(np.arange(8))
    assert torch.equal(in_order[0][:, 1], whole[torch.from_numpy(centre)])


# ------------------------------------------------------------------------------ training resume
def _losses(output_dir: Path) -> dict[int, dict]:
    """Per step, every ``*loss`` value in ``logs/metrics.jsonl`` (later lines win: a resumed run
    re-logs the steps after its checkpoint; a line cut by the kill is skipped)."""
    path = output_dir / "logs" / "metrics.jsonl"
    found: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            found[record["step"]] = {k: v for k, v in record.items() if k.endswith("loss")}
    return found


def _complete_checkpoints(output_dir: Path) -> int:
    return len(list((output_dir / "checkpoints").glob("step-*/progress.json")))


@pytest.mark.parametrize("stage", ["teacher", "akd"])
def test_training_killed_mid_run_resumes_with_the_same_losses(stage, tmp_path):
    """SIGKILL a training run after its second checkpoint; rerunning it (``--resume latest``, the
    default) reproduces exactly the losses of an uninterrupted run for every later step."""
    script = REPO / "train" / f"{stage}.py"
    if not script.is_file():
        pytest.skip(f"train/{stage}.py is not there yet")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO.parent) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    extra: list[str] = []
    if stage == "teacher":
        config = REPO / "train" / "configs" / "synthetic_tiny.yaml"
        extra = ["--set", "validation.render=false", "--validation-every", "0", "--report-to", "none"]
    else:
        from asymk_talker import AsymKPipeline

        config = REPO / "train" / "configs" / "akd_synthetic_tiny.yaml"
        teacher = tmp_path / "teacher"
        AsymKPipeline.from_preset("tiny", seed=0).save_pretrained(teacher)
        extra = ["--teacher", str(teacher), "--ode-warmup-steps", "1"]
    steps = 8  # the kill lands after checkpoint 2: six steps left, so a fast machine cannot finish first
    total = steps + (1 if stage == "akd" else 0)  # AKD counts its ODE warm-up step too

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", f"asymk_talker.train.{stage}", "--config", str(config), "--output-dir",
                str(out), "--max-steps", str(steps), "--checkpoint-every", "1", "--num-threads", "1",
                "--resume", "latest", *extra]

    reference = tmp_path / "reference"
    result = subprocess.run(command(reference), capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _losses(reference)
    assert sorted(expected) == list(range(1, total + 1)) and all(expected.values())

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline and _complete_checkpoints(killed) < 2:
            time.sleep(0.02)
        time.sleep(random.Random(5).uniform(0.0, 0.1))
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert _complete_checkpoints(killed) >= 2
    result = subprocess.run(command(killed), capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _losses(killed)
    assert sorted(resumed) == list(range(1, total + 1)), sorted(resumed)
    for step in range(1, total + 1):
        assert resumed[step].keys() == expected[step].keys(), step
        for key, value in expected[step].items():
            assert resumed[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
