"""Memory benchmark: peak RSS and render time against audio length, for the CLI and for ``pipe.stream``.

Every (mode, length) runs in its own fresh process, so each peak is that process' own:

* ``cli``: ``asymk-talker generate`` streaming a video (H.264 + AAC) into an mp4 (the console
  script's entry point ``asymk_talker.cli.main.main``, called in the child process);
* ``stream``: a Python process that loads the pipeline and consumes ``pipe.stream(...)`` chunk by
  chunk, dropping the frames.

Peak RSS is the high-water mark each child reads of itself when it finishes (``VmHWM``; not
``ru_maxrss``, which a child inherits from its parent across exec); RSS over time is polled every
0.25 s for the plot. Generation is constant-memory by design (KCLG keeps one chunk,
its kernel and the decoder's causal cache), so peak RSS for 600 s of audio should be within 10 % of
that for 10 s, and the render time should grow linearly with the length. Audio is deterministic
synthetic speech written to wav files; the frame count of every output is checked against
``round(duration x fps)``.

    python benchmarks/memory.py --out benchmarks/results/memory                 # CPU, `tiny` preset
    python benchmarks/memory.py --preset synthetic --seconds 10 60 --out /tmp/mem    # a quick look
    python benchmarks/memory.py --device cuda --dtype bf16 --preset base --height 512 --width 512 \\
        --out benchmarks/results/memory-gpu                                        # GPU variant

The default preset is ``tiny`` so that the four lengths (10, 60, 300, 600 s) of both modes run in
about five minutes on two CPU cores; memory behaviour does not depend on the model size (see
``--preset``/``--model``). Writes ``memory.json`` and ``memory.png`` to ``--out``, prints a table and
adds an entry to BENCHMARKS.md (``--no-record`` to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asymk_talker.asymk_core.choices import DTYPES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = REPO / "assets" / "examples" / "portrait.png"
MODES = ("cli", "stream")
MAX_TRACE = 400


# ------------------------------------------------------------------------------- child process
def worker(argv: list[str]) -> int:
    """``memory.py --worker``: load the pipeline, consume ``pipe.stream`` for one wav, write a JSON result."""
    parser = argparse.ArgumentParser(prog="memory.py --worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--audio", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)

    import torch

    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core.benchmark import STUDENT, current_rss_mb, peak_rss_mb, render
    from asymk_talker.asymk_core.choices import resolve_device_dtype

    device, dtype = resolve_device_dtype(args.device, args.dtype)
    pipe = AsymKPipeline.from_pretrained(args.model, torch_dtype=dtype, device=device)
    pipe.set_progress_bar_config(disable=True)
    loaded_rss = current_rss_mb()
    trace = []

    def on_chunk(frames_done, chunk_index):
        trace.append((frames_done, round(current_rss_mb(), 1)))

    result = render(pipe, args.image, args.audio, None, height=args.height, width=args.width, stages=False,
                    on_chunk=on_chunk, **dict(STUDENT, num_inference_steps=args.steps))
    step = max(1, len(trace) // MAX_TRACE)
    result.update(rss_after_load_mib=round(loaded_rss, 1), peak_rss_self_mib=round(peak_rss_mb(), 1),
                  rss_per_chunk=trace[::step] + ([trace[-1]] if trace and (len(trace) - 1) % step else []))
    if torch.device(device).type == "cuda":
        result["cuda_max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    Path(args.json).write_text(json.dumps(result) + "\n")
    return 0


def cli_worker(argv: list[str]) -> int:
    """``memory.py --cli-worker JSON -- ARGS``: run ``asymk-talker ARGS`` in this process (the console
    script's own entry point), then write its exit status and this process' peak RSS to JSON."""
    json_path, args = argv[0], argv[argv.index("--") + 1:]
    from asymk_talker.asymk_core.benchmark import peak_rss_mb
    from asymk_talker.cli.main import main as cli_main

    code = cli_main(args)
    Path(json_path).write_text(json.dumps(dict(exit_code=code, peak_rss_self_mib=round(peak_rss_mb(), 1))) + "\n")
    return code


def run_child(command: list[str], env: dict, log: Path) -> dict:
    """Run one child to completion: wall time and its RSS polled every 0.25 s (for the plot; the peak
    comes from the child itself, see :func:`asymk_talker.asymk_core.benchmark.peak_rss_mb`)."""
    import psutil

    trace = []
    with open(log, "w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        handle = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                trace.append((round(time.perf_counter() - start, 2), round(handle.memory_info().rss / 2**20, 1)))
            except psutil.Error:
                pass
            time.sleep(0.25)
        wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed with status {process.returncode}:\n"
                           f"{log.read_text()[-3000:]}")
    step = max(1, len(trace) // MAX_TRACE)
    return dict(wall_s=round(wall, 3), rss_over_time=trace[::step])


def measure_one(mode: str, seconds: float, wav: Path, folder: Path, work: Path, args, env: dict) -> dict:
    from asymk_talker.asymk_core.video_io import probe_video

    common = ["--model", str(folder), "--image", str(args.image), "--audio", str(wav), "--steps", str(args.steps),
              "--device", args.device, "--dtype", args.dtype]
    for name in ("height", "width"):
        if getattr(args, name):
            common += [f"--{name}", str(getattr(args, name))]
    log = work / f"{mode}_{seconds:g}.log"
    if mode == "cli":
        output = work / f"cli_{seconds:g}.mp4"
        json_path = work / f"cli_{seconds:g}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--cli-worker", str(json_path), "--", "generate",
                   *common, "--output", str(output), "--sampler", "distilled", "--guidance", "1", "--quiet"]
        child = run_child(command, env, log)
        match = re.search(r"(\d+) frames at ([\d.]+) fps .* in ([\d.]+) s", log.read_text())
        facts = probe_video(output)
        output.unlink()
        result = dict(frames=facts["num_frames"], video_fps=facts["fps"],
                      audio_in_video_s=round(facts["audio_duration_s"] or 0.0, 3),
                      render_s=float(match.group(3)) if match else None,
                      peak_rss_mib=json.loads(json_path.read_text())["peak_rss_self_mib"])
    else:
        json_path = work / f"stream_{seconds:g}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", *common, "--json", str(json_path)]
        child = run_child(command, env, log)
        data = json.loads(json_path.read_text())
        result = dict(frames=data["frames"], video_fps=data["video_fps"], render_s=round(data["seconds"], 3),
                      first_frame_s=round(data["first_frame_s"], 4), rss_after_load_mib=data["rss_after_load_mib"],
                      peak_rss_mib=data["peak_rss_self_mib"],
                      rss_per_chunk=data["rss_per_chunk"])
        if "cuda_max_memory_allocated_mib" in data:
            result["cuda_max_memory_allocated_mib"] = data["cuda_max_memory_allocated_mib"]
    result.update(mode=mode, audio_seconds=seconds, expected_frames=int(round(seconds * result["video_fps"])), **child)
    if result["render_s"]:
        result["fps"] = round(result["frames"] / result["render_s"], 2)
    return result


# ------------------------------------------------------------------------------------- summary
def linear_fit(x: list[float], y: list[float]) -> dict:
    """Least squares ``y = a + b x``: intercept, slope, R^2 and the largest residual as a fraction of max(y)."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return dict(intercept=None, slope=None, r2=None, max_relative_residual=None)
    slope, intercept = np.polyfit(x, y, 1)
    fitted = intercept + slope * x
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - fitted) ** 2).sum()) / total if total > 0 else 1.0
    return dict(intercept=round(float(intercept), 4), slope=round(float(slope), 5), r2=round(r2, 5),
                max_relative_residual=round(float(np.max(np.abs(y - fitted)) / max(float(y.max()), 1e-9)), 4))


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for mode in MODES:
        rows = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["audio_seconds"])
        if not rows:
            continue
        short, long = rows[0], rows[-1]
        entry = dict(
            shortest_s=short["audio_seconds"], longest_s=long["audio_seconds"],
            peak_rss_shortest_mib=short["peak_rss_mib"], peak_rss_longest_mib=long["peak_rss_mib"],
            peak_rss_growth=round(long["peak_rss_mib"] / short["peak_rss_mib"] - 1.0, 4),
            frames_exact=all(r["frames"] == r["expected_frames"] for r in rows),
            render_time_fit=linear_fit([r["audio_seconds"] for r in rows], [r["render_s"] for r in rows]),
            process_time_fit=linear_fit([r["audio_seconds"] for r in rows], [r["wall_s"] for r in rows]),
        )
        if all("first_frame_s" in r for r in rows):
            entry["first_frame_s"] = {f"{r['audio_seconds']:g}": r["first_frame_s"] for r in rows}
        summary[mode] = entry
    return summary


