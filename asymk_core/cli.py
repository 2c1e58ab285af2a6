"""The ``asymk-talker`` command: init, generate (and the corpus / evaluation commands when present).

Thin front end: every subcommand calls library code. Input mistakes print one clear line and exit
with status 2; nothing is written on failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from .errors import InputError

DTYPES = ("auto", "fp32", "fp16", "bf16")
# Subcommands contributed by other parts of the package: module -> has ``register(subparsers)``.
EXTRA_COMMANDS = (".demo_command", ".synthetic.command", ".eval.command", ".preprocess_command", ".bench_command")


def resolve_device_dtype(device: str, dtype: str):
    """``auto`` device -> cuda when available else cpu; ``auto`` dtype -> bf16 on cuda, fp32 on cpu."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, names[dtype]


def cmd_init(args) -> int:
    from ..pipelines.pipeline_asymk import AsymKPipeline

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.force:
        raise _usage_error("output", f"{output} exists and is not empty", "choose a new folder or pass --force")
    pipe = AsymKPipeline.from_preset(args.preset, seed=args.seed)
    if args.sampler:
        pipe.register_to_config(sampler=args.sampler)
    pipe.save_pretrained(output)
    params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"wrote a randomly initialised {args.preset!r} pipeline to {output} "
          f"(transformer: {params / 1e6:.2f} M parameters)")
    return 0


def _load_pipeline_for_cli(model, dtype, device):
    """``AsymKPipeline.from_pretrained`` with its errors naming ``--model`` and library logs kept quiet."""
    from diffusers.utils import logging as diffusers_logging

    from ..pipelines.pipeline_asymk import AsymKPipeline

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the one-line error below says it all
    try:
        return AsymKPipeline.from_pretrained(model, torch_dtype=dtype, device=device)
    except InputError as error:
        message = str(error).replace("`pretrained_model_name_or_path`", "`--model`", 1)
        raise type(error)(message) from None
    finally:
        diffusers_logging.set_verbosity(verbosity)


def cmd_generate(args) -> int:
    from tqdm.auto import tqdm

    from .audio import SAMPLE_RATE, load_audio
    from .errors import input_error
    from .image import load_image
    from .seeds import seeded_generator
    from .video_io import VideoWriter, _check_output_path

    if args.checkpoint_every is not None and not args.resume:
        raise input_error("--checkpoint-every", "it only applies to resumable renders", "also pass --resume")
    checkpoint_every = 4 if args.checkpoint_every is None else args.checkpoint_every
    if checkpoint_every < 1:
        raise input_error("--checkpoint-every", f"{checkpoint_every} is not a positive number of chunks",
                          "pass an integer >= 1, e.g. 4")
    _check_output_path(args.output, "--output")  # before minutes of loading and generating
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    image = load_image(args.image, argument="--image")
    waveform = load_audio(args.audio, argument="--audio")
    pipe = _load_pipeline_for_cli(args.model, dtype, device)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.config
    height, width = args.height or config.height, args.width or config.width
    fps = args.fps or config.fps
    import torch

    started = time.perf_counter()
    if args.resume:
        from .render_state import render_resumable, resume_folder

        bar = tqdm(total=None, unit="frame", desc="generate", disable=args.quiet)

        def on_chunk(index, num_chunks, frames_written, frames):
            if bar.total is None:
                bar.reset(total=round(waveform.size / SAMPLE_RATE * fps))
                bar.update(frames_written - frames.shape[0])
            bar.update(frames.shape[0])
            rate = bar.n / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(chunk=f"{index + 1}/{num_chunks}", fps=f"{rate:.1f}")

        with bar:
            result = render_resumable(
                pipe, image, waveform, args.output, height=height, width=width, fps=fps,
                num_inference_steps=args.steps, guidance_scale=args.guidance, chunk_frames=args.chunk_frames,
                kernel_frames=args.kernel_frames, sampler=args.sampler, seed=args.seed,
                checkpoint_every=checkpoint_every, argument="--output", resume_argument="--resume",
                on_chunk=on_chunk,
            )
        frames_written = result["num_frames"]
        elapsed = time.perf_counter() - started
        resumed = f", resumed at chunk {result['resumed_from']}" if result["resumed_from"] else ""
        print(f"wrote {args.output}: {frames_written} frames at {fps:g} fps ({frames_written / fps:.2f} s) in "
              f"{elapsed:.1f} s on {device}{resumed} (progress folder {resume_folder(args.output)} removed)")
        return 0

    generator = seeded_generator(args.seed)  # all 64 bits of the seed count
    stream = pipe.stream(
        image, waveform, sample_rate=SAMPLE_RATE, height=height, width=width, fps=fps,
        num_inference_steps=args.steps, guidance_scale=args.guidance, chunk_frames=args.chunk_frames,
        kernel_frames=args.kernel_frames, sampler=args.sampler, generator=generator,
    )
    first = next(stream)  # validates everything before a file is opened
    with VideoWriter(args.output, fps, width, height, audio=waveform, audio_sample_rate=SAMPLE_RATE,
                     argument="--output") as writer, \
            tqdm(total=first.num_frames, unit="frame", desc="generate", disable=args.quiet) as bar:
        chunk = first
        while chunk is not None:
            writer.write(chunk.frames)
            bar.update(len(chunk.frames))
            elapsed = time.perf_counter() - started
            rate = writer.frames_written / elapsed
            bar.set_postfix(chunk=f"{chunk.chunk_index + 1}/{chunk.num_chunks}", fps=f"{rate:.1f}",
                            rtf=f"{rate / fps:.2f}x")
            chunk = next(stream, None)
    elapsed = time.perf_counter() - started
    print(f"wrote {args.output}: {writer.frames_written} frames at {fps:g} fps "
          f"({writer.frames_written / fps:.2f} s) in {elapsed:.1f} s = {writer.frames_written / elapsed:.1f} FPS "
          f"({writer.frames_written / elapsed / fps:.2f}x real time) on {device}")
    return 0


