"""``asymk-talker preprocess``: talking-head videos -> latent cache (the same flags as ``train/preprocess.py``)."""

from __future__ import annotations


def register(subparsers) -> None:
    from ..asymk_core.preprocess.options import add_arguments

    parser = subparsers.add_parser("preprocess", help="real videos -> face crops, 25 fps, 16 kHz -> latent cache "
                                                      "for training (resumable, multi-process)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..train.preprocess import run_from_args

    summary = run_from_args(args)
    return 0 if summary["videos_ok"] or not summary["videos_processed"] else 1
