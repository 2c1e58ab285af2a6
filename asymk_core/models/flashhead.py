"""SoulX-FlashHead transformer weights (original Wan naming) -> :class:`AsymKTransformer`, strictly.

FlashHead's ``WanModelAudioProject`` is a Wan2.1 DiT whose text cross-attention attends to audio
tokens instead. Its layout, and the options of ours that reproduce it:

* input ``[noisy | reference]`` latents on channels, no mask channel (``mask_channel=False``);
* one timestep for the whole window, prefix (kernel) frames included (``kernel_timestep="shared"``);
* audio: per video frame a window of 5 wav2vec2 feature frames x 12 layers x 768, projected to
  32 tokens per latent frame for every window frame (``audio_projector="flashhead"``);
* full self-attention over the window (``kernel_attention="full"``).

Key mapping (their name -> ours): diffusers' ``convert_wan_transformer_to_diffusers`` renames the
Wan parts (``self_attn.q`` -> ``attn1.to_q``, ``ffn.0`` -> ``ffn.net.0.proj``, ``time_embedding.0``
-> ``condition_embedder.time_embedder.linear_1``, ``head.head`` -> ``proj_out``, ...); then
``cross_attn`` (diffusers ``attn2``) -> ``audio_attn``, its affine pre-norm ``norm3`` (diffusers
``norm2``) -> ``norm_audio``, ``modulation`` ``[1, k, D]`` -> ``scale_shift_table`` ``[1, 1, k, D]``,
and ``audio_proj.{proj1, proj1_vf, proj2, proj3, norm}`` -> ``audio_projection.{proj_first,
proj_rest, proj_mid, proj_out, norm}``. ``text_embedding.*`` and ``audio_emb.*`` exist in their
model but its forward never uses them; they are dropped (and counted in the report). Any other key
left over, any of ours not provided, or any shape that differs is an error: nothing is converted
partially.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import input_error
from .transformer import AsymKTransformer

UNUSED_PREFIXES = ("text_embedding.", "audio_emb.")
"""FlashHead parameters its forward never reads."""

AUDIO_LAYERS, AUDIO_DIM, AUDIO_WINDOW = 12, 768, 5
"""FlashHead's audio input: wav2vec2-base hidden states 1..12 (width 768), 5-frame windows."""

_OURS = [
    (r"^blocks\.(\d+)\.attn2\.", r"blocks.\1.audio_attn."),
    (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm_audio."),
    (r"^audio_proj\.proj1_vf\.", "audio_projection.proj_rest."),
    (r"^audio_proj\.proj1\.", "audio_projection.proj_first."),
    (r"^audio_proj\.proj2\.", "audio_projection.proj_mid."),
    (r"^audio_proj\.proj3\.", "audio_projection.proj_out."),
    (r"^audio_proj\.norm\.", "audio_projection.norm."),
]


@dataclass
class FlashHeadConversion:
    """``state_dict`` in our names; ``source_keys`` ours -> theirs; ``unused``: their keys dropped."""

    state_dict: dict[str, torch.Tensor]
    source_keys: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"converted {len(self.state_dict)} tensors; dropped {len(self.unused)} unused "
                f"({', '.join(sorted({k.split('.')[0] for k in self.unused})) or '-'})")


