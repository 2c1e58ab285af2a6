"""Pipeline folders: presets for new models, and loading saved folders (local or from the Hub).

A pipeline folder is diffusers' format: ``model_index.json`` plus one sub-folder per component
(``vae``, ``transformer``, ``audio_encoder``, ``feature_extractor``, ``scheduler``) with configs and
safetensors weights.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .errors import input_error
from .limits import check_component_config

logger = logging.getLogger("asymk_talker.model_folder")

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = PACKAGE_ROOT / "models" / "asymk-synthetic"

# Generation defaults stored in each preset's pipeline config.
PIPELINE_PRESETS: dict[str, dict] = {
    "tiny": dict(height=32, width=32, fps=25.0, chunk_frames=3, kernel_frames=2, sampler="teacher",
                 num_inference_steps=4, guidance_scale=1.0),
    "synthetic": dict(height=64, width=64, fps=25.0, chunk_frames=4, kernel_frames=3, sampler="teacher",
                      num_inference_steps=20, guidance_scale=3.0),
    "base": dict(height=512, width=512, fps=25.0, chunk_frames=4, kernel_frames=3, sampler="teacher",
                 num_inference_steps=40, guidance_scale=4.0),
}
SCHEDULER_SHIFT = {"tiny": 3.0, "synthetic": 3.0, "base": 5.0}
LOOP_SETTING_NAMES = ("kernel_source", "first_kernel_frames", "colour_correction", "window_noise",
                      "decoder_calibration", "colour_lock")
"""Optional pipeline config entries describing a model's chunk loop (absent: this project's loop)."""


def component_classes() -> dict[str, type]:
    """Class name (as written in ``model_index.json``) -> class, for every loadable component."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from .audio import LogMelAudioEncoder
    from .models.transformer import AsymKTransformer

    classes = [AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, Wav2Vec2FeatureExtractor, Wav2Vec2Model,
               LogMelAudioEncoder, AsymKTransformer]
    return {cls.__name__: cls for cls in classes}


