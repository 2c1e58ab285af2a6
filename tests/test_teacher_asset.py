"""The committed synthetic teacher (``assets/teacher-synthetic``), stage 1 of the default model's
recipe: a complete pipeline folder that lip-syncs held-out speech where an untrained model of the
same shape does not."""

from __future__ import annotations

import json

import pytest
import torch

from asymk_talker.asymk_core.model_folder import PACKAGE_ROOT

TEACHER_DIR = PACKAGE_ROOT / "assets" / "teacher-synthetic"


@pytest.fixture(scope="module")
def teacher():
    from asymk_talker import AsymKPipeline

    return AsymKPipeline.from_pretrained(str(TEACHER_DIR))


def test_folder_is_small_and_uses_the_steady_state_vae(teacher):
    size = sum(p.stat().st_size for p in TEACHER_DIR.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    vae_config = json.loads((TEACHER_DIR.parent / "vae-synthetic-colour" / "config.json").read_text())
    assert list(teacher.vae.config.latents_mean) == pytest.approx(vae_config["latents_mean"])
    report = json.loads((TEACHER_DIR / "evaluation.json").read_text())
    assert report["teacher"]["sync_pearson"] > report["untrained"]["sync_pearson"] + 0.3


def test_lip_syncs_a_held_out_clip_and_an_untrained_twin_does_not(teacher):
    from asymk_talker import AsymKTransformer
    from asymk_talker.asymk_core.eval.evaluate import evaluate_model

    trained = evaluate_model(teacher, seconds=3.0, identities=1, progress=False)["summary"]
    torch.manual_seed(0)
    teacher.transformer = AsymKTransformer.from_config(teacher.transformer.config)
    untrained = evaluate_model(teacher, seconds=3.0, identities=1, progress=False)["summary"]
    assert trained["sync_pearson"] > 0.3 > untrained["sync_pearson"]
    assert trained["identity_distance"] < untrained["identity_distance"]
