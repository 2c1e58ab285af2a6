"""Pretrained initialisation: :func:`transformer_from_wan` and loaders for the real-data components.

Wan2.1 (diffusers ``WanTransformer3DModel`` folders) -> :class:`AsymKTransformer`
----------------------------------------------------------------------------------
The two models share parameter names, so most weights copy directly:

* ``condition_embedder.time_embedder.*``, ``condition_embedder.time_proj.*``, ``proj_out.*``,
  ``blocks.N.attn1.*`` (q/k/v/out + RMS norms), ``blocks.N.ffn.*``: same shape, copied;
* ``scale_shift_table`` ``[1, 2, D]`` -> ``[1, 1, 2, D]`` and ``blocks.N.scale_shift_table``
  ``[1, 6, D]`` -> ``[1, 1, 6, D]`` (the extra axis is the per-frame modulation axis);
* ``patch_embedding.weight`` ``[D, C_wan, 1, 2, 2]`` -> ours ``[D, 2C + 1, 1, 2, 2]``: Wan's first
  ``C`` input channels (the noisy video latents, for T2V and I2V alike) go to our first ``C``
  (window latents); the reference-latent and kernel-mask channels start at zero, so the
  initialised model is exactly Wan on the video latents. The bias is copied.

New (kept at their fresh initialisation): ``audio_projection.*``, ``blocks.N.audio_attn.*`` (output
projection zero, so audio starts as a no-op) and ``blocks.N.norm_audio.*``. With
``audio_attn_init="attn2"`` the audio cross-attention's q/k/v and norms start from Wan's text
cross-attention (``attn2``) and ``norm_audio`` from ``norm2`` instead (the output stays zero).
Unused Wan weights: ``condition_embedder.text_embedder.*``, ``blocks.N.attn2.*`` and ``norm2``
(text cross-attention), I2V's ``condition_embedder.image_embedder.*`` and ``add_k/v_proj``, and
blocks beyond ``num_layers`` when a shallower model is asked for.

Component loaders
-----------------
:func:`resolve_pretrained` (local folder, or a Hub id via ``huggingface_hub.snapshot_download``),
:func:`load_vae` and :func:`load_audio_encoder` (wav2vec2 folder or ``"log-mel"``).
``pipelines.from_parts.build_pipeline_from_pretrained_parts`` assembles them into a complete
``AsymKPipeline`` folder for real-data training (``model.pipeline`` in a training config).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file

from ..audio import LogMelAudioEncoder
from ..errors import input_error
from .transformer import PRESETS, AsymKTransformer

logger = logging.getLogger("asymk_talker.wan_init")

WAN_SHAPE_KEYS = ("num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers", "freq_dim", "eps",
                  "rope_max_seq_len", "patch_size")


# ------------------------------------------------------------------------------------- locating
def resolve_pretrained(name_or_path: str | os.PathLike, *, allow_patterns: list[str] | None = None,
                       local_files_only: bool = False, revision: str | None = None,
                       cache_dir: str | None = None, argument: str = "path") -> Path:
    """A local folder for ``name_or_path``: an existing folder as is, else a Hub repository id
    fetched with ``huggingface_hub.snapshot_download`` (``allow_patterns`` limits what is fetched)."""
    if not isinstance(name_or_path, (str, os.PathLike)) or str(name_or_path) == "":
        raise input_error(argument, f"expected a folder or Hub id, got {name_or_path!r}", "pass a local folder path")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise input_error(argument, f"no folder at {text!r}", "pass an existing local folder or a Hub id like "
                          "'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=allow_patterns, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only))
    except Exception as error:
        raise input_error(argument, f"could not fetch {text!r} from the Hugging Face Hub ({type(error).__name__})",
                          "check the id and the network, or download it and pass the local folder") from error


def _component_folder(root: Path, subfolder: str, config_name: str = "config.json") -> Path:
    """``root`` if it holds ``config_name``, else ``root/subfolder`` (a whole diffusers pipeline)."""
    if (root / config_name).is_file():
        return root
    if (root / subfolder / config_name).is_file():
        return root / subfolder
    raise input_error("path", f"{root} has no {config_name} (nor {subfolder}/{config_name})",
                      f"pass the {subfolder} folder of a diffusers-format model")


# ------------------------------------------------------------------------------------ reading Wan
def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    single = folder / "diffusion_pytorch_model.safetensors"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    bins = folder / "diffusion_pytorch_model.bin"
    if bins.is_file():
        return torch.load(str(bins), map_location="cpu", weights_only=True)
    raise input_error("path", f"{folder} has no diffusion_pytorch_model.safetensors (or sharded index)",
                      "pass a diffusers-format WanTransformer3DModel folder")


def read_wan_transformer(path: str | os.PathLike, **resolve_kwargs) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a diffusers ``WanTransformer3DModel`` folder (the folder itself or
    a pipeline folder with ``transformer/``), without building the model."""
    root = resolve_pretrained(path, allow_patterns=["transformer/*", "config.json", "diffusion_pytorch_model*"],
                              argument="path", **resolve_kwargs)
    folder = _component_folder(root, "transformer")
    config = json.loads((folder / "config.json").read_text())
    if config.get("_class_name") not in (None, "WanTransformer3DModel"):
        raise input_error("path", f"{folder} holds a {config.get('_class_name')}, not a WanTransformer3DModel",
                          "pass a Wan2.1 diffusers folder (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)")
    return config, _read_state_dict(folder)