def memory_table(result: dict) -> str:
    from asymk_talker.asymk_core.benchmark import markdown_table

    header = ["mode", "audio (s)", "frames (expected)", "peak RSS (MiB)", "vs shortest", "render (s)", "FPS",
              "process wall (s)", "first frame (s)"]
    rows = []
    for mode in MODES:
        selected = sorted((r for r in result["runs"] if r["mode"] == mode), key=lambda r: r["audio_seconds"])
        for r in selected:
            base = selected[0]["peak_rss_mib"]
            rows.append([mode, f"{r['audio_seconds']:g}", f"{r['frames']} ({r['expected_frames']})",
                         f"{r['peak_rss_mib']:.0f}", f"{100 * (r['peak_rss_mib'] / base - 1):+.1f} %",
                         f"{r['render_s']:.1f}" if r.get("render_s") else "-", r.get("fps", "-"),
                         f"{r['wall_s']:.1f}", f"{r['first_frame_s']:.3f}" if "first_frame_s" in r else "-"])
    return markdown_table(header, rows)


def report(result: dict) -> str:
    from asymk_talker.asymk_core.benchmark import describe_machine

    machine = result["machine"]
    lines = [
        f"### {machine['date']} · {result['preset'] or 'custom'} · {result['width']}x{result['height']} · "
        f"{result['steps']} steps · {result['dtype']} · {result['device']}",
        "",
        f"- Machine: {describe_machine(machine)}. Model: {result['model']}. Each row is a fresh process; peak RSS "
        "is that process' own high-water mark (`VmHWM`). `cli` = `asymk-talker generate` writing the mp4; "
        "`stream` = `pipe.stream` in Python, frames dropped. Render time: `cli` as the command reports it "
        "(audio load to closed mp4), `stream` from reading the wav to the last chunk; process wall time "
        "includes starting Python and loading the model.",
        f"- Command: `python benchmarks/{result['command']}`.",
        f"- CPU use during the run: this benchmark {result['cpu_load']['own_cores']:.2f} cores, other processes "
        f"{result['cpu_load']['other_cores']:.2f} cores.",
    ]
    if result["contention"]:
        lines.append(f"- **{result['contention'][0].upper() + result['contention'][1:]}** (time only; memory is "
                     "unaffected).")
    if result.get("note"):
        lines.append(f"- Note: {result['note']}")
    lines += ["", memory_table(result), ""]
    for mode, s in result["summary"].items():
        fit = s["render_time_fit"]
        met = "met" if s["peak_rss_growth"] <= 0.10 else "missed"
        text = (f"- `{mode}`: peak RSS {s['longest_s']:g} s vs {s['shortest_s']:g} s: "
                f"**{100 * s['peak_rss_growth']:+.1f} %** (target within 10 %: {met}); frames "
                f"{'exactly round(duration x fps)' if s['frames_exact'] else 'NOT equal to round(duration x fps)'}")
        if fit["slope"] is not None:
            text += (f"; render time = {fit['intercept']:.2f} s + {fit['slope'] * 1000:.1f} ms per audio second "
                     f"(R^2 {fit['r2']:.4f}, largest deviation from the line {100 * fit['max_relative_residual']:.1f} % of the "
                     "longest time)")
        if "first_frame_s" in s:
            text += "; first frame after " + ", ".join(f"{v:.3f} s ({k} s audio)" for k, v in s["first_frame_s"].items())
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> bool:
    """RSS over each render, peak RSS and render time against audio length; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    styles = {"cli": "-", "stream": "--"}
    colours = {"cli": "tab:blue", "stream": "tab:orange"}
    for run in sorted(result["runs"], key=lambda r: (r["mode"], r["audio_seconds"])):
        trace = run["rss_over_time"]
        if trace:
            t = [p[0] / max(trace[-1][0], 1e-9) for p in trace]
            axes[0].plot(t, [p[1] for p in trace], styles[run["mode"]],
                         label=f"{run['mode']} {run['audio_seconds']:g} s")
    axes[0].set_xlabel("fraction of the process lifetime")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_title("RSS during each run (polled)")
    axes[0].legend(fontsize=7)
    for mode in MODES:
        rows = sorted((r for r in result["runs"] if r["mode"] == mode), key=lambda r: r["audio_seconds"])
        if not rows:
            continue
        x = [r["audio_seconds"] for r in rows]
        colour = colours[mode]
        axes[1].plot(x, [r["peak_rss_mib"] for r in rows], "o" + styles[mode], color=colour, label=mode)
        base = rows[0]["peak_rss_mib"]
        axes[1].axhspan(base, base * 1.1, color=colour, alpha=0.12, label=f"{mode}: within 10 % of {x[0]:g} s")
        axes[2].plot(x, [r["render_s"] for r in rows], "o" + styles[mode], color=colour, label=f"{mode} render")
        axes[2].plot(x, [r["wall_s"] for r in rows], "x:", color=colour, label=f"{mode} whole process")
    axes[1].set_ylim(0, max(r["peak_rss_mib"] for r in result["runs"]) * 1.25)
    axes[1].set_xlabel("audio length (s)")
    axes[1].set_ylabel("peak RSS (MiB)")
    axes[1].set_title("peak memory vs length")
    axes[1].legend(fontsize=8)
    axes[2].set_xlabel("audio length (s)")
    axes[2].set_ylabel("seconds")
    axes[2].set_title("time vs length (should be a line)")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{result['preset'] or result['model']} {result['width']}x{result['height']}, {result['steps']} "
                 f"steps, {result['dtype']} on {result['device']}" + (" (time under contention)"
                                                                       if result["contention"] else ""))
    fig.tight_layout()
    temporary = path.with_name(path.name + ".tmp.png")
    fig.savefig(temporary, dpi=110)
    plt.close(fig)
    os.replace(temporary, path)
    return True


# ---------------------------------------------------------------------------------------- main
def measure(args) -> dict:
    import torch

    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core.benchmark import (
        CpuMonitor, contention_note, folder_facts, machine_info, write_speech_wav,
    )
    from asymk_talker.asymk_core.choices import resolve_device_dtype

    device, dtype = resolve_device_dtype(args.device, args.dtype)
    monitor = CpuMonitor()
    info = machine_info(device)
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        info["torch_threads"] = args.threads
    else:
        info["torch_threads"] = torch.get_num_threads()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model:
            folder, label = Path(args.model), str(args.model)
        else:
            folder, label = work / f"random-{args.preset}", f"{args.preset} preset, random weights"
            AsymKPipeline.from_preset(args.preset, seed=0).save_pretrained(folder)
        facts = folder_facts(folder)
        preset = facts["preset"]
        height, width = args.height or facts["config"]["height"], args.width or facts["config"]["width"]
        for seconds in args.seconds:
            wav = write_speech_wav(work / f"speech_{seconds:g}.wav", seconds, seed=args.seed)
            for mode in args.modes:
                run = measure_one(mode, seconds, wav, folder, work, args, env)
                runs.append(run)
                print(f"{mode:6s} {seconds:6g} s audio: {run['frames']} frames (expected {run['expected_frames']}), "
                      f"peak RSS {run['peak_rss_mib']:.0f} MiB, render {run['render_s'] or 0:.1f} s, "
                      f"process {run['wall_s']:.1f} s", flush=True)
            wav.unlink()
    cpu = monitor.result()
    dtype_name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    result = dict(benchmark="memory", machine=info, command=" ".join(["memory.py", *args.argv]), model=label,
                  preset=preset, device=str(device), dtype=dtype_name, height=height, width=width, steps=args.steps,
                  runs=runs, cpu_load=cpu, contention=contention_note(cpu, info["cores"]), note=args.note)
    result["summary"] = summarise(runs)
    return result


def write_outputs(result: dict, out_dir: Path, record: Path | None) -> None:
    from asymk_talker.asymk_core.benchmark import record_entry

    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = out_dir / "memory.json.tmp"
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, out_dir / "memory.json")
    plotted = plot(result, out_dir / "memory.png")
    text = report(result)
    print(text)
    print(f"wrote {out_dir}/memory.json" + (", memory.png" if plotted else
                                            " (no plot: pip install matplotlib, or -e '.[bench]')"))
    if record is not None:
        record_entry(record, "memory", "Memory", text)
        print(f"added the entry to {record}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: a random --preset pipeline)")
    parser.add_argument("--preset", choices=("tiny", "synthetic", "base"), default="tiny")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0, 300.0, 600.0],
                        help="audio lengths, one process per length and mode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=4, help="distilled sampler steps per chunk")
    parser.add_argument("--height", type=int, default=None, help="default: the model's")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the children")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default=None, help="free text added to the BENCHMARKS.md entry")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "memory"))
    parser.add_argument("--record", default=str(REPO / "BENCHMARKS.md"), help="markdown file to add the entry to")
    parser.add_argument("--no-record", dest="record", action="store_const", const=None)
    return parser


def main(argv: list[str] | None = None) -> dict | int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    if argv[:1] == ["--cli-worker"]:
        return cli_worker(argv[1:])
    args = build_parser().parse_args(argv)
    if any(s <= 0 for s in args.seconds) or args.steps < 1:
        build_parser().error("--seconds must be positive and --steps >= 1")
    args.argv = argv
    result = measure(args)
    write_outputs(result, Path(args.out), Path(args.record) if args.record else None)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
