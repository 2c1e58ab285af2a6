"""``asymk-talker demo``: render the bundled synthetic example with the default model and score it.

The bundled example (``assets/examples/portrait.png`` + ``speech.wav``) is the synthetic corpus'
identity/utterance seed :data:`EXAMPLE_SEED`, 4 s, so its exact ground truth (tracks and renders)
is regenerated with :func:`asymk_core.synthetic.corpus.make_sample`. Other seeds render another
synthetic example from scratch. Writes the generated mp4 (with the speech) and a side-by-side mp4
(generated | ground truth), prints the generation speed and :mod:`asymk_core.eval` metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..asymk_core.choices import DTYPES, resolve_device_dtype
from ..asymk_core.errors import input_error
from ..asymk_core.model_folder import DEFAULT_MODEL_DIR, PACKAGE_ROOT

EXAMPLE_DIR = PACKAGE_ROOT / "assets" / "examples"
EXAMPLE_SEED = 1001
EXAMPLE_SECONDS = 4.0


@dataclass
class DemoResult:
    output: Path
    side_by_side: Path | None
    num_frames: int
    fps: float
    generation_seconds: float
    metrics: dict | None

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / max(self.generation_seconds, 1e-9)


def side_by_side_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_vs_ground_truth{output.suffix or '.mp4'}")


def load_demo_pipeline(model=None, device: str = "auto", dtype: str = "auto"):
    """The pipeline for the demo: ``model`` or the shipped default (a clear error naming ``--model``)."""
    from ..pipelines.pipeline_asymk import AsymKPipeline

    if model is None and not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        raise input_error("--model", f"no default model is installed at {DEFAULT_MODEL_DIR}",
                          "pass --model DIR (a pipeline folder, e.g. runs/akd-synthetic/pipeline from train/akd.py)")
    device, torch_dtype = resolve_device_dtype(device, dtype)
    return AsymKPipeline.from_pretrained(model, torch_dtype=torch_dtype, device=device)  # errors: cli/flags.py


def example_inputs(seed: int, seconds: float, size: int) -> tuple[np.ndarray, np.ndarray, object]:
    """(portrait uint8 [H, W, 3], 16 kHz speech float32, ground-truth Sample at ``size`` px)."""
    from ..asymk_core.synthetic.corpus import make_sample

    sample = make_sample(seed, seed, float(seconds), size=int(size), regions=True)
    portrait_file, speech_file = EXAMPLE_DIR / "portrait.png", EXAMPLE_DIR / "speech.wav"
    if seed == EXAMPLE_SEED and seconds == EXAMPLE_SECONDS and portrait_file.is_file() and speech_file.is_file():
        from PIL import Image

        from ..asymk_core.audio import load_audio

        portrait = np.asarray(Image.open(portrait_file).convert("RGB"))
        audio = load_audio(str(speech_file))
        return portrait, audio, sample
    return sample.portrait, sample.audio, sample


def run_demo(model=None, output="asymk_demo.mp4", side_by_side: str | Path | None = "auto", seed: int = EXAMPLE_SEED,
             seconds: float = EXAMPLE_SECONDS, steps: int | None = None, device: str = "auto", dtype: str = "auto",
             generation_seed: int = 0, evaluate: bool = True, progress: bool = True) -> DemoResult:
    """Render the example, write the videos, return speed and metrics (see the module docstring)."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..asymk_core.video_io import VideoWriter, write_chunks

    output = Path(output)
    if output.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise input_error("--output", f"{output} is not a video file name", "end it with .mp4")
    if not isinstance(seconds, (int, float)) or not 0.5 <= seconds <= 600:
        raise input_error("--seconds", f"got {seconds!r}", "pass a duration between 0.5 and 600 seconds")
    from ..asymk_core.files import check_output_is_not_an_input

    pair_path = None
    if side_by_side:
        pair_path = side_by_side_path(output) if side_by_side == "auto" else Path(side_by_side)
    examples = {"the bundled example": EXAMPLE_DIR / "portrait.png", "the bundled speech": EXAMPLE_DIR / "speech.wav"}
    check_output_is_not_an_input(output, examples, "--output")
    if pair_path is not None:
        check_output_is_not_an_input(pair_path, {**examples, "--output": output}, "--side-by-side")
    from ..asymk_core.seeds import check_seed, seeded_generator

    check_seed(generation_seed, "--generation-seed")
    pipe = load_demo_pipeline(model, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    height, width, fps = int(pipe.config.height), int(pipe.config.width), float(pipe.config.fps)
    portrait, audio, sample = example_inputs(int(seed), float(seconds), height)

    started = time.perf_counter()
    session = pipe.prepare(Image.fromarray(portrait), audio, sample_rate=16000, num_inference_steps=steps,
                           generator=seeded_generator(generation_seed))  # every bit of the seed counts
    frames, starts = [], []

    def collect(chunk, chunk_frames, writer):
        frames.append(np.clip(np.round(chunk_frames * 255.0), 0, 255).astype(np.uint8))
        starts.append(int(chunk.start_frame))
        bar.update(len(chunk_frames))

    with tqdm(total=session.plan.num_frames, unit="frame", desc="demo", disable=not progress) as bar:
        write_chunks(session.chunks(), output, fps, width, height, audio=audio, audio_sample_rate=16000,
                     argument="--output", on_chunk=collect)
    elapsed = time.perf_counter() - started
    video = np.concatenate(frames)

    if pair_path is not None:
        truth = sample.frames[: len(video)]
        if truth.shape[1:3] != video.shape[1:3]:
            truth = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BILINEAR))
                              for f in truth])
        both = np.concatenate([video[: len(truth)], truth], axis=2)
        with VideoWriter(pair_path, fps, both.shape[2], both.shape[1], audio=audio, audio_sample_rate=16000,
                         argument="--side-by-side") as writer:
            writer.write(both)

    metrics = None
    if evaluate:
        from ..asymk_core.eval.metrics import evaluate_frames

        result = evaluate_frames(video, sample.tracks, portrait, starts, fps=fps, gt_frames=sample.frames,
                                 gt_regions=sample.regions, portrait_regions=sample.portrait_regions)
        metrics = {"sync_pearson": result["sync"]["pearson"], "sync_offset_frames": result["sync"]["offset"],
                   "identity_distance": result["identity"]["mean"],
                   "identity_slope_per_minute": result["identity"]["slope_per_minute"],
                   "boundary_ratio": result["boundary"]["ratio"], "psnr": result["quality"]["psnr"],
                   "fidelity": result["fidelity"]}
    return DemoResult(output=output, side_by_side=pair_path, num_frames=len(video), fps=fps,
                      generation_seconds=elapsed, metrics=metrics)


