"""``asymk-talker synth``: write the synthetic talking-avatar corpus (see :mod:`.corpus`)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="write the synthetic talking-avatar corpus (mp4 + tracks + manifest)")
    parser.add_argument("--out", required=True, help="corpus folder (resumable: finished clips are skipped)")
    parser.add_argument("--identities", type=int, required=True, help="number of identities")
    parser.add_argument("--seconds", type=float, required=True, help="length of every clip")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels (square)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-identities", type=int, default=None, help="default: identities // 5 (at least 1)")
    parser.add_argument("--utterances", type=int, default=4, help="utterances per identity")
    parser.add_argument("--heldout-utterances", type=int, default=1, help="held-out utterances per train identity")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from collections import Counter

    from .corpus import write_corpus

    entries = write_corpus(args.out, args.identities, args.seconds, size=args.size, fps=args.fps, seed=args.seed,
                           heldout_identities=args.heldout_identities, utterances_per_identity=args.utterances,
                           heldout_utterances=args.heldout_utterances, progress=not args.quiet)
    splits = Counter(e["split"] for e in entries)
    print(f"corpus {args.out}: {len(entries)} clips of {args.seconds:g} s "
          f"({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))}); manifest: {args.out}/manifest.jsonl")
    return 0