def our_key(their_key: str) -> str:
    """Our parameter name for one FlashHead key (no check that it exists; a key diffusers' Wan
    renames cannot handle comes back as ``"<unmapped>" + key``, which no parameter has)."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    try:
        names = list(convert_wan_transformer_to_diffusers({their_key: torch.zeros(1)}).keys())
    except Exception:  # keys of other Wan variants (face adapter, motion encoder) that need real tensors
        names = []
    if len(names) != 1:
        return "<unmapped>" + their_key
    name = names[0]
    for pattern, replacement in _OURS:
        name = re.sub(pattern, replacement, name)
    return name


def flashhead_transformer_config(config: dict, state_dict: dict[str, torch.Tensor], *,
                                 audio_layers: int = AUDIO_LAYERS, audio_dim: int = AUDIO_DIM,
                                 argument: str = "transformer") -> dict:
    """Our :class:`AsymKTransformer` config for a FlashHead ``config.json`` and its weights."""
    needed = ("dim", "in_dim", "ffn_dim", "out_dim", "freq_dim", "num_heads", "num_layers", "patch_size")
    missing = [key for key in needed if key not in config]
    if missing:
        raise input_error(argument, f"its config.json lacks {missing}", "pass a SoulX-FlashHead model folder "
                          "(e.g. SoulX-FlashHead-1_3B/Model_Pro) with its config.json")
    dim, heads, out_dim = int(config["dim"]), int(config["num_heads"]), int(config["out_dim"])
    if config.get("has_image_input"):
        raise input_error(argument, "it has an image (CLIP) input, which FlashHead's talking-head models do not",
                          "pass the Model_Pro folder of SoulX-FlashHead")
    if int(config["in_dim"]) != 2 * out_dim:
        raise input_error(argument, f"in_dim {config['in_dim']} is not 2 x out_dim ({out_dim}): not the "
                          "[noisy | reference] layout", "pass a SoulX-FlashHead (Pro) model folder")
    if dim % heads:
        raise input_error(argument, f"dim {dim} is not a multiple of num_heads {heads}", "check its config.json")
    patch = tuple(int(p) for p in config["patch_size"])
    stride = tuple(int(s) for s in config.get("vae_stride", (4, 8, 8)))
    try:
        first = state_dict["audio_proj.proj1.weight"].shape
        rest = state_dict["audio_proj.proj1_vf.weight"].shape
        hidden = state_dict["audio_proj.proj2.weight"].shape[0]
        tokens_out = state_dict["audio_proj.proj3.weight"].shape[0]
    except KeyError as error:
        raise input_error(argument, f"its weights have no {error.args[0]!r}", "pass a complete SoulX-FlashHead "
                          "transformer (all diffusion_pytorch_model*.safetensors files)") from None
    per_window = audio_layers * audio_dim
    window, extra = divmod(first[1], per_window)
    if extra or rest[1] != (window + stride[0] - 1) * per_window or tokens_out % dim:
        raise input_error(argument, f"its audio projector (inputs {first[1]} / {rest[1]}, outputs {tokens_out}) "
                          f"does not fit {audio_layers} audio layers x {audio_dim} and dim {dim}",
                          "pass the matching audio layers / width, or a SoulX-FlashHead folder")
    return dict(
        latent_channels=out_dim, patch_size=patch, num_attention_heads=heads, attention_head_dim=dim // heads,
        ffn_dim=int(config["ffn_dim"]), num_layers=int(config["num_layers"]), freq_dim=int(config["freq_dim"]),
        eps=float(config.get("eps", 1e-6)), audio_dim=audio_dim, audio_layers=audio_layers, audio_window=window,
        audio_tokens_per_frame=tokens_out // dim, audio_hidden_dim=hidden, kernel_attention="full",
        kernel_timestep="shared", mask_channel=False, audio_projector="flashhead",
        audio_frames_per_latent=stride[0],
    )


def convert_flashhead_state_dict(state_dict: dict[str, torch.Tensor], model: AsymKTransformer,
                                 argument: str = "transformer") -> FlashHeadConversion:
    """Map every FlashHead key onto ``model``'s parameters (names and shapes checked, nothing left out).

    ``model`` only supplies names and shapes (it may live on the meta device)."""
    conversion = FlashHeadConversion(state_dict={})
    theirs_by_ours: dict[str, str] = {}
    for key in state_dict:
        if key.startswith(UNUSED_PREFIXES):
            conversion.unused.append(key)
            continue
        ours = our_key(key)
        if ours in theirs_by_ours:
            raise input_error(argument, f"keys {theirs_by_ours[ours]!r} and {key!r} both map to {ours!r}",
                              "pass one SoulX-FlashHead checkpoint, not a mix")
        theirs_by_ours[ours] = key
    targets = model.state_dict()
    unknown = sorted(theirs_by_ours[o] for o in theirs_by_ours if o not in targets)
    missing = sorted(o for o in targets if o not in theirs_by_ours)
    if unknown:
        raise input_error(argument, f"{len(unknown)} key(s) have no place in the converted model, e.g. "
                          f"{unknown[:3]}", "pass an unmodified SoulX-FlashHead transformer; nothing was written")
    if missing:
        raise input_error(argument, f"{len(missing)} weight(s) are missing, e.g. {missing[:3]} (ours)",
                          "pass the complete transformer folder (every safetensors shard); nothing was written")
    for ours, theirs in theirs_by_ours.items():
        value, target = state_dict[theirs], targets[ours]
        if value.shape != target.shape:
            if not (ours.endswith("scale_shift_table") and value.numel() == target.numel()):
                raise input_error(argument, f"{theirs!r} has shape {tuple(value.shape)}, the model needs "
                                  f"{tuple(target.shape)}", "pass the transformer that matches its config.json; "
                                  "nothing was written")
            value = value.reshape(target.shape)
        conversion.state_dict[ours] = value
        conversion.source_keys[ours] = theirs
    return conversion


def read_flashhead_transformer(path: str | os.PathLike, argument: str = "transformer"
                               ) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a FlashHead transformer folder (``config.json`` + safetensors)."""
    from .wan_init import _read_state_dict

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise input_error(argument, f"no folder at {str(path)!r}", "pass the downloaded Model_Pro folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise input_error(argument, f"{folder} has no config.json", "pass the Model_Pro folder itself")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise input_error(argument, f"{config_path} is not valid JSON ({error.msg})", "re-download it") from None
    try:
        state = _read_state_dict(folder)
    except ValueError as error:
        raise input_error(argument, f"{folder} has no diffusion_pytorch_model*.safetensors weights",
                          "pass the Model_Pro folder with its weights") from error
    return config, state


def transformer_from_flashhead(path: str | os.PathLike, *, audio_layers: int = AUDIO_LAYERS,
                               audio_dim: int = AUDIO_DIM, argument: str = "transformer"
                               ) -> tuple[AsymKTransformer, FlashHeadConversion]:
    """An :class:`AsymKTransformer` holding a FlashHead transformer's weights (their dtype kept)."""
    from accelerate import init_empty_weights

    config, state = read_flashhead_transformer(path, argument)
    ours = flashhead_transformer_config(config, state, audio_layers=audio_layers, audio_dim=audio_dim,
                                        argument=argument)
    with init_empty_weights(include_buffers=False):  # parameters on meta; RoPE tables real
        model = AsymKTransformer(**ours)
    conversion = convert_flashhead_state_dict(state, model, argument)
    model.load_state_dict(conversion.state_dict, strict=True, assign=True)
    return model.eval(), conversion
