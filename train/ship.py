"""Publish a trained student pipeline as a model folder with a model card.

    python -m asymk_talker.train.ship --student runs/akd-synthetic/pipeline \\
        --teacher assets/teacher-synthetic --out models/asymk-synthetic

Scores the student, the teacher (optional) and the same pipeline with an untrained transformer on
held-out synthetic clips (``asymk_core.eval``), writes ``README.md`` (the model card: what it was
trained on, the numbers, its limits) into a copy of the student folder, refuses folders over
``--max-mb``, and installs the copy at ``--out`` only when everything succeeded (a failure leaves
the previous ``--out`` untouched). ``--out models/asymk-synthetic`` is the default model that
``AsymKPipeline.from_pretrained()``, ``asymk-talker generate``/``demo`` and the ComfyUI loader use.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

METRICS = (  # summary key, column title, format
    ("sync_pearson", "sync r (mouth vs speech, higher is better)", "{:.3f}"),
    ("sync_offset", "sync offset (frames)", "{:.2f}"),
    ("identity_distance", "identity distance (lower is better)", "{:.3f}"),
    ("identity_slope_per_minute", "identity drift per minute", "{:+.4f}"),
    ("boundary_ratio", "chunk-boundary jump ratio (1 = seamless; target <= 1.1x the ground truth's)", "{:.2f}"),
    ("psnr", "PSNR vs ground truth (dB)", "{:.1f}"),
    ("region_error_worst", "worst region colour error vs ground truth, any window (8-bit levels; target <= 4)", "{:.1f}"),
    ("portrait_error_worst", "worst background/clothes colour error vs the portrait, any window (target <= 6)", "{:.1f}"),
    ("psnr_worst_window", "PSNR of the worst window (dB)", "{:.1f}"),
    ("generation_fps", "generation FPS (this machine)", "{:.1f}"),
)


def folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def untrained_like(student: Path):
    """The student's pipeline (same VAE, audio front end, settings) with a freshly initialised transformer."""
    import torch

    from ..asymk_core.models.transformer import AsymKTransformer
    from ..pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(str(student))
    torch.manual_seed(0)
    pipe.register_modules(transformer=AsymKTransformer.from_config(pipe.transformer.config))
    return pipe


def score(model, *, seconds: float, identities: int, steps: int | None = None,
          chunk_starts: list[list[int]] | None = None) -> dict:
    """Held-out summary (``asymk_core.eval.metrics.summarize``) plus mean generation FPS and, as
    ``"chunk_starts"``, each clip's chunk start frames (pass the student's for the ground truth, so its
    boundary ratio is measured at the same seams)."""
    from ..asymk_core.eval.evaluate import GROUND_TRUTH, evaluate_model
    from ..asymk_core.eval.probe import load_probe
    from ..pipelines.pipeline_asymk import AsymKPipeline

    name = None
    if model != GROUND_TRUTH and (isinstance(model, str) or hasattr(model, "__fspath__")):
        model, name = AsymKPipeline.from_pretrained(str(model)), str(model)
    result = evaluate_model(model, name=name, split="heldout", seconds=seconds, identities=identities,
                            probe=load_probe(None), num_inference_steps=steps, progress=False,
                            chunk_starts=chunk_starts if model == GROUND_TRUTH else None)
    summary = dict(result["summary"])
    speeds = [clip["generation_fps"] for clip in result["clips"]]
    summary["generation_fps"] = None if model == GROUND_TRUTH else sum(speeds) / len(speeds)  # nothing generated
    summary["chunk_starts"] = [clip["chunk_starts"] for clip in result["clips"]]
    return summary


def metrics_table(rows: dict[str, dict]) -> str:
    names = list(rows)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, title, fmt in METRICS:
        cells = [fmt.format(rows[name][key]) if rows[name].get(key) is not None else "-" for name in names]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(student_config: dict, rows: dict[str, dict], *, seconds: float, identities: int,
               provenance: str) -> str:
    steps = student_config.get("num_inference_steps")
    size = f"{student_config.get('width')}x{student_config.get('height')}"
    return f"""---
library_name: diffusers
license: apache-2.0
pipeline_tag: image-to-video
tags: [talking-head, audio-to-video, asymk-talker, synthetic-data]
---

# AsymK-Talker synthetic default model

The distilled (AKD) student of AsymK-Talker for the synthetic talking-avatar domain: one portrait
of a procedurally rendered avatar and a speech track in, a lip-synced {size} video at
{student_config.get('fps')} fps out, {steps} denoising steps per chunk
(sampler `{student_config.get('sampler')}`).

```python
from asymk_talker import AsymKPipeline
pipe = AsymKPipeline.from_pretrained()        # this folder is the default model
video = pipe(image="portrait.png", audio="speech.wav").frames
```

## Training data

Only the project's own synthetic corpus (`asymk-talker synth`): SDF-rendered cartoon avatars with
formant-synthesised speech and the matching mouth articulation, head motion and blinks. Training
identities only; the numbers below are on held-out identities and utterances. No real person's
image or voice was used.

## How it was made

{provenance}

## Held-out metrics

`asymk-talker eval --split heldout`, {identities} clips of {seconds:g} s each (sync from the
shipped mouth probe, identity from the shipped identity embedding; see `docs/training.md`).
"teacher" is the multi-step teacher it was distilled from, "teacher, N steps" the same teacher
sampled with the student's step count (what distillation buys), "untrained" this pipeline with a
freshly initialised transformer. "Identity drift per minute" is a linear fit over each
{seconds:g} s clip, extrapolated: noisy on clips this short; long-horizon drift is measured on
10-minute videos by `benchmarks/drift.py`.

{metrics_table(rows)}

## Limits

* It animates the synthetic avatar domain only. Real photographs are outside its training data:
  expect garbage, not a talking person. Real-data training starts from Wan2.1 (`docs/real_data.md`).
* {size} frames: the resolution of the corpus it was trained on.
* Speech-like audio drives the mouth; music or noise gives arbitrary motion.
"""


