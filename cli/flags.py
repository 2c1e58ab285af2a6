"""The one mapping from the library's parameter names to the command line's flags.

Library errors name the Python parameter (`` `num_inference_steps` ``); every ``asymk-talker``
command shows them naming its flag (`` `--steps` ``), when the command has that flag.
"""

from __future__ import annotations

from ..asymk_core.errors import error_argument, rename_argument

FLAGS = {
    "pretrained_model_name_or_path": "--model",
    "image": "--image",
    "audio": "--audio",
    "output": "--output",
    "fps": "--fps",
    "height": "--height",
    "width": "--width",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "chunk_frames": "--chunk-frames",
    "kernel_frames": "--kernel-frames",
    "sampler": "--sampler",
    "seed": "--seed",
    "generator": "--seed",
    "device": "--device",
    "dtype": "--dtype",
    "seconds": "--seconds",
    "paste_back": "--paste-back",
    "face_box": "--face-box",
    "face_padding": "--face-padding",
    "transformer": "--transformer",
    "vae": "--vae",
    "wav2vec2": "--wav2vec2",
}


def as_cli_error(error: BaseException, flags) -> BaseException:
    """``error`` naming the command's flag for its parameter; ``flags``: the option strings the command has."""
    argument = error_argument(error)
    flag = FLAGS.get(argument) if argument else None
    return rename_argument(error, flag) if flag and flag in flags else error
