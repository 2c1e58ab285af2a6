"""``asymk-talker bench``: how fast does a model render on this machine? (see :mod:`asymk_core.benchmark`).

One end-to-end render of synthetic speech into a temporary mp4, exactly like ``generate``, with
FPS, the real-time factor, time to first frame and where the time goes. The full benchmarks
(teacher vs student, memory over 10 minutes, plots, BENCHMARKS.md) are ``benchmarks/speed.py`` and
``benchmarks/memory.py`` in the repository. Registered via ``EXTRA_COMMANDS``; importing it is light.
"""

from __future__ import annotations

from ..asymk_core.choices import DTYPES, SAMPLERS, resolve_device_dtype
from ..asymk_core.errors import input_error
from ..asymk_core.model_folder import DEFAULT_MODEL_DIR, PACKAGE_ROOT, PIPELINE_PRESETS


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="time an end-to-end render on this machine (FPS, first frame)")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: the shipped model, else --preset with random weights)")
    parser.add_argument("--preset", choices=tuple(PIPELINE_PRESETS), default=None,
                        help="time a randomly initialised preset instead (same compute as trained weights)")
    parser.add_argument("--image", default=None, help="portrait (default: the bundled example)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic speech")
    parser.add_argument("--sampler", choices=SAMPLERS, default="distilled")
    parser.add_argument("--steps", type=int, default=None, help="steps per chunk (default: 4 distilled, the "
                        "model's own for the teacher)")
    parser.add_argument("--guidance", type=float, default=None, help="audio guidance (teacher; default: the model's)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    import torch

    from ..asymk_core.benchmark import (
        STAGES,
        STUDENT,
        describe_machine,
        machine_info,
        render,
        teacher_settings,
        write_speech_wav,
    )
    from .main import load_pipeline

    if not 0.1 <= args.seconds <= 3600:
        raise input_error("--seconds", f"{args.seconds:g} is out of range", "pass a length in [0.1, 3600] seconds")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    image = args.image or str(PACKAGE_ROOT / "assets" / "examples" / "portrait.png")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, label = args.model, str(args.model or DEFAULT_MODEL_DIR)
        if model is None and (args.preset or not (DEFAULT_MODEL_DIR / "model_index.json").is_file()):
            from ..pipelines.pipeline_asymk import AsymKPipeline

            model, label = work / "model", f"{args.preset or 'synthetic'} preset, random weights"
            AsymKPipeline.from_preset(args.preset or "synthetic").save_pretrained(model)
        pipe = load_pipeline(model, dtype, device)
        pipe.set_progress_bar_config(disable=True)
        if args.sampler == "distilled":
            settings = dict(STUDENT, num_inference_steps=args.steps or STUDENT["num_inference_steps"])
        else:
            settings = teacher_settings(pipe, args.steps, args.guidance)
        audio = write_speech_wav(work / "speech.wav", args.seconds)
        warmup = write_speech_wav(work / "warmup.wav", min(args.seconds, 1.0), seed=1)
        size = dict(height=args.height, width=args.width)
        render(pipe, image, warmup, None, max_chunks=1, stages=False, **size, **settings)
        result = render(pipe, image, audio, work / "bench.mp4", **size, **settings)
    print(f"{label}: {result['width']}x{result['height']}, {settings['sampler']} sampler, "
          f"{settings['num_inference_steps']} steps, guidance {settings['guidance_scale']:g}, "
          f"{str(dtype).replace('torch.', '')} on {device}")
    print(f"  {describe_machine(machine_info(device))}")
    print(f"  {result['frames']} frames ({result['audio_seconds']:.1f} s of audio) in {result['seconds']:.2f} s: "
          f"{result['fps']:.1f} FPS = {result['realtime_factor']:.2f}x real time, end to end (audio file to mp4); "
          f"first frame after {result['first_frame_s']:.3f} s")
    parts = ", ".join(f"{name} {100 * result['stages'][name] / result['seconds']:.0f} %"
                      for name in (*STAGES, "other"))
    print(f"  time: {parts}")
    return 0