def _usage_error(argument: str, problem: str, fix: str) -> InputError:
    from .errors import input_error

    return input_error(argument, problem, fix)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asymk-talker", description="Audio-driven talking-head video generation.")
    subparsers = parser.add_subparsers(dest="command", required=True)

    init = subparsers.add_parser("init", help="write a randomly initialised pipeline folder")
    init.add_argument("--preset", choices=("tiny", "synthetic", "base"), default="tiny")
    init.add_argument("--output", required=True, help="folder to write")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--sampler", choices=("teacher", "distilled"), default=None)
    init.add_argument("--force", action="store_true", help="write into a non-empty folder")
    init.set_defaults(func=cmd_init)

    generate = subparsers.add_parser("generate", help="portrait + speech -> mp4 with audio")
    generate.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped model)")
    generate.add_argument("--image", required=True)
    generate.add_argument("--audio", required=True)
    generate.add_argument("--output", required=True, help="output .mp4")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--steps", type=int, default=None, help="denoising steps per chunk")
    generate.add_argument("--guidance", type=float, default=None, help="audio guidance (teacher sampler)")
    generate.add_argument("--sampler", choices=("teacher", "distilled"), default=None)
    generate.add_argument("--fps", type=float, default=None)
    generate.add_argument("--height", type=int, default=None)
    generate.add_argument("--width", type=int, default=None)
    generate.add_argument("--chunk-frames", type=int, default=None)
    generate.add_argument("--kernel-frames", type=int, default=None)
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    generate.add_argument("--dtype", choices=DTYPES, default="auto")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.add_argument("--resume", action="store_true",
                          help="checkpoint progress in <output>.resume/ and continue from it if present (a killed "
                               "render rerun with the same command gives the same video)")
    generate.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                          help="with --resume: save progress every N chunks (default 4)")
    generate.set_defaults(func=cmd_generate)

    for module_name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(module_name, __package__)
        except ModuleNotFoundError as error:
            if error.name and error.name.endswith(module_name.rsplit(".", 1)[-1]):
                continue  # that part of the package is not installed
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"asymk-talker {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asymk-talker {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
