"""``asymk-talker eval``: score a model on synthetic clips with exact ground truth
(see :mod:`asymk_core.eval.evaluate`); ``--real``: :mod:`.eval_real`."""

from __future__ import annotations

from ..asymk_core.errors import input_error

# Same values as asymk_core.eval.evaluate.EVAL_SPLITS / GROUND_TRUTH (not imported here: registering
# stays import-light).
EVAL_SPLITS = ("heldout", "heldout_identity", "heldout_utterance", "train")
GROUND_TRUTH = "ground-truth"


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="sync / identity drift / boundary / quality metrics on synthetic clips")
    parser.add_argument("--model", default=None,
                        help=f"pipeline folder or Hub id, or '{GROUND_TRUTH}' for the ceiling "
                             "(required unless --real)")
    parser.add_argument("--split", choices=EVAL_SPLITS, default="heldout")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of every clip")
    parser.add_argument("--identities", type=int, default=4, help="number of clips (one identity each)")
    parser.add_argument("--out", default=None, help="folder for eval.json and eval.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the model's)")
    parser.add_argument("--probe", default=None, help="probe folder (default: the shipped assets/probe)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the pipeline's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    from .eval_real import add_real_arguments

    add_real_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    if args.real:
        from .eval_real import run_real

        return run_real(args)
    from ..asymk_core.seeds import check_seed

    check_seed(args.seed, "--seed")  # before loading the model
    if not args.model:
        raise input_error("--model", "eval needs a model to score",
                          f"pass --model DIR (a pipeline folder) or --model {GROUND_TRUTH}, or use --real")

    from ..asymk_core.eval.evaluate import evaluate_model
    from ..asymk_core.eval.probe import load_probe

    model = args.model
    if model != GROUND_TRUTH:
        from .main import load_pipeline

        model = load_pipeline(model, None, args.device)
    results = evaluate_model(model, name=args.model, split=args.split, seconds=args.seconds, identities=args.identities,
                             seed=args.seed, out_dir=args.out, probe=load_probe(args.probe),
                             num_inference_steps=args.steps, progress=not args.quiet)
    print(json.dumps(results["summary"], indent=2))
    from ..asymk_core.eval.fidelity import format_fidelity

    for clip in results["clips"]:
        if "fidelity" in clip:
            print(f"{clip['name']}: fidelity per window" + (" (FLAGGED)" if clip["fidelity"]["flagged"] else ""))
            for line in format_fidelity(clip["fidelity"]):
                print("  " + line)
    if args.out:
        print(f"wrote {args.out}/eval.json and {args.out}/eval.png")
    return 0
