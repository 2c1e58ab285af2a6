"""``asymk-talker demo``: the bundled example through the default model (see :mod:`.demo`).

Registered via ``EXTRA_COMMANDS`` in :mod:`.cli`; importing this module stays light.
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="render the bundled synthetic example with the default model (+ side-by-side with ground truth)")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: the shipped models/asymk-synthetic)")
    parser.add_argument("--output", default="asymk_demo.mp4", help="generated video (.mp4, with the speech)")
    parser.add_argument("--side-by-side", dest="side_by_side", default="auto",
                        help="generated | ground-truth video (default: <output>_vs_ground_truth.mp4; 'none' to skip)")
    parser.add_argument("--seed", type=int, default=None,
                        help="synthetic identity/utterance seed (default: the bundled example, 1001)")
    parser.add_argument("--seconds", type=float, default=None, help="length (default: 4 s, the bundled example)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the model's)")
    parser.add_argument("--generation-seed", dest="generation_seed", type=int, default=0)
    parser.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the metrics")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .cli import resolve_device_dtype
    from .demo import EXAMPLE_SECONDS, EXAMPLE_SEED, format_result, run_demo

    side = None if str(args.side_by_side).lower() == "none" else args.side_by_side
    result = run_demo(model=args.model, output=args.output, side_by_side=side,
                      seed=EXAMPLE_SEED if args.seed is None else args.seed,
                      seconds=EXAMPLE_SECONDS if args.seconds is None else args.seconds, steps=args.steps,
                      device=args.device, dtype=args.dtype, generation_seed=args.generation_seed,
                      evaluate=args.evaluate, progress=not args.quiet)
    print(format_result(result, resolve_device_dtype(args.device, args.dtype)[0]))
    return 0