# ----------------------------------------------------------------------------------------- mapping
@dataclass
class WanInitReport:
    """What :func:`from_wan` did: parameter names of our model that were ``initialized`` from Wan
    (``reshaped`` and ``partial`` are subsets), ``new`` ones (fresh init), and ``unused`` Wan keys."""

    source: str
    initialized: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    partial: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @staticmethod
    def _group(names: list[str]) -> list[str]:
        """Collapse ``blocks.N.`` so the summary lists modules once: ``blocks.*.audio_attn.to_q.weight``."""
        return sorted({re.sub(r"^blocks\.\d+\.", "blocks.*.", n) for n in names})

    def modules(self, names: list[str]) -> list[str]:
        """Top-level module names (``blocks.*.audio_attn``, ``audio_projection``, ...) of ``names``."""
        out = set()
        for name in self._group(names):
            parts = name.split(".")
            out.add(".".join(parts[:3]) if parts[0] == "blocks" else parts[0])
        return sorted(out)

    def summary(self) -> str:
        lines = [f"AsymKTransformer initialised from Wan weights at {self.source}:",
                 f"  initialised: {len(self.initialized)} tensors ({len(self.reshaped)} reshaped, "
                 f"{len(self.partial)} partial)"]
        lines += [f"    partial {k}: {v}" for k, v in self.partial.items()]
        lines.append(f"  new (fresh init): {len(self.new)} tensors in {', '.join(self.modules(self.new)) or '-'}")
        lines.append(f"  unused Wan weights: {len(self.unused)} tensors in {', '.join(self.modules(self.unused)) or '-'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "initialized": self.initialized, "reshaped": self.reshaped,
                "partial": self.partial, "new": self.new, "unused": self.unused,
                "new_modules": self.modules(self.new), "unused_modules": self.modules(self.unused)}


def _wan_source_key(name: str, audio_attn_init: str) -> str | None:
    """The Wan key our parameter ``name`` comes from (``None``: a new parameter)."""
    if name.startswith("audio_projection."):
        return None
    match = re.match(r"^blocks\.(\d+)\.(.*)$", name)
    if match:
        rest = match.group(2)
        if rest.startswith("audio_attn.to_out."):
            return None
        if rest.startswith("audio_attn.") or rest.startswith("norm_audio."):
            if audio_attn_init != "attn2":
                return None
            rest = rest.replace("audio_attn.", "attn2.", 1).replace("norm_audio.", "norm2.", 1)
        return f"blocks.{match.group(1)}.{rest}"
    return name


def wan_shape_config(wan_config: dict) -> dict:
    """Our config keys implied by a Wan config (heads, head dim, FFN, layers, frequency dim, ...)."""
    out = {key: wan_config[key] for key in WAN_SHAPE_KEYS if key in wan_config}
    if "patch_size" in out:
        out["patch_size"] = tuple(out["patch_size"])
    out["latent_channels"] = int(wan_config.get("out_channels") or wan_config.get("in_channels", 16))
    return out


