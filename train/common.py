"""Shared training utilities for ``train/*.py`` (VAE, teacher, AKD).

Everything a training script needs besides its loss:

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
  :func:`progress_bar`, :func:`write_json`.

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
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

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
    import time

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
