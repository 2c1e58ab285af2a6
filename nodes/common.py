"""Shared plumbing for the AsymK nodes: custom types, the model folder type, ComfyUI model management,
progress / interruption, and resolving the sampling widgets. No method logic lives here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..asymk_core.choices import SAMPLERS
from ..asymk_core.errors import input_error
from ..asymk_core.seeds import seeded_generator

logger = logging.getLogger("asymk_talker")

CATEGORY = "AsymK-Talker"
MODEL_FOLDER_TYPE = "asymk"
NO_MODEL = "(no AsymK model found: put one in models/asymk/<name>/)"
SAMPLER_CHOICES = ("auto", *SAMPLERS)

# Custom socket types (only AsymK nodes produce or accept them).
AsymKPipelineType = io.Custom("ASYMK_PIPELINE")
AsymKReferenceType = io.Custom("ASYMK_REFERENCE")
AsymKAudioType = io.Custom("ASYMK_AUDIO")
AsymKFaceCropType = io.Custom("ASYMK_FACE_CROP")  # an asymk_core.face_crop.PasteBack: the photo and its box


# ------------------------------------------------------------------------------- model folders
def register_model_folder() -> None:
    """Register ``models/asymk`` as ComfyUI's "asymk" model folder type (idempotent).

    ``extra_model_paths.yaml`` entries named ``asymk`` are added by ComfyUI before custom nodes load;
    this only appends the default folder, so those extra paths are kept.
    """
    folder_paths.add_model_folder_path(MODEL_FOLDER_TYPE, os.path.join(folder_paths.models_dir, MODEL_FOLDER_TYPE))


def model_roots() -> list[Path]:
    try:
        return [Path(p) for p in folder_paths.get_folder_paths(MODEL_FOLDER_TYPE)]
    except KeyError:
        return []


def _pipeline_folders(root: Path, max_depth: int = 3) -> list[str]:
    """Sub-folders of ``root`` (up to ``max_depth`` levels) that contain ``model_index.json``."""
    found = []
    if not root.is_dir():
        return found
    for current, dirs, files in os.walk(root, followlinks=True):
        relative = Path(current).relative_to(root)
        if relative.parts and "model_index.json" in files:
            found.append(relative.as_posix())
            dirs[:] = []  # a pipeline folder's component sub-folders are not models
            continue
        if len(relative.parts) >= max_depth:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return found


def default_model_dir() -> Path:
    from ..asymk_core.model_folder import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def list_models() -> list[str]:
    """Model names for the loader's dropdown: the shipped default first (the widget's default
    value) when it is installed, then the folders under every ``asymk`` path."""
    names: list[str] = []
    default = default_model_dir()
    if (default / "model_index.json").is_file():
        names.append(default.name)
    for root in model_roots():
        for name in _pipeline_folders(root):
            if name not in names:
                names.append(name)
    return names or [NO_MODEL]


def resolve_model(name: str) -> Path:
    for root in model_roots():
        candidate = root / name
        if (candidate / "model_index.json").is_file():
            return candidate
    default = default_model_dir()
    if name == default.name and (default / "model_index.json").is_file():
        return default
    roots = ", ".join(str(r) for r in model_roots()) or "ComfyUI/models/asymk"
    raise input_error("model", f"no AsymK model folder named {name!r} (searched {roots})",
                      "put a pipeline folder (with model_index.json) in ComfyUI/models/asymk/<name>/ "
                      "and refresh the page, e.g. `asymk-talker init --preset synthetic --output "
                      "ComfyUI/models/asymk/synthetic`")


# --------------------------------------------------------------------------- loaded model object
class _Components(torch.nn.Module):
    """The pipeline's torch modules under one parent, so ComfyUI's ModelPatcher can move them.

    (diffusers models have a read-only ``device`` property, which ModelPatcher sets, so the
    patcher wraps this plain container instead of a diffusers model.)
    """

    def __init__(self, pipe):
        super().__init__()
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        if isinstance(pipe.audio_encoder, torch.nn.Module):
            self.audio_encoder = pipe.audio_encoder


@dataclass
class AsymKModel:
    """What flows through an ``ASYMK_PIPELINE`` socket: the pipeline plus its ComfyUI ModelPatcher.

    ComfyUI's model management owns device placement: :meth:`ready` asks it to load the
    components on the compute device (unloading other models if needed), and ComfyUI moves
    them back to the offload device when it needs memory, on "Unload models" / ``/free``, or
    ``comfy.model_management.unload_all_models()``. The object itself lives in ComfyUI's node
    output cache, so "Free model and node cache" drops it entirely.
    """

    pipe: object
    patcher: object
    folder: Path
    dtype: torch.dtype
    attention: str

    @classmethod
    def create(cls, pipe, folder: Path, dtype: torch.dtype, attention: str) -> "AsymKModel":
        patcher = comfy.model_patcher.ModelPatcher(
            _Components(pipe),
            load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device(),
        )
        return cls(pipe=pipe, patcher=patcher, folder=folder, dtype=dtype, attention=attention)

    def ready(self):
        """Load (or keep) the components on the compute device; returns the pipeline."""
        comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)
        return self.pipe

    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device


@dataclass
class AsymKReference:
    """What flows through an ``ASYMK_REFERENCE`` socket: the preprocessed portrait and its TRE latents.

    ``image`` is ``[1, 3, height, width]`` in [-1, 1] (CPU); ``latents`` maps a chunk window length
    (kernel + chunk latent frames) to TRE reference latents ``[1, C, window, h, w]`` (CPU).
    """

    image: torch.Tensor
    height: int
    width: int
    latents: dict[int, torch.Tensor] = field(default_factory=dict)

    def latents_for(self, pipe, window_frames: int) -> torch.Tensor:
        """TRE latents for this window (encoded once per window length, then reused)."""
        if window_frames not in self.latents:
            from ..asymk_core.tre import encode_reference

            vae = pipe.vae
            with torch.no_grad():
                latents = encode_reference(vae, self.image.to(vae.device), window_frames)
            self.latents[window_frames] = latents.cpu()
        return self.latents[window_frames]


# ------------------------------------------------------------------------------------ checking
def expect(value, cls, argument: str, what: str):
    """Raise a clear TypeError when a socket carries the wrong kind of object."""
    if not isinstance(value, cls):
        raise input_error(argument, f"expected {what}, got {type(value).__name__}",
                          f"connect the output of the node that makes {what}", kind=TypeError)
    return value


def audio_features_class():
    """The audio feature types an AUDIO_FEATURES socket may carry (``isinstance`` accepts the tuple)."""
    from ..asymk_core.audio import FrameAudioFeatures
    from ..asymk_core.audio_flashhead import FlashHeadAudioFeatures

    return FrameAudioFeatures, FlashHeadAudioFeatures


# ------------------------------------------------------------------------ progress / interrupts
class StepProgress:
    """ComfyUI progress bar over ``num_chunks * steps`` denoising steps; honours "Cancel" between steps."""

    def __init__(self, num_chunks: int, steps: int):
        self.steps = steps
        self.bar = comfy.utils.ProgressBar(num_chunks * steps)

    def __call__(self, chunk_index: int, step: int, num_steps: int, latents) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(chunk_index * self.steps + step + 1)
        return None

    def chunk_done(self, chunk_index: int) -> None:
        self.bar.update_absolute((chunk_index + 1) * self.steps)
        comfy.model_management.throw_exception_if_processing_interrupted()


# ----------------------------------------------------------------------------- sampling widgets
def sampling_inputs() -> list:
    """The KCLG settings shared by the Chunk Loop Sampler and Render Video (0 / auto = the model's default)."""
    return [
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Noise seed (the same seed gives the same video)."),
        io.Int.Input("steps", default=0, min=0, max=200,
                     tooltip="Denoising steps per chunk. 0 = the model's default "
                             "(4 for the distilled student, 20 for the synthetic teacher)."),
        io.Int.Input("chunk_frames", default=0, min=0, max=64,
                     tooltip="Latent frames generated per chunk (each = 4 video frames). 0 = the model's default."),
        io.Int.Input("kernel_frames", default=0, min=0, max=16,
                     tooltip="Motion-kernel length carried from chunk to chunk. 0 = the model's default "
                             "(keep what the model was trained with)."),
        io.Float.Input("guidance", default=0.0, min=0.0, max=50.0, step=0.1, round=0.01,
                       tooltip="Audio guidance (teacher sampler). 0 = the model's default; 1 = no guidance."),
        io.Combo.Input("sampler", options=list(SAMPLER_CHOICES), default="auto",
                       tooltip="auto = the model's own sampler; distilled = few-step student (4 steps); "
                               "teacher = multi-step Euler with audio guidance."),
    ]


def prepare_session(model: AsymKModel, reference: AsymKReference, audio, seed, steps, chunk_frames, kernel_frames,
                    guidance, sampler):
    """Widget values (0 / ``auto`` = the model folder's default) -> a prepared render session.

    The pipeline's one resolver fills in the defaults, exactly as for the CLI and ``pipe(...)``:
    e.g. ``steps`` 0 is the model's configured steps whichever sampler is chosen."""
    if sampler not in SAMPLER_CHOICES:
        raise input_error("sampler", f"unknown sampler {sampler!r}", f"use one of {list(SAMPLER_CHOICES)}")
    pipe = model.ready()
    generator = seeded_generator(int(seed) % (1 << 64))  # all 64 bits of the seed count
    session = pipe.prepare(
        None, audio, height=reference.height, width=reference.width, num_inference_steps=int(steps) or None,
        guidance_scale=float(guidance) or None, chunk_frames=int(chunk_frames) or None,
        kernel_frames=int(kernel_frames) or None, sampler=None if sampler == "auto" else sampler,
        generator=generator, reference_latents=lambda window: reference.latents_for(pipe, window),
    )
    session.image = reference.image  # the portrait, for models whose loop colour-corrects towards it
    return session


def comfy_image_to_frames(frames: torch.Tensor) -> torch.Tensor:
    """Decoded chunk frames ``[f, H, W, 3]`` -> a ComfyUI IMAGE piece (float32, intermediate device)."""
    return frames.float().to(comfy.model_management.intermediate_device())
