"""The ``asymk-talker`` command: init, generate, and the demo / synth / eval / preprocess / bench / convert commands.

Thin front end above the pipeline: every subcommand calls library code. Input mistakes print one
clear line and exit with status 2; nothing is written on failure. Heavy imports (torch, diffusers,
the pipeline) happen inside the commands, so ``asymk-talker --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
import time
from pathlib import Path

from ..asymk_core.choices import DTYPES, SAMPLERS, resolve_device_dtype
from ..asymk_core.errors import InputError, input_error
from ..asymk_core.model_folder import PIPELINE_PRESETS
from .flags import as_cli_error

# Subcommands of other modules (package-relative name -> has ``register(subparsers)``); a module
# whose part of the package is not installed is skipped.
EXTRA_COMMANDS = (".demo", "..asymk_core.synthetic.command", ".eval", ".preprocess", ".bench", ".serve", ".convert")


def cmd_init(args) -> int:
    from ..pipelines.pipeline_asymk import AsymKPipeline

    from ..asymk_core.files import check_output_folder

    output = check_output_folder(args.output, "--output", force=args.force)
    pipe = AsymKPipeline.from_preset(args.preset, seed=args.seed)
    if args.sampler:
        pipe.register_to_config(sampler=args.sampler)
    pipe.save_pretrained(output)
    params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"wrote a randomly initialised {args.preset!r} pipeline to {output} "
          f"(transformer: {params / 1e6:.2f} M parameters)")
    return 0


def load_pipeline(model, dtype, device):
    """``AsymKPipeline.from_pretrained`` with library logs kept quiet (its errors name ``--model`` in :func:`main`)."""
    from diffusers.utils import logging as diffusers_logging

    from ..pipelines.pipeline_asymk import AsymKPipeline

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the one-line error below says it all
    try:
        return AsymKPipeline.from_pretrained(model, torch_dtype=dtype, device=device)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def cmd_generate(args) -> int:
    from ..asymk_core.render_state import render_lock
    from ..asymk_core.video_io import _check_output_path
    from ..asymk_core.files import check_output_is_not_an_input
    from ..asymk_core.seeds import seeded_generator

    if args.paste_back and args.resume:
        raise input_error("--paste-back", "resumable renders (--resume) keep the model-size video",
                          "drop --resume, or render the crop with --resume and without --paste-back")
    if not args.paste_back:
        for flag, value in (("--face-box", args.face_box), ("--face-padding", args.face_padding)):
            if value is not None:
                raise input_error(flag, "it only applies to --paste-back", "also pass --paste-back")
    if args.checkpoint_every is not None and not args.resume:
        raise input_error("--checkpoint-every", "it only applies to resumable renders", "also pass --resume")
    checkpoint_every = 4 if args.checkpoint_every is None else args.checkpoint_every
    if checkpoint_every < 1:
        raise input_error("--checkpoint-every", f"{checkpoint_every} is not a positive number of chunks",
                          "pass an integer >= 1, e.g. 4")
    _check_output_path(args.output, "--output")  # before minutes of loading and generating
    check_output_is_not_an_input(args.output, {"--audio": args.audio, "--image": args.image}, "--output")
    device, dtype = resolve_device_dtype(args.device, args.dtype)  # a bad --device: refused before loading
    generator = seeded_generator(args.seed)  # all 64 bits of the seed count; outside 0..2**64 - 1: refused
    with contextlib.ExitStack() as held:
        if args.resume:  # another run on this output is refused now, not after loading the model
            held.enter_context(render_lock(args.output, "--output"))
        return _render(args, device, dtype, generator, checkpoint_every)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (torch's OutOfMemoryError, MemoryError, or the
    RuntimeError a CPU allocator raises)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return "out of memory" in text or "not enough memory" in text or "can't allocate memory" in text


def _generate(args, session, waveform, checkpoint_every: int, started: float) -> tuple[int, int | None]:
    """Stream the session into ``--output`` with a progress bar; returns the frames written and the
    chunk a resumed render continued at."""
    from tqdm.auto import tqdm

    from ..asymk_core.audio import SAMPLE_RATE
    from ..asymk_core.face_crop import even_size, paste_back_chunks
    from ..asymk_core.render_state import render_resumable
    from ..asymk_core.video_io import write_chunks

    fps, plan = session.settings.fps, session.plan
    with tqdm(total=plan.num_frames, unit="frame", desc="generate", disable=args.quiet) as bar:
        if args.resume:
            def on_chunk(index, num_chunks, frames_written, frames):
                bar.update(frames_written - bar.n)
                rate = bar.n / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(chunk=f"{index + 1}/{num_chunks}", fps=f"{rate:.1f}")

            result = render_resumable(session, args.output, checkpoint_every=checkpoint_every, argument="--output",
                                      resume_argument="--resume", on_chunk=on_chunk)
            frames_written, resumed_from = result["num_frames"], result["resumed_from"]
        else:
            def on_chunk(chunk, frames, writer):
                bar.update(len(frames))
                rate = writer.frames_written / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(chunk=f"{chunk.chunk.index + 1}/{plan.num_chunks}", fps=f"{rate:.1f}",
                                rtf=f"{rate / fps:.2f}x")

            chunks, width, height = session.chunks(), session.settings.width, session.settings.height
            if session.paste_back is not None:  # the photo at its full size (made even for H.264)
                chunks = paste_back_chunks(chunks, session.paste_back, even=True)
                width, height = even_size(*session.paste_back.output_size)
            writer = write_chunks(chunks, args.output, fps, width, height, audio=waveform,
                                  audio_sample_rate=SAMPLE_RATE, argument="--output", on_chunk=on_chunk)
            frames_written, resumed_from = writer.frames_written, None
    return frames_written, resumed_from


def _render(args, device, dtype, generator, checkpoint_every: int) -> int:
    """The body of ``generate`` once its flags are checked: load, render, report."""
    from ..asymk_core.audio import SAMPLE_RATE, load_audio
    from ..asymk_core.face_crop import parse_face_box
    from ..asymk_core.image import load_image
    from ..asymk_core.render_state import resume_folder

    image = load_image(args.image, argument="--image")
    waveform = load_audio(args.audio, argument="--audio")
    pipe = load_pipeline(args.model, dtype, device)
    pipe.set_progress_bar_config(disable=True)
    session = pipe.prepare(
        image, waveform, sample_rate=SAMPLE_RATE, height=args.height, width=args.width,
        fps=args.fps, num_inference_steps=args.steps, guidance_scale=args.guidance,
        chunk_frames=args.chunk_frames, kernel_frames=args.kernel_frames, sampler=args.sampler,
        generator=generator, paste_back=args.paste_back, face_box=parse_face_box(args.face_box, "--face-box"),
        face_padding=args.face_padding,
    )
    fps = session.settings.fps
    started = time.perf_counter()
    try:
        frames_written, resumed_from = _generate(args, session, waveform, checkpoint_every, started)
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        settings = session.settings
        raise input_error("--height", f"out of memory while rendering {settings.width}x{settings.height}, "
                          f"{settings.chunk_frames} latent frames per chunk, on {device} "
                          f"({type(error).__name__}); nothing was written",
                          "lower --height/--width or --chunk-frames, use --dtype bf16 on a GPU, or free memory "
                          "used by other programs") from None
    elapsed = time.perf_counter() - started
    if args.resume:
        resumed = f", resumed at chunk {resumed_from}" if resumed_from else ""
        print(f"wrote {args.output}: {frames_written} frames at {fps:g} fps ({frames_written / fps:.2f} s) in "
              f"{elapsed:.1f} s on {device}{resumed} (progress folder {resume_folder(args.output)} removed)")
    else:
        print(f"wrote {args.output}: {frames_written} frames at {fps:g} fps ({frames_written / fps:.2f} s) in "
              f"{elapsed:.1f} s = {frames_written / elapsed:.1f} FPS ({frames_written / elapsed / fps:.2f}x real "
              f"time) on {device}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asymk-talker", description="Audio-driven talking-head video generation.")
    subparsers = parser.add_subparsers(dest="command", required=True)

    init = subparsers.add_parser("init", help="write a randomly initialised pipeline folder")
    init.add_argument("--preset", choices=tuple(PIPELINE_PRESETS), default="tiny")
    init.add_argument("--output", required=True, help="folder to write")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--sampler", choices=SAMPLERS, default=None)
    init.add_argument("--force", action="store_true", help="write into a non-empty folder")
    init.set_defaults(func=cmd_init)

    generate = subparsers.add_parser("generate", help="portrait + speech -> mp4 with audio")
    generate.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped model)")
    generate.add_argument("--image", required=True)
    generate.add_argument("--audio", required=True)
    generate.add_argument("--output", required=True,
                          help="output .mp4; an existing file there is replaced once the render is complete "
                               "(an output that is the --audio or --image file, or a link to it, is refused)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--steps", type=int, default=None, help="denoising steps per chunk")
    generate.add_argument("--guidance", type=float, default=None, help="audio guidance (teacher sampler)")
    generate.add_argument("--sampler", choices=SAMPLERS, default=None,
                          help="default: the model's; the steps default to the model's whichever sampler")
    generate.add_argument("--fps", type=float, default=None)
    generate.add_argument("--height", type=int, default=None)
    generate.add_argument("--width", type=int, default=None)
    generate.add_argument("--chunk-frames", type=int, default=None)
    generate.add_argument("--kernel-frames", type=int, default=None)
    generate.add_argument("--paste-back", action="store_true",
                          help="--image is a real photo: animate a crop around the face and blend it back, so the "
                               "video has the photo's full size (odd sides gain one pixel)")
    generate.add_argument("--face-box", default=None, metavar="X,Y,W,H",
                          help="with --paste-back: the face's box in photo pixels instead of detecting it")
    generate.add_argument("--face-padding", type=float, default=None,
                          help="with --paste-back: crop side / face side (default 1.8)")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP (``timeout``, ``docker stop``, systemd, a closed SSH session), handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    import signal

    from ..asymk_core.environment import BROKEN_TORCHAUDIO_FIX, hide_broken_torchaudio

    broken = hide_broken_torchaudio()  # before transformers / diffusers would import it
    if broken:
        print(f"asymk-talker: warning: the installed torchaudio does not import ({broken}). {BROKEN_TORCHAUDIO_FIX}.",
              file=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), _terminate)
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        command = parser._subparsers._group_actions[0].choices[args.command]
        error = as_cli_error(error, command._option_string_actions)  # `num_inference_steps` -> `--steps`
        print(f"asymk-talker {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # the partial output was deleted on the way out
        signum = getattr(error, "signum", None)
        how = f" by {signal.Signals(signum).name}" if signum else ""
        print(f"asymk-talker {args.command}: interrupted{how}; no output was written", file=sys.stderr)
        return 128 + signum if signum else 130
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


if __name__ == "__main__":
    sys.exit(main())
