"""Sane bounds before anything is built: absurd model configs and output sizes are refused with
the figure, not allocated until the machine dies (docs/reliability.md, "Model folder")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from asymk_talker.asymk_core import limits
from asymk_talker.asymk_core.errors import InputError
from asymk_talker.asymk_core.model_folder import DEFAULT_MODEL_DIR

BOMBS = {  # component, config file, key, value
    "num_layers": ("transformer", "config.json", "num_layers", 1_000_000),
    "rope_max_seq_len": ("transformer", "config.json", "rope_max_seq_len", 1_000_000_000),
    "num_train_timesteps": ("scheduler", "scheduler_config.json", "num_train_timesteps", 300_000_000),
    "n_mels": ("audio_encoder", "config.json", "n_mels", 1_000_000),
}

# Loads each folder in a child process whose address space is capped, so that a loader without
# the bounds fails the test (MemoryError or killed) instead of taking the machine down.
LOADER = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))
from asymk_talker.asymk_core.model_folder import load_pipeline_components
from pathlib import Path
out = {}
for folder in sys.argv[1:]:
    try:
        load_pipeline_components(Path(folder))
        out[folder] = "loaded"
    except BaseException as error:
        out[folder] = type(error).__name__ + ": " + str(error)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from asymk_talker import AsymKPipeline

    folder = tmp_path_factory.mktemp("limits") / "tiny"
    AsymKPipeline.from_preset("tiny").save_pretrained(folder)
    return folder


def test_absurd_configs_are_refused_before_building(tiny_folder, tmp_path):
    folders = {}
    for name, (component, config_file, key, value) in BOMBS.items():
        folder = tmp_path / name
        shutil.copytree(tiny_folder, folder)
        path = folder / component / config_file
        config = json.loads(path.read_text())
        config[key] = value
        path.write_text(json.dumps(config))
        folders[name] = str(folder)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LOADER, *folders.values()], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = json.loads(result.stdout.strip().splitlines()[-1])
    for name, folder in folders.items():
        message = messages[folder]
        key, value = BOMBS[name][2], BOMBS[name][3]
        assert message.startswith("InvalidInputValue: `pretrained_model_name_or_path`: "), message
        assert f"{key}={value}" in message and "allowed. Fix: restore the original config file" in message, message
    assert time.perf_counter() - start < 120


def test_shipped_and_preset_models_are_within_bounds():
    from transformers import Wav2Vec2Config

    from asymk_talker.asymk_core.models.transformer import AsymKTransformer
    from asymk_talker.asymk_core.vae import vae_from_preset

    for preset in ("tiny", "synthetic", "base"):  # the estimate follows the real layer shapes
        model = AsymKTransformer.from_preset(preset)
        parameters, _ = limits.ESTIMATORS["AsymKTransformer"](dict(model.config))
        assert parameters == pytest.approx(sum(p.numel() for p in model.parameters()), rel=0.05)
        limits.check_config_bounds(dict(vae_from_preset(preset).config), "AutoencoderKLWan", preset, "model")
    limits.check_config_bounds(Wav2Vec2Config().to_dict(), "Wav2Vec2Model", "wav2vec2-base", "model")
    for component, class_name in (("transformer", "AsymKTransformer"), ("vae", "AutoencoderKLWan"),
                                  ("scheduler", "FlowMatchEulerDiscreteScheduler"),
                                  ("audio_encoder", "LogMelAudioEncoder")):
        limits.check_component_config(DEFAULT_MODEL_DIR / component, class_name, "model")


def test_output_size_beyond_memory_is_refused_up_front_with_the_figure(monkeypatch, portrait_array, speech):
    from asymk_talker import AsymKPipeline

    monkeypatch.setattr(limits, "available_memory", lambda device: 16 * 2**30)
    pipe = AsymKPipeline.from_pretrained(None)  # the shipped default model
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        pipe(image=portrait_array, audio=speech(0.3), sample_rate=16000, height=4096, width=4096,
             num_inference_steps=1, output_type="np")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert message.startswith("`height`: 4096 x 4096 needs about 86.") and "GiB of memory per chunk" in message
    assert "more than the 16.0 GiB available on cpu. Fix: lower height and width" in message
    frames = pipe(image=portrait_array, audio=speech(0.3), sample_rate=16000, num_inference_steps=1,
                  output_type="np").frames
    assert np.asarray(frames).shape[-3:-1] == (64, 64)  # the default size fits