def preset_components(preset: str, seed: int = 0) -> tuple[dict, dict]:
    """Randomly initialised components and pipeline config for ``tiny``, ``synthetic`` or ``base``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from .audio import LogMelAudioEncoder
    from .models.transformer import AsymKTransformer
    from .vae import vae_from_preset

    if preset not in PIPELINE_PRESETS:
        raise input_error("preset", f"unknown preset {preset!r}", f"use one of {sorted(PIPELINE_PRESETS)}")
    torch.manual_seed(seed)
    feature_extractor = None
    if preset == "base":
        from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

        audio_encoder = Wav2Vec2Model(Wav2Vec2Config())  # wav2vec2-base shape; load real weights for real use
        feature_extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                                     return_attention_mask=False)
    else:
        audio_encoder = LogMelAudioEncoder()
    components = dict(
        vae=vae_from_preset(preset).eval(),
        transformer=AsymKTransformer.from_preset(preset).eval(),
        audio_encoder=audio_encoder.eval(),
        feature_extractor=feature_extractor,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SCHEDULER_SHIFT[preset]),
    )
    return components, dict(PIPELINE_PRESETS[preset])


def resolve_model_folder(
    name_or_path: str | os.PathLike | None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> Path:
    """A local pipeline folder for a path, a Hub repository id, or ``None`` (the shipped default)."""
    argument = "pretrained_model_name_or_path"
    if name_or_path is None:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise input_error(argument, f"no default model is installed at {DEFAULT_MODEL_DIR}",
                              "pass the path of a model folder (e.g. one made by `asymk-talker init`)")
        return DEFAULT_MODEL_DIR
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise input_error(argument, f"got {type(name_or_path).__name__}", "pass a folder path or a Hub id",
                          kind=TypeError)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.suffix
    if not looks_like_repo:
        raise input_error(argument, f"no model folder at {text!r}",
                          "pass an existing folder (make one with `asymk-talker init --output DIR`)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir,
                                      local_files_only=bool(local_files_only)))
    except Exception as error:  # network, auth, missing repo: one clear message
        raise input_error(argument, f"could not fetch {text!r} from the Hugging Face Hub ({type(error).__name__})",
                          "check the id and your network, or pass a local folder") from error


def load_pipeline_components(folder: Path, torch_dtype: torch.dtype | None = None) -> tuple[dict, dict]:
    """Load every component listed in ``folder/model_index.json``; returns ``(components, config)``."""
    argument = "pretrained_model_name_or_path"
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise input_error(argument, f"{folder} has no model_index.json, so it is not a pipeline folder",
                          "pass the folder written by save_pretrained or `asymk-talker init`")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as error:
        raise input_error(argument, f"{index_path} is not valid JSON ({error})", "restore the file") from error
    if not isinstance(index, dict):
        raise input_error(argument, f"{index_path} holds a JSON {type(index).__name__}, not an object of components "
                          "and settings", "restore the file (save_pretrained writes it)")
    known_settings = set().union(*PIPELINE_PRESETS.values(), LOOP_SETTING_NAMES)
    classes = component_classes()
    components, config = {}, {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if not (isinstance(value, list) and len(value) == 2):
            if name in known_settings:
                config[name] = value
            else:  # e.g. a setting added by a newer version: ignored, as diffusers does
                logger.warning("%s has an unknown key %r; it was ignored (a folder saved by a newer version of "
                               "asymk_talker?)", index_path, name)
            continue
        class_name = value[1]
        if class_name is None:
            components[name] = None
            continue
        if class_name not in classes:
            raise input_error(argument, f"component {name!r} has unknown class {class_name!r}",
                              f"use one of {sorted(classes)}")
        cls = classes[class_name]
        subfolder = folder / name
        if not subfolder.is_dir():
            raise input_error(argument, f"component folder {subfolder} is missing", "re-save or re-download the model")
        if name in ("transformer", "vae") and not any(
                any(subfolder.glob(pattern)) for pattern in ("*.safetensors", "*.bin")):
            raise input_error(argument, f"{subfolder} has no weights file (diffusion_pytorch_model.safetensors)",
                              "re-save or re-download the model; the folder is incomplete")
        check_component_config(subfolder, class_name, argument)  # absurd sizes: refused before building
        kwargs = {}
        if name in ("transformer", "vae") and not any(subfolder.glob("*.safetensors")):
            kwargs["use_safetensors"] = False  # only a .bin: diffusers would log a failed safetensors lookup
        if torch_dtype is not None and hasattr(cls, "dtype") and name in ("transformer", "vae", "audio_encoder"):
            kwargs["torch_dtype"] = torch_dtype
        try:
            component = cls.from_pretrained(subfolder, **kwargs)
        except Exception as error:  # corrupt safetensors, config/weight mismatch, missing files
            if _refused_pickle(error):
                raise input_error(argument, f"the weights of component {name!r} in {subfolder} are a pickled .bin "
                                  "holding Python objects besides tensors; it was not unpickled, because that "
                                  "could run code from the file", "get the model as safetensors from a source you "
                                  "trust (save_pretrained writes safetensors)") from None
            raise input_error(argument, f"could not load component {name!r} ({class_name}) from {subfolder}: "
                              f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                              "re-save or re-download the model; the folder is incomplete or corrupt") from error
        component._source_folder = subfolder  # what a resumed render's weights digest hashes
        components[name] = component.eval() if hasattr(component, "eval") else component
    for required in ("vae", "transformer", "audio_encoder", "scheduler"):
        if components.get(required) is None:
            raise input_error(argument, f"component {required!r} is missing from {index_path}",
                              "re-save the pipeline with save_pretrained")
    check_components_match(components)
    return components, config


def _refused_pickle(error: BaseException) -> bool:
    """Whether loading failed because ``torch.load(weights_only=True)`` refused a pickled object."""
    import pickle

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, pickle.UnpicklingError) and "global" in str(error).lower():
            return True  # a Python object the weights-only unpickler would not build (not mere garbage)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def check_components_match(components: dict) -> None:
    """Raise a clear error if the VAE, transformer and audio encoder were not made for each other."""
    vae, transformer, audio_encoder = components["vae"], components["transformer"], components["audio_encoder"]
    if vae.config.z_dim != transformer.config.latent_channels:
        raise input_error("pretrained_model_name_or_path",
                          f"the VAE has {vae.config.z_dim} latent channels but the transformer expects "
                          f"{transformer.config.latent_channels}", "use components saved together")
    audio_dim = getattr(audio_encoder, "feature_dim", None) or getattr(audio_encoder.config, "hidden_size", None)
    if audio_dim is not None and audio_dim != transformer.config.audio_dim:
        raise input_error("pretrained_model_name_or_path",
                          f"the audio encoder gives {audio_dim}-dim features but the transformer expects "
                          f"{transformer.config.audio_dim}", "use components saved together")
