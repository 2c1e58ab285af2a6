"""The original Wan2.1 VAE single file (``Wan2.1_VAE.pth`` or ``.safetensors``) -> diffusers' ``AutoencoderKLWan``.

Keys are renamed by diffusers' own ``convert_wan_vae_to_diffusers``; the model is Wan2.1's layout
(``dim_mult [1, 2, 4, 4]``, 2 residual blocks, temporal downsampling ``[False, True, True]``, spatial
factor 8) with the base width and latent channels read from the weights. A ``.pth`` file is read
with ``torch.load(weights_only=True)``: tensors only, no Python objects.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from ..errors import input_error

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def read_weights_file(path: str | os.PathLike, argument: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a weights-only ``.pth``/``.pt``/``.ckpt``."""
    import pickle

    file = Path(path).expanduser()
    if not file.is_file():
        raise input_error(argument, f"no file at {str(path)!r}", "pass the downloaded Wan2.1_VAE.pth")
    if file.suffix not in SUFFIXES:
        raise input_error(argument, f"{file.name} is not one of {list(SUFFIXES)}", "pass Wan2.1_VAE.pth")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        raise input_error(argument, f"{file} could not be read as weights ({type(error).__name__})",
                          "re-download the file (a .pth must hold tensors only)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise input_error(argument, f"{file} does not hold a flat dict of tensors", "pass Wan2.1_VAE.pth")
    return state


def vae_from_wan_file(path: str | os.PathLike, argument: str = "vae") -> AutoencoderKLWan:
    """``AutoencoderKLWan`` (eval mode) holding the weights of an original-format Wan2.1 VAE file."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    original = read_weights_file(path, argument)
    if "encoder.conv1.weight" not in original or "conv2.weight" not in original:
        raise input_error(argument, f"{Path(path).name} has no Wan VAE keys (encoder.conv1, conv2)",
                          "pass the original Wan2.1 VAE file (Wan2.1_VAE.pth)")
    base_dim, z_dim = original["encoder.conv1.weight"].shape[0], original["conv2.weight"].shape[0]
    stats = {} if z_dim == 16 else dict(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    vae = AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim, **stats)  # Wan2.1 defaults (and its latent stats)
    converted = convert_wan_vae_to_diffusers(dict(original))
    targets = vae.state_dict()
    missing = sorted(set(targets) - set(converted))
    unexpected = sorted(set(converted) - set(targets))
    wrong = [k for k in targets if k in converted and converted[k].shape != targets[k].shape]
    if missing or unexpected or wrong:
        problem = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "", f"unknown {unexpected[:3]}" if unexpected else "",
            f"wrong shape {wrong[:3]}" if wrong else "") if part)
        raise input_error(argument, f"{Path(path).name} is not a Wan2.1 VAE ({problem})",
                          "pass the original Wan2.1_VAE.pth; nothing was written")
    vae.load_state_dict(converted, strict=True)
    return vae.eval()
