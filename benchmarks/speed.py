"""Speed benchmark: distilled 4-step student vs multi-step teacher, end to end, plus time to first frame.

Both samplers run on the same pipeline (same preset, weights, resolution, audio and machine) in one
run, the way `asymk-talker generate` renders: read a speech wav, audio features, TRE reference,
KCLG chunk loop, streaming VAE decode, H.264 + AAC mp4 with the audio muxed in. The clock covers
all of it (model loading excluded). Reported per sampler: FPS, real-time factor, time to first
frame and milliseconds per frame per stage; then the distillation speed-up, time to first frame
for several audio lengths (it must not depend on the length), and a torch.profiler table of the
top operators of one student render.

    python benchmarks/speed.py --out benchmarks/results/speed                 # CPU, `synthetic` preset, 64x64
    python benchmarks/speed.py --device cuda --dtype bf16 --preset base --height 512 --width 512 \\
        --out benchmarks/results/speed-gpu                                    # the GPU row

Without ``--model`` it benchmarks the installed default model (models/asymk-synthetic) if there is
one, else a randomly initialised ``--preset`` pipeline (random weights cost exactly the same
compute as trained ones). Writes ``speed.json`` and ``speed.png`` to ``--out``, prints a table
and adds an entry to BENCHMARKS.md (``--no-record`` to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from asymk_talker.asymk_core.choices import DTYPES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = REPO / "assets" / "examples" / "portrait.png"


def load_pipeline(model, preset, device, dtype, workdir: Path):
    """``(pipe, label)``: a model folder, or a random-weight preset saved and loaded like `init` + `generate`."""
    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core.model_folder import DEFAULT_MODEL_DIR

    if model is None and preset is None and (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        model = DEFAULT_MODEL_DIR
    if model is None:
        preset = preset or "synthetic"
        folder = workdir / f"random-{preset}"
        AsymKPipeline.from_preset(preset, seed=0).save_pretrained(folder)
        label = f"{preset} preset, random weights"
    else:
        folder, label = Path(model), str(model)
    pipe = AsymKPipeline.from_pretrained(folder, torch_dtype=dtype, device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, label


def best_run(runs: list[dict]) -> dict:
    """The fastest of the repeats (noise from other work only ever slows a run down); FPS of all kept."""
    chosen = dict(max(runs, key=lambda r: r["fps"]))
    chosen["repeats_fps"] = [round(r["fps"], 2) for r in runs]
    return chosen


def profile_render(pipe, image, audio, settings: dict, top: int = 12) -> dict:
    """torch.profiler over one render: the operators with the most self time (CPU, or GPU on CUDA) as % of wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from asymk_talker.asymk_core.benchmark import render

    activities, measure = [ProfilerActivity.CPU], "self_cpu_time_total"
    if torch.device(pipe._execution_device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)  # rank operators by their time on the GPU
        measure = "self_device_time_total" if hasattr(torch.autograd.profiler_util.FunctionEventAvg(),
                                                      "self_device_time_total") else "self_cuda_time_total"
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        with profile(activities=activities) as prof:
            result = render(pipe, image, audio, Path(tmp) / "profile.mp4", stages=False, **settings)
        wall = time.perf_counter() - began
    events = [e for e in prof.key_averages() if getattr(e, measure) > 0]
    events.sort(key=lambda e: getattr(e, measure), reverse=True)
    torch_seconds = sum(getattr(e, measure) for e in events) / 1e6
    rows = [dict(op=e.key, calls=int(e.count), seconds=round(getattr(e, measure) / 1e6, 4),
                 percent=round(100 * getattr(e, measure) / 1e6 / wall, 1)) for e in events[:top]]
    outside = max(wall - torch_seconds, 0.0)
    return dict(wall_s=round(wall, 3), frames=result["frames"], measure=measure, torch_ops_s=round(torch_seconds, 3),
                outside_torch_s=round(outside, 3), outside_torch_percent=round(100 * outside / wall, 1), top=rows)


