"""train/common.py's Trainer loop on a toy stage: checkpoint limit, time budget, resume, old run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from safetensors.torch import load_file
from torch.utils.data import Dataset

from asymk_talker.train.common import (
    Config,
    Trainer,
    deep_merge,
    latest_checkpoint,
    list_checkpoints,
    make_lr_scheduler,
    make_optimizer,
    optimizer_step,
    step_generator,
)

WEIGHTS = torch.tensor([0.5, -1.0, 2.0, 0.25])


class Line(ModelMixin, ConfigMixin):
    """``y = w . x + b`` as a diffusers model (``save_pretrained`` / ``from_pretrained``)."""

    @register_to_config
    def __init__(self, features: int = 4):
        super().__init__()
        self.linear = torch.nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, 0]


class LineData(Dataset):
    """``dataset[i]`` -> ``(x [4], y)``, a pure function of ``i``."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int):
        x = torch.randn(4, generator=torch.Generator().manual_seed(int(index)))
        return x, x @ WEIGHTS


class LineTrainer(Trainer):
    """The smallest stage: regression with noisy targets (the noise from the micro-step's RNG)."""

    project = "asymk-line"

    def setup(self) -> None:
        torch.manual_seed(int(self.config.seed))
        model = Line()
        optimizer = make_optimizer(model.parameters(), self.config)
        scheduler = make_lr_scheduler(optimizer, self.config, self.accelerator.num_processes)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.dataset = LineData()

    def train_step(self, batch, micro_step: int, step: int) -> dict[str, torch.Tensor]:
        x, y = batch
        generator = step_generator(int(self.config.seed), micro_step, self.accelerator.process_index)
        loss = (self.model(x) - y - 0.1 * torch.randn(y.shape, generator=generator)).pow(2).mean()
        optimizer_step(self.accelerator, loss, self.model, self.optimizer, self.scheduler, 1.0)
        return {"loss": loss}

    def step_record(self, step: int, losses: dict[str, float]) -> dict:
        return {"step": step, **losses, "lr": self.scheduler.get_last_lr()[0]}

    def validate(self, step: int, saved: Path | None = None) -> dict[str, float]:
        if not self.accelerator.is_main_process:
            return {}
        model = Line.from_pretrained(saved) if saved else self.accelerator.unwrap_model(self.model)
        return {"val/error": float((model.linear.weight[0].detach() - WEIGHTS).abs().sum())}

    def final_model(self, state: dict[str, torch.Tensor]) -> Line:
        model = Line.from_config(self.accelerator.unwrap_model(self.model).config)
        model.load_state_dict(state)
        return model


def line_config(output_dir: Path, **sections) -> Config:
    defaults = {
        "seed": 0, "output_dir": str(output_dir),
        "data": {"batch_size": 2},
        "train": {"max_steps": 6, "learning_rate": 0.05, "warmup_steps": 0, "lr_scheduler": "constant",
                  "gradient_accumulation_steps": 1},
        "ema": {"decay": 0.9},
        "checkpoint": {"every": 2, "keep": 3},
        "logging": {"report_to": "none", "log_every": 1},
        "validation": {"every": 0},
    }
    return deep_merge(defaults, sections)


def metrics(output_dir: Path) -> dict[int, float]:
    lines = (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def saved_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "model" / "diffusion_pytorch_model.safetensors"))


def test_checkpoint_limit_keeps_the_newest_and_the_run_folder_is_complete(tmp_path):
    out = tmp_path / "run"
    summary = LineTrainer(line_config(out, checkpoint={"every": 1, "keep": 2},
                                      validation={"every": 2})).train("none")
    assert summary["step"] == 6
    assert [step for step, _ in list_checkpoints(out)] == [5, 6]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000005", "step-0000006"]
    assert json.loads((out / "summary.json").read_text())["step"] == 6
    assert (out / "config.yaml").is_file() and sorted(metrics(out)) == [1, 2, 3, 4, 5, 6]
    validation = [json.loads(line)["step"] for line in (out / "logs" / "validation.jsonl").read_text().splitlines()]
    assert validation == [2, 4, 6]  # every 2 steps before the end, then the saved model
    # The saved model holds the EMA weights: neither the live ones nor the initial ones.
    live = load_file(str(out / "checkpoints" / "step-0000006" / "model.safetensors"))
    ema = torch.load(out / "checkpoints" / "step-0000006" / "custom_checkpoint_0.pkl", weights_only=False)
    saved = saved_weights(out)
    torch.manual_seed(0)
    initial = Line().state_dict()
    assert torch.equal(saved["linear.weight"], ema["shadow_params"][0])
    assert not torch.equal(saved["linear.weight"], live["linear.weight"])
    assert not torch.equal(saved["linear.weight"], initial["linear.weight"])


