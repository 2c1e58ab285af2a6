"""SoulX-FlashHead (Pro) checkpoint -> an ``AsymKPipeline`` folder (diffusers format, safetensors).

Inputs: FlashHead's transformer folder (``Model_Pro``: ``config.json`` + safetensors), the original
Wan2.1 VAE file (``VAE_Wan/Wan2.1_VAE.pth``) or a diffusers ``AutoencoderKLWan`` folder, and a
wav2vec2 folder (``facebook/wav2vec2-base-960h``). The weight mapping itself is
:mod:`asymk_core.models.flashhead` / :mod:`asymk_core.models.wan_vae_file`; this module checks the
parts fit, sets FlashHead's generation defaults and writes the folder atomically (a temporary folder
renamed at the end, so a failed conversion leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from diffusers import FlowMatchEulerDiscreteScheduler

from ..asymk_core.errors import input_error
from ..asymk_core.files import check_output_folder
from ..asymk_core.model_folder import check_components_match
from ..asymk_core.models.flashhead import AUDIO_DIM, AUDIO_LAYERS, transformer_from_flashhead
from ..asymk_core.models.wan_init import load_audio_encoder, load_vae
from ..asymk_core.models.wan_vae_file import vae_from_wan_file
from .pipeline_asymk import AsymKPipeline

FLASHHEAD_PIPELINE_CONFIG = dict(
    sampler="distilled", num_inference_steps=4, guidance_scale=1.0, height=512, width=512, fps=25.0,
    chunk_frames=7, kernel_frames=2, first_kernel_frames=1, kernel_source="decoded", colour_correction=1.0,
    window_noise=True,
)
"""Generation defaults of a converted folder, FlashHead Pro's: 4 steps, 512 x 512 at 25 fps, windows
of 9 latent frames (33 video frames): chunk 0 = 1 reference latent + 8 new, later chunks = 2 latents
re-encoded from the last 5 shown (colour-corrected) frames + 7 new, i.e. 28 new frames per chunk."""

FLASHHEAD_SHIFT = 5.0
"""Time shift of FlashHead's schedule: timesteps 1000, 750, 500, 250 shifted by 5."""


def _load_vae(path):
    if Path(path).expanduser().is_dir():
        return load_vae(path)
    return vae_from_wan_file(path, argument="vae")


def build_flashhead_pipeline(transformer: str | os.PathLike, vae: str | os.PathLike,
                             wav2vec2: str | os.PathLike, *, audio_layers: int = AUDIO_LAYERS,
                             audio_dim: int = AUDIO_DIM) -> tuple[AsymKPipeline, dict]:
    """The converted pipeline (in memory) and a report ``dict`` of what was converted and dropped."""
    model, conversion = transformer_from_flashhead(transformer, audio_layers=audio_layers, audio_dim=audio_dim)
    vae_model = _load_vae(vae)
    audio_encoder, feature_extractor = load_audio_encoder(wav2vec2)
    hidden_layers = int(getattr(audio_encoder.config, "num_hidden_layers", 0))
    if hidden_layers < audio_layers:
        raise input_error("wav2vec2", f"it has {hidden_layers} layers, the transformer needs {audio_layers}",
                          "pass facebook/wav2vec2-base-960h")
    components = dict(vae=vae_model, transformer=model, audio_encoder=audio_encoder,
                      feature_extractor=feature_extractor,
                      scheduler=FlowMatchEulerDiscreteScheduler(shift=FLASHHEAD_SHIFT))
    check_components_match(components)
    report = dict(source=dict(transformer=str(transformer), vae=str(vae), wav2vec2=str(wav2vec2)),
                  converted=len(conversion.state_dict), dropped_unused=conversion.unused,
                  key_map=conversion.source_keys)
    return AsymKPipeline(**components, **FLASHHEAD_PIPELINE_CONFIG), report


def convert_flashhead(transformer: str | os.PathLike, vae: str | os.PathLike, wav2vec2: str | os.PathLike,
                      output: str | os.PathLike, *, force: bool = False, **kwargs) -> Path:
    """Convert and save to ``output`` (refused if it exists and is not empty, unless ``force``).

    The folder loads with ``AsymKPipeline.from_pretrained(output)``; ``conversion_report.json`` lists
    every key's source name and the dropped unused ones."""
    target = check_output_folder(output, "output", force=force)
    pipe, report = build_flashhead_pipeline(transformer, vae, wav2vec2, **kwargs)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pipe.save_pretrained(staging)
        (staging / "conversion_report.json").write_text(json.dumps(report, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