def measure(args) -> dict:
    import torch

    from asymk_talker.asymk_core.benchmark import (
        STUDENT, CpuMonitor, contention_note, first_frame_latency, machine_info, preset_of, render,
        teacher_settings, write_speech_wav,
    )
    from asymk_talker.asymk_core.audio import load_audio
    from asymk_talker.asymk_core.choices import resolve_device_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    monitor = CpuMonitor()
    info = machine_info(device)
    dtype_name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipe, label = load_pipeline(args.model, args.preset, device, dtype, work)
        height, width = args.height or int(pipe.config.height), args.width or int(pipe.config.width)
        image = str(args.image)
        speech = write_speech_wav(work / "speech.wav", args.seconds, seed=args.seed)
        warmup = write_speech_wav(work / "warmup.wav", min(2.0, args.seconds), seed=args.seed + 1000)
        student = dict(STUDENT, num_inference_steps=args.steps)
        configs = [("student", student)]
        if not args.no_teacher:
            configs.append(("teacher", teacher_settings(pipe, args.teacher_steps, args.teacher_guidance)))
        runs = []
        for role, settings in configs:
            render(pipe, image, warmup, None, height=height, width=width, max_chunks=2, stages=False, **settings)
            repeats = []
            for index in range(args.repeats):
                result = render(pipe, image, speech, work / f"{role}.mp4", height=height, width=width,
                                seed=args.seed, **settings)
                repeats.append(result)
                print(f"{role} ({settings['sampler']}, {settings['num_inference_steps']} steps, guidance "
                      f"{settings['guidance_scale']:g}) run {index + 1}/{args.repeats}: {result['frames']} frames "
                      f"in {result['seconds']:.2f} s = {result['fps']:.1f} FPS", flush=True)
            runs.append(dict(role=role, **best_run(repeats)))
        latency = []
        for seconds in args.ttff_seconds:
            wav = write_speech_wav(work / f"ttff_{seconds:g}.wav", seconds, seed=args.seed)
            values = [first_frame_latency(pipe, image, wav, height=height, width=width, **student)
                      for _ in range(args.repeats)]
            reads = []
            for _ in range(args.repeats):  # the part that reads the whole file, so may grow with its length
                began = time.perf_counter()
                load_audio(wav)
                reads.append(time.perf_counter() - began)
            latency.append(dict(audio_seconds=seconds, first_frame_s=round(min(values), 4),
                                audio_read_s=round(min(reads), 4), repeats=[round(v, 4) for v in values]))
            print(f"time to first frame, {seconds:g} s of audio: {min(values):.3f} s (best of {len(values)}; "
                  f"reading the file: {min(reads):.3f} s)", flush=True)
            wav.unlink()
        profile = None
        if args.profile:
            profile = profile_render(pipe, image, speech, dict(student, height=height, width=width))
        memory = None
        if torch.device(device).type == "cuda":
            memory = dict(max_memory_allocated_mib=round(torch.cuda.max_memory_allocated(device) / 2**20, 1))
    cpu = monitor.result()
    result = dict(
        benchmark="speed", machine=info, command=" ".join(["speed.py", *args.argv]),
        model=label, preset=preset_of(pipe), device=str(device), dtype=dtype_name, height=height, width=width,
        audio_seconds=args.seconds, repeats=args.repeats, runs=runs, first_frame=latency, profile=profile,
        cuda_memory=memory, cpu_load=cpu, contention=contention_note(cpu, info["cores"]), note=args.note,
    )
    result["summary"] = summarise(result)
    return result


def summarise(result: dict) -> dict:
    runs = {r["role"]: r for r in result["runs"]}
    student = runs["student"]
    summary = dict(student_fps=round(student["fps"], 2), student_realtime_factor=round(student["realtime_factor"], 2),
                   student_first_frame_s=round(student["first_frame_s"], 4))
    if "teacher" in runs:
        teacher = runs["teacher"]
        summary.update(
            teacher_fps=round(teacher["fps"], 3),
            speedup=round(student["fps"] / teacher["fps"], 2),
            transformer_speedup=round((teacher["stages"]["transformer"] / teacher["frames"])
                                      / max(student["stages"]["transformer"] / student["frames"], 1e-12), 2),
            calls_ratio=round(teacher["transformer_calls_per_chunk"] / student["transformer_calls_per_chunk"], 2),
        )
    if result["first_frame"]:
        values = [x["first_frame_s"] for x in result["first_frame"]]
        summary["first_frame_spread_s"] = round(max(values) - min(values), 4)
    return summary