def test_time_budget_stops_the_loop_and_still_saves(tmp_path):
    out = tmp_path / "budget"
    summary = LineTrainer(line_config(out, train={"max_steps": 50, "max_minutes": 1e-9})).train("none")
    assert summary["step"] == 1
    assert [step for step, _ in list_checkpoints(out)] == [1]
    assert sorted(metrics(out)) == [1]
    assert Line.from_pretrained(out / "model").config.features == 4
    assert json.loads((out / "summary.json").read_text())["step"] == 1


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_continues_at_the_saved_step_like_an_uninterrupted_run(tmp_path, accumulation):
    train = {"gradient_accumulation_steps": accumulation}
    whole = tmp_path / "whole"
    LineTrainer(line_config(whole, train=train)).train("none")
    expected = metrics(whole)

    # --resume latest: the newest complete checkpoint in the run folder (here a copy of step 2)
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step-0000002", resumed / "checkpoints" / "step-0000002")
    summary = LineTrainer(line_config(resumed, train=train)).train("latest")
    assert summary["step"] == 6 and sorted(metrics(resumed)) == [3, 4, 5, 6]
    assert all(metrics(resumed)[s] == expected[s] for s in (3, 4, 5, 6))
    for name, value in saved_weights(whole).items():  # EMA included: the same final model
        assert torch.equal(saved_weights(resumed)[name], value), name

    # --resume PATH: a checkpoint of another run folder
    explicit = tmp_path / "explicit"
    LineTrainer(line_config(explicit, train=train)).train(str(whole / "checkpoints" / "step-0000004"))
    assert {s: metrics(explicit)[s] for s in (5, 6)} == {s: expected[s] for s in (5, 6)}

    # a finished run resumed again does nothing more
    assert LineTrainer(line_config(whole, train=train)).train("latest")["step"] == 6
    assert sorted(metrics(whole)) == [1, 2, 3, 4, 5, 6]


def test_existing_step_folders_resume_and_partial_ones_are_skipped(tmp_path):
    """Run folders written before (``checkpoints/step-0000722`` with ``progress.json``) resume at
    their step; a ``.tmp`` folder (killed mid-save) or one without ``progress.json`` is never picked."""
    first = tmp_path / "first"
    LineTrainer(line_config(first, train={"max_steps": 2})).train("none")
    old = tmp_path / "old"
    checkpoint = old / "checkpoints" / "step-0000722"
    shutil.copytree(first / "checkpoints" / "step-0000002", checkpoint)
    (checkpoint / "progress.json").write_text(json.dumps({"step": 722}))
    (old / "checkpoints" / "step-0000800.tmp").mkdir()
    (old / "checkpoints" / "step-0000900").mkdir()
    assert latest_checkpoint(old) == checkpoint

    summary = LineTrainer(line_config(old, train={"max_steps": 724})).train("latest")
    assert summary["step"] == 724 and sorted(metrics(old)) == [723, 724]
    assert [step for step, _ in list_checkpoints(old)] == [722, 724]
    explicit = tmp_path / "explicit"
    LineTrainer(line_config(explicit, train={"max_steps": 724})).train(str(checkpoint))
    assert metrics(explicit) == metrics(old)
    with pytest.raises(FileNotFoundError, match="progress.json"):
        LineTrainer(line_config(tmp_path / "bad")).train(str(old / "checkpoints" / "step-0000900"))
