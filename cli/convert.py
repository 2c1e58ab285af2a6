"""``asymk-talker convert flashhead``: public checkpoints -> an AsymK pipeline folder.

Thin front end over :mod:`pipelines.convert_flashhead`; errors name this command's flags.
"""

from __future__ import annotations

from .flags import as_cli_error

FLASHHEAD_FLAGS = ("--transformer", "--vae", "--wav2vec2", "--output")


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert a public checkpoint into an AsymK pipeline folder")
    kinds = parser.add_subparsers(dest="source", required=True)
    flashhead = kinds.add_parser("flashhead", help="SoulX-FlashHead-1.3B (Pro): transformer + Wan2.1 VAE + wav2vec2")
    flashhead.add_argument("--transformer", required=True,
                           help="FlashHead transformer folder (SoulX-FlashHead-1_3B/Model_Pro: config.json + safetensors)")
    flashhead.add_argument("--vae", required=True, help="Wan2.1_VAE.pth (or a diffusers AutoencoderKLWan folder)")
    flashhead.add_argument("--wav2vec2", required=True, help="wav2vec2-base-960h folder (transformers format)")
    flashhead.add_argument("--output", required=True, help="pipeline folder to write")
    flashhead.add_argument("--force", action="store_true", help="replace a non-empty --output folder")
    flashhead.set_defaults(func=run_flashhead)


def run_flashhead(args) -> int:
    from ..asymk_core.errors import InputError
    from ..pipelines.convert_flashhead import convert_flashhead

    try:
        folder = convert_flashhead(args.transformer, args.vae, args.wav2vec2, args.output, force=args.force)
    except InputError as error:
        raise as_cli_error(error, FLASHHEAD_FLAGS) from None
    print(f"wrote an AsymK pipeline folder converted from SoulX-FlashHead to {folder}")
    return 0