def ms_per_frame(run: dict, stage: str) -> float:
    return 1000 * run["stages"][stage] / max(run["frames"], 1)


def speed_table(result: dict) -> str:
    from asymk_talker.asymk_core.benchmark import STAGES, markdown_table

    header = ["run", "sampler", "steps", "guidance", "transformer calls / chunk", "frames", "FPS", "x real time",
              "first frame (s)"] + [f"{stage} (ms/frame)" for stage in (*STAGES, "other")]
    rows = []
    for run in result["runs"]:
        rows.append([run["role"], run["sampler"], run["num_inference_steps"], f"{run['guidance_scale']:g}",
                     run["transformer_calls_per_chunk"], run["frames"], f"{run['fps']:.2f}",
                     f"{run['realtime_factor']:.2f}", f"{run['first_frame_s']:.3f}"]
                    + [f"{ms_per_frame(run, stage):.2f}" for stage in (*STAGES, "other")])
    return markdown_table(header, rows)


def report(result: dict) -> str:
    """The markdown entry for BENCHMARKS.md (also printed)."""
    from asymk_talker.asymk_core.benchmark import describe_machine, markdown_table

    s = result["summary"]
    machine = result["machine"]
    lines = [
        f"### {machine['date']} · {result['preset'] or 'custom'} · {result['width']}x{result['height']} · "
        f"{result['dtype']} · {result['device']}",
        "",
        f"- Machine: {describe_machine(machine)}. Model: {result['model']}. Audio: {result['audio_seconds']:g} s of "
        f"synthetic speech, {result['runs'][0]['video_fps']:g} fps video; best of {result['repeats']} runs (all in the "
        "JSON); clock "
        "from reading the wav to the closed mp4 (H.264 + AAC), model loading excluded.",
        f"- Command: `python benchmarks/{result['command']}`.",
    ]
    cpu = result["cpu_load"]
    lines.append(f"- CPU use during the run: this benchmark {cpu['own_cores']:.2f} cores, other processes "
                 f"{cpu['other_cores']:.2f} cores.")
    if result["contention"]:
        lines.append(f"- **{result['contention'][0].upper() + result['contention'][1:]}.**")
    if result.get("note"):
        lines.append(f"- Note: {result['note']}")
    lines += ["", speed_table(result), ""]
    if "speedup" in s:
        met = "met" if s["speedup"] >= 20 else "missed"
        lines.append(
            f"- Distillation speed-up (student FPS / teacher FPS, end to end): **{s['speedup']:.2f}x** "
            f"(target >= 20x: {met}). Transformer time per frame: {s['transformer_speedup']:.2f}x less; "
            f"transformer calls per chunk: {s['calls_ratio']:g}x fewer."
        )
    if result["device"].startswith("cpu") and result["preset"] == "synthetic":
        met = "met" if s["student_fps"] >= 25 else "missed"
        lines.append(f"- CPU real-time target (`synthetic` at native size, >= 25 FPS end to end): "
                     f"**{s['student_fps']:.1f} FPS** ({met}).")
    if result["first_frame"]:
        parts = ", ".join(f"{x['audio_seconds']:g} s of audio: {x['first_frame_s']:.3f} s (of which reading the "
                          f"wav {x['audio_read_s']:.3f} s)" for x in result["first_frame"])
        lines.append(f"- Time to first frame (student, `pipe.stream` from a wav path, model loaded, best of "
                     f"{result['repeats']}): {parts}; spread {s['first_frame_spread_s'] * 1000:.0f} ms. Everything "
                     "after reading the file is per chunk (audio features are computed lazily per 10 s segment).")
    if result.get("cuda_memory"):
        lines.append(f"- torch.cuda.max_memory_allocated: {result['cuda_memory']['max_memory_allocated_mib']:.0f} MiB.")
    profile = result.get("profile")
    if profile:
        kind = "self CPU time" if profile["measure"] == "self_cpu_time_total" else "self GPU time"
        lines += ["", f"Profile (torch.profiler, one student render of {profile['frames']} frames, "
                      f"{profile['wall_s']:.2f} s under the profiler): top operators by {kind}, % of wall "
                      f"time; not in torch operators (PyAV encoding, Python, idle): "
                      f"{profile['outside_torch_percent']:.1f} %.",
                  "", markdown_table(["operator", "calls", "seconds", "% of wall"],
                                     [[f"`{r['op']}`", r["calls"], f"{r['seconds']:.3f}", f"{r['percent']:.1f}"]
                                      for r in profile["top"]])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> bool:
    """FPS per sampler and ms per frame per stage (stacked); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from asymk_talker.asymk_core.benchmark import STAGES

    runs = result["runs"]
    panels = 3 if result["first_frame"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    names = [f"{r['role']}\n{r['num_inference_steps']} steps x {r['transformer_calls_per_chunk'] // r['num_inference_steps']}"
             for r in runs]
    bars = axes[0].bar(names, [r["fps"] for r in runs], color=["tab:green", "tab:gray"][: len(runs)])
    axes[0].bar_label(bars, fmt="%.1f")
    axes[0].axhline(runs[0]["video_fps"], color="tab:red", linestyle="--", label="real time")
    axes[0].set_ylabel("frames per second (end to end)")
    axes[0].set_title("throughput")
    axes[0].legend()
    bottom = [0.0] * len(runs)
    for stage in (*STAGES, "other"):
        values = [ms_per_frame(r, stage) for r in runs]
        axes[1].bar(names, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes[1].set_ylabel("ms per frame")
    axes[1].set_title("where the time goes")
    axes[1].legend(fontsize=8)
    if result["first_frame"]:
        x = [v["audio_seconds"] for v in result["first_frame"]]
        axes[2].plot(x, [v["first_frame_s"] for v in result["first_frame"]], "o-")
        axes[2].set_xscale("log")
        axes[2].set_ylim(bottom=0)
        axes[2].set_xlabel("audio length (s)")
        axes[2].set_ylabel("time to first frame (s)")
        axes[2].set_title("latency vs audio length (student)")
    fig.suptitle(f"{result['preset'] or result['model']} {result['width']}x{result['height']} {result['dtype']} "
                 f"on {result['device']}" + (" (under contention)" if result["contention"] else ""))
    fig.tight_layout()
    temporary = path.with_name(path.name + ".tmp.png")
    fig.savefig(temporary, dpi=110)
    plt.close(fig)
    os.replace(temporary, path)
    return True


def write_outputs(result: dict, out_dir: Path, record: Path | None) -> None:
    from asymk_talker.asymk_core.benchmark import record_entry

    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = out_dir / "speed.json.tmp"
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, out_dir / "speed.json")
    plotted = plot(result, out_dir / "speed.png")
    text = report(result)
    print(text)
    print(f"wrote {out_dir}/speed.json" + (", speed.png" if plotted else
                                           " (no plot: pip install matplotlib, or -e '.[bench]')"))
    if record is not None:
        gpu = result["device"].startswith("cuda")
        record_entry(record, "gpu" if gpu else "speed", "GPU" if gpu else "Speed", text)
        print(f"added the entry to {record}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: models/asymk-synthetic if installed)")
    parser.add_argument("--preset", choices=("tiny", "synthetic", "base"), default=None,
                        help="benchmark a randomly initialised preset (default when no model is installed: synthetic)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length of the throughput runs")
    parser.add_argument("--height", type=int, default=None, help="default: the model's")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--steps", type=int, default=4, help="student steps per chunk")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the teacher's config")
    parser.add_argument("--teacher-guidance", type=float, default=None, help="default: the teacher's config")
    parser.add_argument("--no-teacher", action="store_true", help="student only")
    parser.add_argument("--ttff-seconds", type=float, nargs="*", default=[10.0, 600.0],
                        help="audio lengths for the time-to-first-frame check")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (the fastest is reported)")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the torch.profiler table")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default=None, help="free text added to the BENCHMARKS.md entry")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speed"))
    parser.add_argument("--record", default=str(REPO / "BENCHMARKS.md"), help="markdown file to add the entry to")
    parser.add_argument("--no-record", dest="record", action="store_const", const=None)
    return parser


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0:
        build_parser().error("--repeats must be >= 1 and --seconds > 0")
    args.argv = argv
    result = measure(args)
    write_outputs(result, Path(args.out), Path(args.record) if args.record else None)
    return result


if __name__ == "__main__":
    main()
