"""The training loop and the utilities every ``train/*.py`` stage (VAE, teacher, AKD) shares.

* **Loop** — :class:`Trainer` runs a stage: accelerator, data loader, gradient accumulation,
  EMA, logging, checkpoints and their limit, validation every N steps, the time budget
  (``train.max_minutes``), the final ``save_pretrained`` and ``summary.json``. A stage subclasses
  it and adds its models (:meth:`Trainer.setup`), one micro-step (:meth:`Trainer.train_step`), its
  validation and its final model.
* **Config** — :func:`load_config` reads a YAML file (``base: other.yaml`` inherits and deep-merges),
  :func:`add_common_args` + :func:`config_from_args` apply command-line overrides. Configs are
  :class:`Config` objects: nested ``dict`` subclasses with attribute access (``cfg.train.max_steps``).
  Generic overrides: ``--set train.learning_rate=1e-4 --set data.batch_size=2`` (values parsed as
  YAML); the named flags (``--max-steps``, ``--output-dir``, ...) are shortcuts, see
  :data:`FLAG_KEYS`.
* **Accelerator** — :func:`make_accelerator` builds an ``accelerate.Accelerator`` from the config
  (mixed precision, gradient accumulation, trackers: ``tensorboard`` by default, ``none`` to
  disable; falls back to ``none`` with a warning when tensorboard is not installed) and seeds it.
* **Checkpoints** — ``accelerator.save_state`` folders ``output_dir/checkpoints/step-0000100``,
  written under a temporary name and renamed when complete (:func:`save_checkpoint`, keeps the
  newest ``keep``); :func:`resume` implements ``--resume latest|none|PATH`` and returns the step to
  continue from. The step is stored in ``progress.json`` inside each checkpoint.
* **EMA** — :class:`EMA` wraps diffusers' ``EMAModel`` (registered for checkpointing, with an
  :meth:`EMA.averaged` context manager that swaps the averaged weights in temporarily).
* **Misc** — :func:`configure_threads`, :func:`make_optimizer`, :func:`make_lr_scheduler`,
  :func:`optimizer_step`, :func:`step_generator`, :func:`progress_bar`, :func:`write_json`.

Data order is not handled here: ``train/data.py`` makes batches a pure function of
``(seed, batch index, process)``, so resuming at step ``s`` only needs ``start_batch = s * accum``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..asymk_core.files import apply_umask_to_weights
from .data import make_dataloader

logger = logging.getLogger("asymk_talker.train")

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
PROGRESS_FILE = "progress.json"


# ------------------------------------------------------------------------------------------ config
class Config(dict):
    """A nested ``dict`` with attribute access: ``cfg.train.max_steps == cfg["train"]["max_steps"]``.

    Missing attributes raise ``AttributeError`` naming the key; use :meth:`get_path` for optional
    entries (``cfg.get_path("validation.every", 0)``). :meth:`to_dict` gives plain dicts for YAML.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in list(self.items()):
            self[key] = _wrap(value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r} (keys: {sorted(self)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = _wrap(value)

    def __deepcopy__(self, memo):
        return Config(copy.deepcopy(dict(self), memo))

    def get_path(self, path: str, default: Any = None) -> Any:
        """Value at a dotted path (``"train.learning_rate"``), or ``default`` when absent."""
        node: Any = self
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def set_path(self, path: str, value: Any) -> None:
        """Set a dotted path, creating intermediate sections."""
        parts = path.split(".")
        node = self
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = Config()
            node = node[part]
        node[parts[-1]] = _wrap(value)

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else (list(v) if isinstance(v, tuple) else v)
                for k, v in self.items()}


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, Config):
        return Config(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def deep_merge(base: dict, override: dict) -> Config:
    """``override`` merged into a copy of ``base``; nested dicts merge, everything else replaces."""
    out = Config(copy.deepcopy(dict(base)))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _wrap(copy.deepcopy(value))
    return out


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config. A top-level ``base: file.yaml`` (relative to this file) is loaded first
    and this file is deep-merged over it. ``overrides`` are ``"dotted.key=value"`` strings (values
    parsed as YAML, so ``1e-4``, ``true``, ``[1, 2]`` and ``null`` work)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    config = deep_merge(load_config(path.parent / base) if base else Config(), raw)
    for item in overrides:
        apply_override(config, item)
    return config


def parse_value(text: str) -> Any:
    """A command-line value: YAML scalar/list parsing (``"3"`` -> 3, ``"none"``/``"null"`` -> None)."""
    if text.strip().lower() == "none":
        return None
    # YAML 1.1 wants a dot in floats like 1e-4; accept them as Python does.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce_number(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text
    return text


def apply_override(config: Config, item: str) -> None:
    """Apply one ``"dotted.key=value"`` override in place."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key=value (e.g. train.max_steps=10)")
    key, text = item.split("=", 1)
    config.set_path(key.strip(), _coerce_number(parse_value(text)))


# Named command-line shortcuts -> config keys (applied after --set, so they win).
FLAG_KEYS: dict[str, str] = {
    "output_dir": "output_dir",
    "seed": "seed",
    "max_steps": "train.max_steps",
    "batch_size": "data.batch_size",
    "learning_rate": "train.learning_rate",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "mixed_precision": "train.mixed_precision",
    "num_threads": "train.num_threads",
    "report_to": "logging.report_to",
    "log_every": "logging.log_every",
    "checkpoint_every": "checkpoint.every",
    "validation_every": "validation.every",
    "cache_dir": "data.cache_dir",
}


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags every training script accepts (see :data:`FLAG_KEYS` for where they go)."""
    parser.add_argument("--config", required=True, help="YAML config (train/configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set train.learning_rate=1e-4 (repeatable)")
    parser.add_argument("--resume", default="latest",
                        help="'latest' (default: continue from the newest checkpoint in output_dir if any), "
                             "'none' (start fresh), or a checkpoint folder")
    parser.add_argument("--output-dir", dest="output_dir")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-steps", dest="max_steps", type=int)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int)
    parser.add_argument("--mixed-precision", dest="mixed_precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--num-threads", dest="num_threads", type=int,
                        help="torch CPU threads per process (default: torch's choice / OMP_NUM_THREADS)")
    parser.add_argument("--report-to", dest="report_to", help="tensorboard (default), wandb, all, or none")
    parser.add_argument("--log-every", dest="log_every", type=int)
    parser.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    parser.add_argument("--validation-every", dest="validation_every", type=int, help="0 disables validation")
    parser.add_argument("--cache-dir", dest="cache_dir", help="latent cache folder (train/data.py)")
    return parser


def config_from_args(args: argparse.Namespace, defaults: dict | None = None) -> Config:
    """``defaults`` <- YAML file <- ``--set`` overrides <- named flags."""
    config = deep_merge(defaults or {}, load_config(args.config, args.overrides))
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            config.set_path(key, value)
    if not config.get("output_dir"):
        raise ValueError("the config needs an output_dir (set it in the YAML or pass --output-dir)")
    return config


def save_config(config: Config, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


# ------------------------------------------------------------------------------------- accelerator
def configure_threads(config: Config) -> None:
    """``train.num_threads`` -> ``torch.set_num_threads`` (keeps several runs off each other's cores)."""
    threads = config.get_path("train.num_threads")
    if threads:
        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(int(threads)))


def _trackers(report_to: Any) -> list[str] | str | None:
    if report_to in (None, "none", "None", False, [], ""):
        return None
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if "tensorboard" in names or "all" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install 'asymk-talker[train]'); logging to "
                              "stdout only", stacklevel=3)
                names = [n for n in names if n not in ("tensorboard", "all")]
    return names or None