def format_result(result: DemoResult, device: str) -> str:
    lines = [f"wrote {result.output}: {result.num_frames} frames at {result.fps:g} fps "
             f"({result.num_frames / result.fps:.2f} s)"]
    if result.side_by_side is not None:
        lines.append(f"wrote {result.side_by_side}: generated | ground truth")
    lines.append(f"speed: {result.frames_per_second:.1f} FPS ({result.frames_per_second / result.fps:.2f}x real time) "
                 f"on {device}, including VAE decode")
    if result.metrics:
        m = result.metrics
        boundary = "n/a" if m["boundary_ratio"] is None else f"{m['boundary_ratio']:.2f}"
        # A per-minute slope fitted to a few seconds is mostly noise: shown from one minute on.
        slope = (f" (slope {m['identity_slope_per_minute']:+.4f}/min)" if result.num_frames >= 60 * result.fps
                 else "")
        lines.append(f"metrics: sync r = {m['sync_pearson']:.3f} (offset {m['sync_offset_frames']:+d} frames), "
                     f"identity distance = {m['identity_distance']:.4f}{slope}, "
                     f"boundary jump = {boundary}, PSNR vs ground truth = {m['psnr']:.2f} dB")
        if m.get("fidelity"):
            from ..asymk_core.eval.fidelity import format_fidelity

            flagged = m["fidelity"]["flagged"]
            lines.append("fidelity per window (colour error in 8-bit levels; "
                         + (f"FLAGGED: {', '.join(flagged)})" if flagged else "all windows within thresholds)"))
            lines.extend("  " + line for line in format_fidelity(m["fidelity"]))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ command
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="render the bundled synthetic example with the default model (+ side-by-side with ground truth)")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: the shipped models/asymk-synthetic)")
    parser.add_argument("--output", default="asymk_demo.mp4", help="generated video (.mp4, with the speech); an existing file is replaced once the video "
                             "is complete")
    parser.add_argument("--side-by-side", dest="side_by_side", default="auto",
                        help="generated | ground-truth video (default: <output>_vs_ground_truth.mp4; 'none' to skip; an existing file is replaced, "
                             "the --output file is refused)")
    parser.add_argument("--seed", type=int, default=None,
                        help="synthetic identity/utterance seed (default: the bundled example, 1001)")
    parser.add_argument("--seconds", type=float, default=None, help="length (default: 4 s, the bundled example)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the model's)")
    parser.add_argument("--generation-seed", dest="generation_seed", type=int, default=0)
    parser.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the metrics")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    side = None if str(args.side_by_side).lower() == "none" else args.side_by_side
    result = run_demo(model=args.model, output=args.output, side_by_side=side,
                      seed=EXAMPLE_SEED if args.seed is None else args.seed,
                      seconds=EXAMPLE_SECONDS if args.seconds is None else args.seconds, steps=args.steps,
                      device=args.device, dtype=args.dtype, generation_seed=args.generation_seed,
                      evaluate=args.evaluate, progress=not args.quiet)
    print(format_result(result, resolve_device_dtype(args.device, args.dtype)[0]))
    return 0