def init_from_wan_state(model, wan_state: dict[str, torch.Tensor], *, audio_attn_init: str = "new",
                        source: str = "state_dict") -> WanInitReport:
    """Copy matching Wan weights into ``model`` (an :class:`AsymKTransformer`) in place; returns the report."""
    if audio_attn_init not in ("new", "attn2"):
        raise input_error("audio_attn_init", f"{audio_attn_init!r} is not an option", "use 'new' or 'attn2'")
    report = WanInitReport(source=source)
    used: set[str] = set()
    channels = int(model.config.latent_channels)
    mismatches = []
    own = model.state_dict()
    with torch.no_grad():
        for name, target in own.items():
            key = _wan_source_key(name, audio_attn_init)
            if key is None or key not in wan_state:
                report.new.append(name)
                continue
            value = wan_state[key].to(dtype=target.dtype)
            if name == "patch_embedding.weight" and value.shape != target.shape:
                if value.ndim != 5 or value.shape[0] != target.shape[0] or value.shape[2:] != target.shape[2:] \
                        or value.shape[1] < channels:
                    mismatches.append(f"{name}: Wan {tuple(value.shape)} vs ours {tuple(target.shape)}")
                    continue
                fresh = torch.zeros_like(target)
                fresh[:, :channels] = value[:, :channels]
                target.copy_(fresh)
                report.partial[name] = (f"Wan input channels 0..{channels - 1} -> ours 0..{channels - 1}; ours "
                                        f"{channels}..{target.shape[1] - 1} (reference latents, kernel mask) zero; "
                                        f"Wan channels {channels}..{value.shape[1] - 1} unused")
            elif value.shape != target.shape:
                if value.numel() == target.numel() and name.endswith("scale_shift_table"):
                    target.copy_(value.reshape(target.shape))
                    report.reshaped.append(name)
                else:
                    mismatches.append(f"{name}: Wan {tuple(value.shape)} vs ours {tuple(target.shape)}")
                    continue
            else:
                target.copy_(value)
            report.initialized.append(name)
            used.add(key)
    if mismatches:
        raise input_error("overrides", "the Wan weights do not fit this model's shape: " + "; ".join(mismatches[:5])
                          + (f" (and {len(mismatches) - 5} more)" if len(mismatches) > 5 else ""),
                          "do not override heads / head dim / ffn_dim / latent_channels, or use a matching Wan model")
    report.unused = sorted(k for k in wan_state if k not in used)
    return report


def transformer_from_wan(path: str | os.PathLike, *, preset: str = "base", audio_attn_init: str = "new",
                         torch_dtype: torch.dtype | None = None, return_report: bool = False,
                         local_files_only: bool = False, **overrides):
    """An :class:`AsymKTransformer` converted from Wan2.1 weights (one way): the ``preset`` shape (default ``base``) with
    the Wan model's shape (heads, head dim, FFN, layers, frequency dim, patch, latent channels) and
    then ``overrides``, initialised from a diffusers ``WanTransformer3DModel`` folder (or a pipeline
    folder with ``transformer/``, or a Hub id, fetched with ``snapshot_download``). The report
    (:class:`WanInitReport`) is logged, kept as ``model.wan_init_report`` and returned as
    ``(model, report)`` when ``return_report``. ``num_layers`` may be overridden to fewer layers
    than Wan has (the first blocks are used)."""
    if preset not in PRESETS:
        raise input_error("preset", f"unknown preset {preset!r}", f"use one of {sorted(PRESETS)}")
    wan_config, wan_state = read_wan_transformer(path, local_files_only=local_files_only)
    config = {**PRESETS[preset], **wan_shape_config(wan_config), **overrides}
    model = AsymKTransformer(**config)
    report = init_from_wan_state(model, wan_state, audio_attn_init=audio_attn_init, source=str(path))
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    model.wan_init_report = report
    logger.info("%s", report.summary())
    return (model, report) if return_report else model


# ------------------------------------------------------------------------------- other components
def load_vae(path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **resolve_kwargs):
    """``AutoencoderKLWan`` from a VAE folder or a pipeline folder / Hub id with ``vae/`` (e.g. Wan2.1's)."""
    root = resolve_pretrained(path, allow_patterns=["vae/*", "config.json", "diffusion_pytorch_model*"],
                              argument="vae", **resolve_kwargs)
    folder = _component_folder(root, "vae")
    kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    return AutoencoderKLWan.from_pretrained(str(folder), **kwargs).eval()


def load_audio_encoder(path: str | os.PathLike | None, torch_dtype: torch.dtype | None = None, **resolve_kwargs):
    """``(audio_encoder, feature_extractor)``: ``"log-mel"``/``None`` -> (``LogMelAudioEncoder()``,
    ``None``); a wav2vec2 folder or Hub id (e.g. ``facebook/wav2vec2-base-960h``) ->
    (``Wav2Vec2Model``, ``Wav2Vec2FeatureExtractor``)."""
    if path in (None, "log-mel", "logmel"):
        return LogMelAudioEncoder().eval(), None
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    root = resolve_pretrained(path, allow_patterns=["*.json", "*.safetensors", "*.txt"], argument="audio_encoder",
                              **resolve_kwargs)
    folder = root / "audio_encoder" if (root / "audio_encoder" / "config.json").is_file() else root
    extractor_folder = root / "feature_extractor" if (root / "feature_extractor").is_dir() else folder
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    model = Wav2Vec2Model.from_pretrained(str(folder), **kwargs).eval()
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(extractor_folder))
    except OSError:
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                             return_attention_mask=False)
        logger.warning("no preprocessor_config.json in %s; using a default Wav2Vec2FeatureExtractor", extractor_folder)
    return model, extractor