def make_accelerator(config: Config, project_name: str, cpu: bool | None = None):
    """An ``Accelerator`` for ``config``; trackers are initialised with the flattened config.

    Keys used: ``output_dir``, ``seed``, ``train.mixed_precision`` (``no``/``fp16``/``bf16``),
    ``train.gradient_accumulation_steps``, ``logging.report_to``, ``train.cpu`` (force CPU).
    Launch settings (processes, FSDP, ...) come from ``accelerate launch --config_file``.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    configure_threads(config)
    output_dir = Path(config.output_dir)
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"))
    log_with = _trackers(config.get_path("logging.report_to", "tensorboard"))
    accelerator = Accelerator(
        mixed_precision=config.get_path("train.mixed_precision", "no") or "no",
        gradient_accumulation_steps=int(config.get_path("train.gradient_accumulation_steps", 1) or 1),
        log_with=log_with,
        project_config=project,
        cpu=_use_cpu(config) if cpu is None else cpu,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO,
                        stream=sys.stdout)
    if not accelerator.is_main_process:
        logger.setLevel(logging.WARNING)
    set_seed(int(config.get("seed", 0)), device_specific=False)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "config.yaml")
    if log_with:
        accelerator.init_trackers(project_name, config=flatten_for_tracker(config))
    return accelerator


def _use_cpu(config: Config) -> bool:
    """``train.cpu``, or no GPU-like device at all. Passing ``cpu=True`` on CPU-only machines matters:
    it is what makes accelerate set up gloo (``MULTI_CPU``) when launched with several processes
    (``accelerate launch --multi_gpu --num_processes 2`` or ``torchrun``)."""
    if config.get_path("train.cpu", False):
        return True
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return not (torch.cuda.is_available() or has_xpu or has_mps)


def flatten_for_tracker(config: dict, prefix: str = "") -> dict:
    """Nested config -> ``{"train/learning_rate": 1e-4, ...}`` with scalar values only (tensorboard hparams)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_for_tracker(value, name + "/"))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        elif value is None:
            out[name] = "none"
        else:
            out[name] = str(value)
    return out


