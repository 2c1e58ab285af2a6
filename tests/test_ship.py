"""train/ship.py: scoring, model card, size guard, all-or-nothing install."""

from __future__ import annotations

import json

import pytest

from asymk_talker.cli.main import main as cli
from asymk_talker.asymk_core.errors import InputError
from asymk_talker.train import ship


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ship") / "student"
    assert cli(["init", "--preset", "tiny", "--output", str(folder)]) == 0
    return folder


def test_ship_installs_the_folder_with_a_model_card(student, tmp_path):
    out = tmp_path / "models" / "asymk-synthetic"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("previous version")
    result = ship.ship(student, out, seconds=1.0, identities=1)
    assert not (out / "old.txt").exists() and (out / "model_index.json").is_file()
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert list(rows) == ["student", "untrained", "ground truth"] == list(result["rows"])
    assert rows["ground truth"]["sync_pearson"] > 0.9  # the reference row really is the corpus
    assert rows["ground truth"]["generation_fps"] is None and rows["student"]["generation_fps"] > 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers")
    assert f"{rows['student']['psnr']:.1f}" in card and "synthetic avatar domain only" in card
    assert [p.name for p in out.parent.iterdir()] == ["asymk-synthetic"]  # no staging leftovers
    from asymk_talker import AsymKPipeline

    frames = AsymKPipeline.from_pretrained(out)(image=_portrait(), audio=_speech(), sample_rate=16000,
                                                output_type="np").frames
    assert frames.shape == (25, 32, 32, 3)


def test_ship_scores_the_teacher_at_its_own_and_the_students_step_count(student, tmp_path, monkeypatch):
    calls = []
    real_score = ship.score

    def recording_score(model, **kwargs):
        calls.append((model, kwargs.get("steps")))
        return real_score(model, **kwargs)

    monkeypatch.setattr(ship, "score", recording_score)
    rows = ship.ship(student, tmp_path / "out", teacher=student, seconds=1.0, identities=1)["rows"]
    assert list(rows) == ["student", "teacher", "teacher, 4 steps", "untrained", "ground truth"]
    assert calls[1] == (student, None) and calls[2] == (student, 4)
    assert isinstance(rows["ground truth"]["boundary_ratio"], float)  # measured at the student's seams
    assert all("chunk_starts" not in row for row in rows.values())
    assert "teacher, 4 steps" in (tmp_path / "out" / "README.md").read_text()


def test_ship_refuses_bad_folders_and_keeps_the_previous_install(student, tmp_path):
    out = tmp_path / "installed"
    out.mkdir()
    (out / "keep.txt").write_text("previous version")
    with pytest.raises(InputError, match="--student.*no model_index.json"):
        ship.ship(tmp_path, out, seconds=1.0, identities=1)
    with pytest.raises(InputError, match="--max-mb"):
        ship.ship(student, out, seconds=1.0, identities=1, max_mb=0.001)
    assert [p.name for p in tmp_path.iterdir() if p.name != "installed"] == []
    assert (out / "keep.txt").read_text() == "previous version"


def _portrait():
    import numpy as np

    return (np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")


def _speech():
    import numpy as np

    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype("float32")


def test_ship_writes_loop_settings_and_scores_with_them(student, tmp_path, monkeypatch):
    scored = []
    real_score = ship.score

    def recording_score(model, **kwargs):
        if not isinstance(model, str) and hasattr(model, "config"):
            scored.append(model.config.get("decoder_calibration"))
        elif hasattr(model, "__fspath__"):
            scored.append(json.loads((model / "model_index.json").read_text()).get("decoder_calibration"))
        return real_score(model, **kwargs)

    monkeypatch.setattr(ship, "score", recording_score)
    out = tmp_path / "out"
    ship.ship(student, out, teacher=student, seconds=1.0, identities=1,
              loop_settings=ship.loop_settings_from_flags(["decoder_calibration=1.0", "colour_correction=0.5"]))
    index = json.loads((out / "model_index.json").read_text())
    assert index["decoder_calibration"] == 1.0 and index["colour_correction"] == 0.5
    assert scored == [1.0, 1.0, 1.0, 1.0]  # student, teacher at both step counts, untrained
    assert json.loads((student / "model_index.json").read_text()).get("decoder_calibration", 0.0) == 0.0
    for bad in ("decoder_calibration", "sampler=teacher", "decoder_calibration=one"):
        with pytest.raises(InputError, match="--loop-setting"):
            ship.loop_settings_from_flags([bad])
