"""Long-horizon drift benchmark: teacher vs AKD students (per kernel mode) on 1-, 3- and 10-minute videos.

For every model and held-out clip (unseen identity and utterance of the synthetic corpus), one
video of the longest length is generated with ``pipe.stream`` and scored chunk by chunk, so memory
stays flat whatever the length: only small per-frame numbers are kept (probe mouth opening, a 32-d
identity embedding, the difference to the previous frame); frames are dropped once scored. The
shorter lengths are the same video's first minutes: generation is causal (a chunk sees only the
past), so they are what a shorter render of that audio shows, at a fraction of the cost. Ground
truth comes from :func:`asymk_core.synthetic.corpus.make_sample` without rendering (audio and exact
tracks only).

Reported per model and length (means over clips): generation FPS (transformer + VAE decode, scoring
excluded; the whole video's), sync (Pearson r of probe vs true mouth opening, and the best
audio-visual offset), identity distance to the portrait (1 - cos) in the first and the last minute
and its slope per minute, and the chunk-boundary jump ratio (1 = seamless). Writes ``drift.md``
(table), ``drift.json`` and ``drift.png`` (identity distance and sync per 10 s) to ``--out``.

    python benchmarks/drift.py --teacher assets/teacher-synthetic \\
        --student asymmetric=runs/akd-synthetic/pipeline \\
        --student teacher-forcing=runs/akd-synthetic-teacher-forcing/pipeline \\
        --student self-forcing=runs/akd-synthetic-self-forcing/pipeline \\
        --minutes 1 3 10 --identities 2 --out benchmarks/results/drift
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asymk_talker.asymk_core.choices import DTYPES


@dataclass
class StreamingScores:
    """Per-frame probe outputs and frame differences of one video, updated chunk by chunk.

    Only small per-frame numbers are kept (mouth opening, a 32-d embedding, the mean absolute
    difference to the previous frame), so any prefix of the video can be scored afterwards.
    """

    stride: int = 1
    mouth_open: list = field(default_factory=list)
    embeddings: list = field(default_factory=list)
    frame_index: list = field(default_factory=list)
    frame_difference: list = field(default_factory=list)  # [i] = mean |frame i - frame i-1|, i >= 1
    boundary: list = field(default_factory=list)  # [i] = frame i starts a chunk, i >= 1
    _last: np.ndarray | None = None

    def update(self, probe, frames: np.ndarray, start_frame: int) -> None:
        """``frames`` uint8 ``[f, H, W, 3]`` starting at video frame ``start_frame`` (a chunk start)."""
        from asymk_talker.asymk_core.eval.metrics import frame_differences

        if not len(frames):
            return
        joined = frames if self._last is None else np.concatenate([self._last[None], frames])
        differences = frame_differences(joined)
        self.frame_difference.extend(differences.tolist())
        # Pair (previous chunk's last frame, this chunk's first) crosses a boundary; the video's first frame has no pair.
        self.boundary.extend(([True] if self._last is not None else []) + [False] * (len(frames) - 1))
        self._last = frames[-1]
        keep = [i for i in range(len(frames)) if (start_frame + i) % self.stride == 0]
        if keep:
            out = probe.predict(frames[keep])
            self.mouth_open.append(out["mouth_open"])
            self.embeddings.append(out["embedding"])
            self.frame_index.extend(start_frame + i for i in keep)

    def result(self, true_open: np.ndarray, reference_embedding: np.ndarray, fps: float,
               num_frames: int | None = None) -> dict:
        """Scores of the first ``num_frames`` frames (all when None)."""
        from asymk_talker.asymk_core.eval.metrics import boundary_ratio, identity_drift, rolling_pearson, sync_metrics

        limit = min(len(true_open), num_frames if num_frames is not None else len(true_open))
        index = np.asarray(self.frame_index)
        count = int((index < limit).sum())
        index = index[:count]
        pred = np.concatenate(self.mouth_open)[:count]
        emb = np.concatenate(self.embeddings)[:count]
        rate = fps / self.stride
        sync = sync_metrics(pred, true_open[index])
        drift = identity_drift(emb, reference_embedding, rate)
        minute, ten = max(2, int(round(60 * rate))), max(2, int(round(10 * rate)))
        pairs = max(limit - 1, 0)
        seams = boundary_ratio(self.frame_difference[:pairs], self.boundary[:pairs])
        return {"num_frames": limit, "sync_pearson": sync["pearson"], "sync_offset": sync["offset"],
                "sync_mae": sync["mae"],
                "sync_per_minute": rolling_pearson(pred, true_open[index], minute).tolist(),
                "sync_per_10s": rolling_pearson(pred, true_open[index], ten).tolist(),
                "identity_mean": drift["mean"], "identity_per_minute": drift["per_minute"],
                "identity_per_10s": drift["per_10s"],
                "identity_slope_per_minute": drift["slope_per_minute"],
                "identity_first_minute": drift["per_minute"][0], "identity_last_minute": drift["per_minute"][-1],
                "boundary_ratio": seams["ratio"], "num_boundaries": seams["num_boundaries"]}


def load_model(path, device, dtype):
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(path, torch_dtype=dtype, device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_one(pipe, clip, seconds: float, probe, *, prefixes=None, steps=None, stride: int = 1, seed: int = 0) -> dict:
    """Generate one held-out clip of ``seconds`` with ``pipe.stream``, scoring it as it streams.

    Returns ``{prefix_seconds: scores of the video's first prefix_seconds}`` for every value in
    ``prefixes`` (default: just ``seconds``); the generation speed is the whole video's.
    """
    import torch
    from PIL import Image

    from asymk_talker.asymk_core.synthetic.corpus import make_sample

    size, fps = int(pipe.config.height), float(pipe.config.fps)
    sample = make_sample(clip.identity_seed, clip.utterance_seed, float(seconds), size=size, fps=fps,
                         motion_seed=clip.motion_seed, render=False)
    scores = StreamingScores(stride=stride)
    generator = torch.Generator().manual_seed(seed)
    stream = pipe.stream(Image.fromarray(sample.portrait), sample.audio, sample_rate=sample.sample_rate,
                         num_inference_steps=steps, generator=generator)
    generating, frames_done = 0.0, 0
    while True:
        started = time.perf_counter()
        chunk = next(stream, None)
        generating += time.perf_counter() - started
        if chunk is None:
            break
        frames = np.clip(np.round(chunk.frames * 255.0), 0, 255).astype(np.uint8)
        frames_done += len(frames)
        scores.update(probe, frames, chunk.start_frame)
    reference = probe.predict(sample.portrait)["embedding"][0]
    speed = frames_done / max(generating, 1e-9)
    results = {}
    for prefix in sorted(set(prefixes or [seconds])):
        result = scores.result(sample.tracks["mouth_open"], reference, fps, num_frames=int(round(prefix * fps)))
        result.update({"seconds": result["num_frames"] / fps, "fps": speed, "realtime_factor": speed / fps})
        results[prefix] = result
    return results


def summarise(runs: list[dict]) -> dict:
    keys = ("fps", "sync_pearson", "sync_offset", "identity_mean", "identity_first_minute", "identity_last_minute",
            "identity_slope_per_minute", "boundary_ratio")
    out = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    for key in ("identity_per_minute", "sync_per_minute", "identity_per_10s", "sync_per_10s"):
        length = max(len(r[key]) for r in runs)
        out[key] = [float(np.mean([r[key][i] for r in runs if i < len(r[key])])) for i in range(length)]
    return out


def markdown_table(results: list[dict], device: str) -> str:
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    lines = [f"Drift benchmark on {device}; held-out synthetic identities and utterances; means over clips.", "",
             "| model | steps | minutes | FPS | sync r | offset (frames) | identity dist. first min | last min | "
             "worst min | mean | slope / min | boundary jump |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        worst = max(s["identity_per_minute"]) if s.get("identity_per_minute") else None
        lines.append(f"| {r['model']} | {r['steps']} | {r['minutes']:g} | {fmt(s['fps'], '.1f')} | "
                     f"{fmt(s['sync_pearson'], '.3f')} | {fmt(s['sync_offset'], '+.1f')} | "
                     f"{fmt(s['identity_first_minute'], '.3f')} | {fmt(s['identity_last_minute'], '.3f')} | "
                     f"{fmt(worst, '.3f')} | {fmt(s['identity_mean'], '.3f')} | "
                     f"{fmt(s['identity_slope_per_minute'], '+.4f')} | {fmt(s['boundary_ratio'], '.2f')} |")
    lines += ["", "identity dist. = 1 - cos(probe embedding of the frame, of the portrait), per minute (first, last, "
              "worst) and over the whole video (mean); slope from a linear fit over the whole video; boundary jump = "
              "mean frame difference across chunk boundaries / inside chunks (1 = seamless); FPS counts generation + "
              "VAE decode, not scoring."]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    """Identity distance and sync r per 10 s for the longest run of every model (PIL)."""
    from PIL import Image, ImageDraw

    from asymk_talker.asymk_core.eval.report import _COLOURS, _panel

    longest = {}
    for r in results:
        if r["model"] not in longest or r["minutes"] > longest[r["model"]]["minutes"]:
            longest[r["model"]] = r
    width, panel = 900, 260
    image = Image.new("RGB", (width, 2 * panel + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), "AKD drift benchmark: 10-second means (longest video of each model)", fill="black")
    drift, sync = [], []
    t_max = max(r["minutes"] for r in longest.values()) * 60
    for i, (name, r) in enumerate(longest.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        ident = np.asarray(r["summary"]["identity_per_10s"])
        sy = np.asarray(r["summary"]["sync_per_10s"])
        label = name.removeprefix("student:")
        drift.append(((np.arange(len(ident)) + 0.5) * 10, ident, colour, label))
        sync.append(((np.arange(len(sy)) + 0.5) * 10, sy, colour, label))
    _panel(draw, (0, 30, width, 30 + panel), drift, "identity distance to the portrait (1 - cos), per 10 s", None,
           t_max)
    _panel(draw, (0, 30 + panel, width, 30 + 2 * panel), sync, "sync: Pearson r of mouth opening, per 10 s",
           (-0.2, 1.0), t_max)
    temporary = path.with_name(path.name + ".tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="teacher pipeline folder (multi-step sampler)")
    parser.add_argument("--teacher-steps", type=int, default=None, help="teacher steps per chunk (default: its config)")
    parser.add_argument("--student", action="append", default=[], metavar="MODE=DIR",
                        help="a distilled student, e.g. asymmetric=runs/akd-synthetic/pipeline (repeatable)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    parser.add_argument("--identities", type=int, default=2, help="held-out clips per length")
    parser.add_argument("--stride", type=int, default=1, help="score every k-th frame (cheaper probe)")
    parser.add_argument("--out", default="benchmarks/results/drift")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", dest="report_only", action="store_true",
                        help="only re-write drift.md and drift.png from --out/drift.json")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of other models already in --out/drift.json (re-run or add one model)")
    parser.add_argument("--num-threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    from asymk_talker.asymk_core.choices import resolve_device_dtype
    from asymk_talker.asymk_core.eval.evaluate import evaluation_clips
    from asymk_talker.asymk_core.eval.probe import load_probe

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    models = []
    if args.teacher:
        models.append(("teacher", args.teacher, args.teacher_steps))
    for item in args.student:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--student {item!r}: expected MODE=DIR")
        models.append((f"student:{name}", path, None))
    if args.report_only:
        return write_report(json.loads((Path(args.out) / "drift.json").read_text()), Path(args.out))
    if not models:
        parser.error("pass --teacher and/or --student MODE=DIR")
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    threads = torch.get_num_threads()
    machine = f"{device}, {threads} thread{'s' if threads != 1 else ''}" if device == "cpu" else device
    probe = load_probe()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = sorted(set(args.minutes))
    results = []
    for name, path, steps in models:
        pipe = load_model(path, device, dtype)
        steps_used = steps or int(pipe.config.num_inference_steps)
        clips = evaluation_clips("heldout", args.identities, lengths[-1] * 60, size=int(pipe.config.height),
                                 fps=float(pipe.config.fps), seed=args.seed)
        runs = {minutes: [] for minutes in lengths}
        for clip in clips:
            scored = run_one(pipe, clip, lengths[-1] * 60, probe, prefixes=[m * 60 for m in lengths], steps=steps,
                             stride=args.stride, seed=args.seed)
            for minutes in lengths:
                run = scored[minutes * 60]
                runs[minutes].append(run)
                print(f"{name} {minutes:g} min {clip.identity}: {run['fps']:.1f} FPS, sync r {run['sync_pearson']:.3f}, "
                      f"identity {run['identity_first_minute']:.4f} -> {run['identity_last_minute']:.4f}", flush=True)
        for minutes in lengths:
            results.append({"model": name, "path": str(path), "steps": steps_used, "sampler": pipe.config.sampler,
                            "device": machine, "minutes": minutes, "summary": summarise(runs[minutes]), "runs": runs[minutes]})
        del pipe
    if args.append and (out_dir / "drift.json").is_file():
        names = {name for name, _, _ in models}
        kept = [r for r in json.loads((out_dir / "drift.json").read_text()) if r["model"] not in names]
        results = kept + results
    return write_report(results, out_dir)


def write_report(results: list[dict], out_dir: Path) -> dict:
    """``drift.md`` (table), ``drift.json`` and ``drift.png`` in ``out_dir``, each replaced atomically."""
    machines = sorted({r.get("device", "an unrecorded device") for r in results})
    table = markdown_table(results, " and ".join(machines))
    for filename, text in (("drift.md", table), ("drift.json", json.dumps(results, indent=2) + "\n")):
        temporary = out_dir / (filename + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, out_dir / filename)
    plot(results, out_dir / "drift.png")
    print(table)
    print(f"wrote {out_dir}/drift.md, drift.json, drift.png")
    return {"results": results, "table": table}


if __name__ == "__main__":
    main()