def progress_bar(accelerator, total: int, initial: int = 0, desc: str = "train"):
    """tqdm on the local main process only."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                disable=not accelerator.is_local_main_process)


# ---------------------------------------------------------------------------------------- optimiser
def make_optimizer(parameters, config: Config) -> torch.optim.Optimizer:
    """AdamW from ``train.learning_rate``, ``train.weight_decay``, ``train.adam_betas``, ``train.adam_eps``."""
    params = [p for p in parameters if p.requires_grad]
    return torch.optim.AdamW(
        params,
        lr=float(config.train.learning_rate),
        betas=tuple(config.get_path("train.adam_betas", (0.9, 0.999))),
        weight_decay=float(config.get_path("train.weight_decay", 0.0)),
        eps=float(config.get_path("train.adam_eps", 1e-8)),
    )


def make_lr_scheduler(optimizer, config: Config, num_processes: int = 1):
    """diffusers' ``get_scheduler(train.lr_scheduler)`` with ``train.warmup_steps``.

    Steps are multiplied by ``num_processes`` because accelerate's wrapped scheduler steps once per
    process per optimiser step.
    """
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        config.get_path("train.lr_scheduler", "constant_with_warmup"), optimizer,
        num_warmup_steps=int(config.get_path("train.warmup_steps", 0)) * num_processes,
        num_training_steps=int(config.train.max_steps) * num_processes,
    )


def optimizer_step(accelerator, loss: torch.Tensor, model, optimizer, lr_scheduler, max_grad_norm=None) -> None:
    """``accelerator.backward(loss)``; when gradients sync, clip them to ``max_grad_norm`` (unset or
    0: no clipping); then the optimiser and scheduler step and ``zero_grad`` (accelerate makes them
    no-ops while it accumulates). Call inside ``accelerator.accumulate``."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), float(max_grad_norm))
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    """The RNG of one micro-step on one process (noise, sigmas, dropout): resumable and per-rank distinct."""
    state = np.random.SeedSequence([int(seed), int(micro_step), int(rank), 0x7EAC]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


# ---------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's parameters (diffusers ``EMAModel`` underneath).

    ``EMA(model, decay=0.999, warmup=True)``; call :meth:`step` after every optimiser step (pass
    the unwrapped model); :meth:`averaged` temporarily loads the averaged weights into the model::

        with ema.averaged(model):
            validate(model)

    Register with ``accelerator.register_for_checkpointing(ema)`` so ``save_state`` includes it.
    ``warmup`` uses diffusers' EMA warm-up (effective decay ``1 - (1 + step) ** -2/3``, capped at
    ``decay``), so short runs still average sensibly.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True,
                 update_after_step: int = 0):
        from diffusers.training_utils import EMAModel

        self.ema = EMAModel(model.parameters(), decay=decay, use_ema_warmup=warmup, inv_gamma=1.0,
                            power=2 / 3, update_after_step=update_after_step)

    @torch.no_grad()
    def step(self, model: torch.nn.Module) -> None:
        self.ema.step(model.parameters())

    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite the model's parameters with the averaged ones (permanently)."""
        self.ema.copy_to(model.parameters())

    @contextmanager
    def averaged(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        self.ema.store(model.parameters())
        self.ema.copy_to(model.parameters())
        try:
            yield model
        finally:
            self.ema.restore(model.parameters())

    def to(self, device=None, dtype=None) -> "EMA":
        self.ema.to(device=device, dtype=dtype)
        return self

    @property
    def optimization_step(self) -> int:
        return int(self.ema.optimization_step)

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)


