"""``asymk-talker eval --real``: FID / FVD / Sync-C / Sync-D / CSIM of generated vs ground-truth videos.

Hooked into the ``eval`` subcommand by :mod:`.eval` (``add_real_arguments`` at registration,
``run_real`` when ``--real`` is given). Import-light: nothing heavy is imported until it runs.
"""

from __future__ import annotations


def add_real_arguments(parser) -> None:
    """Flags of the real-domain evaluation (``--out``, ``--device`` and ``--quiet`` are shared with
    the synthetic evaluation)."""
    group = parser.add_argument_group("real-domain evaluation (--real)")
    group.add_argument("--real", action="store_true",
                       help="score generated videos against real ground truth (FID, FVD, Sync-C/D, CSIM)")
    group.add_argument("--generated", help="folder of generated videos (named like their ground truth)")
    group.add_argument("--ground-truth", dest="ground_truth", help="folder of ground-truth videos (face crops)")
    group.add_argument("--fid-weights", help="Inception TorchScript for FID (e.g. inception-2015-12-05.pt)")
    group.add_argument("--fvd-weights", help="I3D TorchScript for FVD (e.g. i3d_torchscript.pt)")
    group.add_argument("--syncnet", help="scripted SyncNet with forward_lip / forward_aud (Sync-C / Sync-D)")
    group.add_argument("--face-model", help="scripted face-recognition network, 112 x 112 input (CSIM)")
    group.add_argument("--allow-pickle", action="store_true",
                       help="also load weights saved as a pickled Python module (torch.save(model)); unpickling "
                            "runs code from the file, so only use it for files you trust (default: TorchScript, "
                            ".pt2 and weights-only checkpoints)")
    group.add_argument("--max-frames", type=int, default=None, help="frames per video (default: all)")


def run_real(args) -> int:
    import json
    from pathlib import Path

    from ..asymk_core.errors import input_error
    from ..asymk_core.eval.real import evaluate_real

    if not args.generated or not args.ground_truth:
        raise input_error("--generated", "--real needs --generated and --ground-truth folders",
                          "pass both, e.g. --generated out/hdtf_test --ground-truth data/hdtf_test_crops")
    results = evaluate_real(args.generated, args.ground_truth, fid_weights=args.fid_weights,
                            fvd_weights=args.fvd_weights, syncnet=args.syncnet, face_model=args.face_model,
                            max_frames=args.max_frames, device=getattr(args, "device", None) or "cpu",
                            progress=not getattr(args, "quiet", False),
                            allow_pickle=getattr(args, "allow_pickle", False))
    summary = {name: metric["value"] if metric["value"] is not None else f"skipped: {metric['missing']}"
               for name, metric in results["metrics"].items()}
    print(json.dumps(summary, indent=2))
    if getattr(args, "out", None):
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_real.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}/eval_real.json")
    return 0