def install(staged: Path, out: Path) -> None:
    """Replace ``out`` by ``staged`` (same filesystem); the old folder is removed only afterwards."""
    backup = None
    if out.exists():
        backup = out.with_name(out.name + ".previous")
        shutil.rmtree(backup, ignore_errors=True)
        out.rename(backup)
    staged.rename(out)
    if backup is not None:
        shutil.rmtree(backup)


def loop_settings_from_flags(pairs: list[str]) -> dict:
    """``["decoder_calibration=1.0", ...]`` -> ``{"decoder_calibration": 1.0}`` (values parsed as JSON)."""
    from ..asymk_core.errors import input_error
    from ..asymk_core.model_folder import LOOP_SETTING_NAMES

    settings = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in LOOP_SETTING_NAMES:
            raise input_error("--loop-setting", f"got {pair!r}", f"pass NAME=VALUE with NAME one of {list(LOOP_SETTING_NAMES)}")
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            raise input_error("--loop-setting", f"{text!r} is not a JSON value", "pass e.g. decoder_calibration=1.0") from None
    return settings


def configured(folder: Path, loop_settings: dict):
    """``folder`` as scored: the path itself, or its pipeline with ``loop_settings`` applied."""
    if not loop_settings:
        return folder
    from ..pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(str(folder))
    pipe.register_to_config(**loop_settings)
    return pipe


def ship(student: Path, out: Path, *, teacher: Path | None = None, seconds: float = 10.0, identities: int = 4,
         max_mb: float = 30.0, provenance: str = "", loop_settings: dict | None = None) -> dict:
    """Score, write the card, check the size, install; returns ``{"rows", "megabytes", "out"}``.

    ``loop_settings`` (:data:`asymk_core.model_folder.LOOP_SETTING_NAMES`, e.g.
    ``{"decoder_calibration": 1.0}``) are written into the shipped ``model_index.json``; the student,
    the teacher and the untrained row are all scored with them."""
    from ..asymk_core.errors import input_error
    from ..asymk_core.eval.evaluate import GROUND_TRUTH

    if not (student / "model_index.json").is_file():
        raise input_error("--student", f"{student} is not a pipeline folder (no model_index.json)",
                          "pass the 'pipeline' folder a training run saved")
    megabytes = folder_megabytes(student)
    if megabytes > max_mb:
        raise input_error("--student", f"{student} holds {megabytes:.1f} MB, more than --max-mb {max_mb:g}",
                          "ship a smaller preset, or raise --max-mb")
    loop_settings = dict(loop_settings or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(student, staged, dirs_exist_ok=True)
        config = json.loads((staged / "model_index.json").read_text())
        if loop_settings:
            config.update(loop_settings)
            (staged / "model_index.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        student_steps = int(config["num_inference_steps"])
        rows = {"student": score(staged, seconds=seconds, identities=identities)}
        if teacher is not None:
            rows["teacher"] = score(configured(teacher, loop_settings), seconds=seconds, identities=identities)
            # What distillation buys: the same teacher sampled with the student's step count.
            rows[f"teacher, {student_steps} steps"] = score(configured(teacher, loop_settings), seconds=seconds,
                                                           identities=identities, steps=student_steps)
        rows["untrained"] = score(untrained_like(staged), seconds=seconds, identities=identities)
        rows["ground truth"] = score(GROUND_TRUTH, seconds=seconds, identities=identities,
                                     chunk_starts=rows["student"]["chunk_starts"])  # the truth at the student's seams
        for row in rows.values():
            row.pop("chunk_starts")
        (staged / "README.md").write_text(model_card(config, rows, seconds=seconds, identities=identities,
                                                     provenance=provenance or "See `docs/training.md`."))
        (staged / "metrics.json").write_text(json.dumps({"seconds": seconds, "identities": identities,
                                                         "rows": rows}, indent=2) + "\n")
        install(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return {"rows": rows, "megabytes": megabytes, "out": str(out)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", required=True, type=Path, help="the AKD run's pipeline folder")
    parser.add_argument("--out", required=True, type=Path, help="where to install it (e.g. models/asymk-synthetic)")
    parser.add_argument("--teacher", type=Path, default=None, help="the teacher's pipeline folder (scored too)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each held-out clip")
    parser.add_argument("--identities", type=int, default=4, help="held-out clips (one identity each)")
    parser.add_argument("--max-mb", type=float, default=30.0, help="refuse folders larger than this")
    parser.add_argument("--provenance", default="", help="markdown for the card's 'How it was made' section")
    parser.add_argument("--loop-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a chunk-loop setting written into the shipped model_index.json and used for "
                             "scoring, e.g. decoder_calibration=1.0 (repeatable)")
    args = parser.parse_args(argv)
    result = ship(args.student, args.out, teacher=args.teacher, seconds=args.seconds, identities=args.identities,
                  max_mb=args.max_mb, provenance=args.provenance,
                  loop_settings=loop_settings_from_flags(args.loop_setting))
    print(metrics_table(result["rows"]))
    print(f"installed {result['out']} ({result['megabytes']:.1f} MB)")
    return result


if __name__ == "__main__":
    main()