# --------------------------------------------------------------------------------------- checkpoints
def checkpoints_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints ``[(step, path), ...]`` sorted by step (temporary folders are ignored)."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and (path / PROGRESS_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, keep: int | None = 3,
                    extra: dict | None = None) -> Path:
    """``accelerator.save_state`` into ``checkpoints/step-<step>`` (via a temporary folder renamed
    when complete), with ``progress.json`` = ``{"step": step, **extra}``; keeps the newest ``keep``.

    Call on every process (FSDP saves collectively)."""
    # Not accelerate's ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=keep): it
    # names folders checkpoint_<number of saves> (not the step, so resume could not find the step
    # and existing step-XXXXXXX runs would not resume), writes straight into the final folder (a
    # run killed mid-save leaves a partial folder that load_state then picks as the latest) and
    # prunes by counting every entry of checkpoints/, temporary ones included.
    root = checkpoints_root(output_dir)
    final = root / f"step-{step:07d}"
    temporary = root / f"step-{step:07d}.tmp"
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(temporary / PROGRESS_FILE, {"step": int(step), **(extra or {})})
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        if keep:
            for _, old in list_checkpoints(output_dir)[:-int(keep)]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def resume(accelerator, output_dir: str | os.PathLike, resume_from: str | None = "latest") -> int:
    """Load a checkpoint and return its step (0 when starting fresh).

    ``resume_from``: ``"latest"`` (the newest complete checkpoint in ``output_dir``, or a fresh
    start if there is none), ``"none"``/``None`` (fresh), or a checkpoint folder path. Call after
    ``accelerator.prepare`` and after registering extra objects (EMA) for checkpointing.
    """
    if resume_from in (None, "", "none", "None"):
        return 0
    path = latest_checkpoint(output_dir) if resume_from == "latest" else Path(resume_from)
    if path is None:
        return 0
    if not (path / PROGRESS_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {PROGRESS_FILE})")
    accelerator.load_state(str(path))
    step = int(json.loads((path / PROGRESS_FILE).read_text())["step"])
    logger.info("resumed from %s at step %d", path, step)
    return step


def out_of_time(accelerator, started: float, max_minutes) -> bool:
    """True on every process once any process has trained ``max_minutes`` (wall clock since
    ``started``, a ``time.perf_counter()`` value) in this run; never when ``max_minutes`` is unset.
    The loops then stop, save a checkpoint and the final model as at ``max_steps``."""
    if not max_minutes:
        return False
    over = (time.perf_counter() - started) / 60 > float(max_minutes)
    return bool(accelerator.reduce(torch.tensor(float(over), device=accelerator.device), "max"))


# -------------------------------------------------------------------------------------------- misc
def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (metrics logs that survive without tensorboard)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")


# -------------------------------------------------------------------------------------------- loop
def averaged_state_dict(accelerator, model, ema: EMA | None) -> dict[str, torch.Tensor]:
    """Float32 CPU copies of the prepared ``model``'s weights with the EMA averages swapped in
    (full tensors under FSDP; collective: call on every process). Copies, because an unsharded
    model's state dict shares storage with the live parameters, which ``EMA.averaged`` restores."""
    with ema.averaged(accelerator.unwrap_model(model)) if ema is not None else nullcontext():
        return {k: v.detach().float().cpu().clone() for k, v in accelerator.get_state_dict(model).items()}


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module.eval()`` for the block, ``module.train()`` after it (validation inside training)."""
    module.eval()
    try:
        yield module
    finally:
        module.train()


class Trainer:
    """The training loop every stage shares; a stage subclasses it with its models and its step.

    ``Stage(config).train(resume_from)`` builds the accelerator (:func:`make_accelerator`), calls
    :meth:`setup`, adds an :class:`EMA` of ``self.model`` when ``ema.decay`` is set (registered for
    checkpointing), resumes (:func:`resume`), then runs optimiser steps until :meth:`total_steps`
    or ``train.max_minutes`` of wall clock in this run:

    * micro-batches come from :func:`make_dataloader` with ``start_batch`` = micro-steps done, so
      a resumed run sees the data an uninterrupted one would; each goes through
      :meth:`train_step` inside ``accelerator.accumulate(*self.models)``;
    * after each optimiser step: :meth:`update_ema`; the returned losses averaged over the
      accumulation window and the processes; :meth:`step_record` goes to ``logs/metrics.jsonl``
      (every step, with ``time`` in seconds since the start of this run) and its float values to
      the trackers as ``train/<key>`` (every ``logging.log_every`` steps and the last step);
    * every ``checkpoint.every`` steps a checkpoint (the newest ``checkpoint.keep`` are kept) and
      every ``validation.every`` steps :meth:`validate` (``logs/validation.jsonl``, trackers).

    At the end, whether at ``max_steps`` or at the time budget: a checkpoint; the final model
    (:meth:`final_model` of the EMA weights) saved with ``save_pretrained`` to
    ``output_dir/<final_name>``; a last validation (``saved`` = that folder); ``summary.json``
    (:meth:`summary`).
    """

    project = "asymk"                                 # tracker project name
    final_name = "model"                              # folder of the final model in output_dir
    logger = logging.getLogger("asymk_talker.train")

    def __init__(self, config: Config):
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = None
        self.ema: EMA | None = None
        self.model = None          # the prepared module whose EMA weights become the final model
        self.models: tuple = ()    # the prepared modules whose gradients accumulate (default: model)
        self.dataset = None        # training samples; dataset[i] a pure function of (seed, i)

    # --------------------------------------------------------------------------- stage hooks
    def setup(self) -> None:
        """Build the models, optimisers and dataset; ``accelerator.prepare`` them; set
        ``self.model``, ``self.dataset`` and (when not just the model) ``self.models``."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """Progress-bar label."""
        return self.project.removeprefix("asymk-")

    def total_steps(self) -> int:
        """Optimiser steps of the whole run."""
        return int(self.config.train.max_steps)

    def describe(self, step: int, max_steps: int) -> str:
        """The log line before the first step."""
        return f"{self.label}: steps {step} -> {max_steps}"

    def train_step(self, batch, micro_step: int, step: int) -> dict[str, torch.Tensor]:
        """One micro-batch at optimiser step ``step`` (0-based): forward, backward, optimiser step
        (:func:`optimizer_step`); returns the losses to log (0-d tensors)."""
        raise NotImplementedError

    def update_ema(self, step: int) -> None:
        """After optimiser step ``step`` (1-based): update the EMA."""
        if self.ema is not None:
            self.ema.step(self.accelerator.unwrap_model(self.model))

    def step_record(self, step: int, losses: dict[str, float]) -> dict:
        """The metrics record of optimiser step ``step`` from its averaged ``losses``."""
        return {"step": step, **losses}

    def validate(self, step: int, saved: Path | None = None) -> dict[str, float]:
        """Validation scalars at ``step``, called on every process (``{}`` where there are none);
        ``saved`` is the final model's folder after it was written."""
        return {}

    def final_model(self, state: dict[str, torch.Tensor]):
        """The object to ``save_pretrained`` from the EMA ``state`` of ``self.model`` (main process)."""
        raise NotImplementedError

    def summary(self, step: int, last: dict, validation: dict) -> dict:
        """``summary.json``: ``last`` merges the step records of this run, ``validation`` the last scalars."""
        return {"step": step, "output_dir": str(self.output_dir), "last": last, "validation": validation}

    # ------------------------------------------------------------------------------ the loop
    def averaged(self, module: torch.nn.Module):
        """Context: the EMA weights in ``module`` (the unwrapped ``self.model``); no-op without EMA."""
        return self.ema.averaged(module) if self.ema is not None else nullcontext(module)

    def run_validation(self, step: int, saved: Path | None = None) -> dict[str, float]:
        """:meth:`validate`; the main process logs the scalars; every process waits for the others."""
        scalars = self.validate(step, saved)
        if scalars and self.accelerator.is_main_process:
            self.accelerator.log(scalars, step=step)
            append_jsonl(self.output_dir / "logs" / "validation.jsonl", {"step": step, **scalars})
            self.logger.info("validation at step %d: %s", step,
                             ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if isinstance(v, float)))
        self.accelerator.wait_for_everyone()
        return scalars

    def train(self, resume_from: str | None = "latest") -> dict:
        """Run the stage (see the class docstring); returns :meth:`summary`."""
        config = self.config
        accelerator = self.accelerator = make_accelerator(config, self.project)
        self.setup()
        self.models = tuple(self.models) or (self.model,)
        if config.get_path("ema.decay"):
            self.ema = EMA(accelerator.unwrap_model(self.model), decay=float(config.ema.decay),
                           warmup=bool(config.ema.get("warmup", True)))
            accelerator.register_for_checkpointing(self.ema)
        step = resume(accelerator, self.output_dir, resume_from)

        max_steps = self.total_steps()
        accumulation = int(config.train.get("gradient_accumulation_steps", 1) or 1)
        loader = make_dataloader(self.dataset, int(config.data.batch_size), accelerator=accelerator,
                                 start_batch=step * accumulation,
                                 num_workers=int(config.data.get("num_workers", 0) or 0))
        log_every = int(config.logging.get("log_every", 10) or 10)
        checkpoint_every = int(config.checkpoint.get("every", 0) or 0)
        keep = config.checkpoint.get("keep", 3)
        validation_every = int(config.validation.get("every", 0) or 0)
        max_minutes = config.train.get("max_minutes")
        metrics_path = self.output_dir / "logs" / "metrics.jsonl"

        self.logger.info("%s", self.describe(step, max_steps))
        bar = progress_bar(accelerator, max_steps, initial=step, desc=self.label)
        micro_step, window, last = step * accumulation, {}, {}
        started = time.perf_counter()
        batches = iter(loader)
        while step < max_steps:
            batch = next(batches)
            with accelerator.accumulate(*self.models):
                losses = self.train_step(batch, micro_step, step)
            micro_step += 1
            for key, value in losses.items():
                window.setdefault(key, []).append(value.detach().float())
            if not accelerator.sync_gradients:
                continue
            step += 1
            self.update_ema(step)
            means = torch.stack([torch.stack(values).mean() for values in window.values()])
            record = self.step_record(step, dict(zip(window, accelerator.reduce(means, "mean").tolist())))
            window = {}
            last.update(record)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k.endswith("loss")})
            if accelerator.is_main_process:
                append_jsonl(metrics_path, {**record, "time": time.perf_counter() - started})
            if step % log_every == 0 or step == max_steps:
                accelerator.log({f"train/{k}": v for k, v in record.items() if isinstance(v, float)}, step=step)
            stop = out_of_time(accelerator, started, max_minutes)
            if checkpoint_every and step % checkpoint_every == 0 and step < max_steps and not stop:
                save_checkpoint(accelerator, self.output_dir, step, keep=keep)
            if validation_every and step % validation_every == 0 and step < max_steps and not stop:
                self.run_validation(step)
            if stop:
                self.logger.info("time budget of %s minutes reached at step %d", max_minutes, step)
                break
        bar.close()

        save_checkpoint(accelerator, self.output_dir, step, keep=keep)
        final_dir = self.output_dir / self.final_name
        state = averaged_state_dict(accelerator, self.model, self.ema)
        if accelerator.is_main_process:
            self.final_model(state).save_pretrained(str(final_dir))
            apply_umask_to_weights(final_dir)  # safetensors writes 0600 whatever the umask
            self.logger.info("saved %s", final_dir)
        accelerator.wait_for_everyone()
        validation = self.run_validation(step, saved=final_dir)
        summary = self.summary(step, last, validation)
        if accelerator.is_main_process:
            write_json(self.output_dir / "summary.json", summary)
        accelerator.end_training()
        return summary
