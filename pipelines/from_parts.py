"""Assemble an ``AsymKPipeline`` folder from pretrained parts (Wan2.1 transformer, VAE, wav2vec2).

The conversions themselves are :mod:`asymk_core.models.wan_init`; this module only puts the parts
together next to the pipeline class and saves the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffusers import FlowMatchEulerDiscreteScheduler

from ..asymk_core.audio import encoder_dims
from ..asymk_core.errors import input_error
from ..asymk_core.model_folder import SCHEDULER_SHIFT, check_components_match, preset_components
from ..asymk_core.models.transformer import AsymKTransformer
from ..asymk_core.models.wan_init import load_audio_encoder, load_vae, transformer_from_wan
from .pipeline_asymk import AsymKPipeline


def build_pipeline_from_pretrained_parts(output_dir: str | os.PathLike | None = None, *, vae=None,
                                         audio_encoder=None, transformer=None, wan=None, preset: str = "base",
                                         transformer_overrides: dict | None = None, audio_attn_init: str = "new",
                                         scheduler_shift: float | None = None, **pipeline_config):
    """Assemble an ``AsymKPipeline`` from pretrained parts (and save it to ``output_dir`` if given).

    ``vae``: a folder/Hub id (``load_vae``) or an ``AutoencoderKLWan``; ``audio_encoder``: a wav2vec2
    folder/Hub id, ``"log-mel"``, or a ``(model, feature_extractor)`` pair; ``transformer``: an
    ``AsymKTransformer`` or its folder; or ``wan``: a Wan2.1 transformer folder/Hub id for
    :func:`transformer_from_wan` (with ``transformer_overrides``). Components not given come from ``preset``
    (random init). ``audio_dim``/``audio_layers`` of a new transformer follow the audio encoder.
    Returns the pipeline; ``pipe.transformer.wan_init_report`` holds the report when ``wan`` was used.
    """
    components, config = preset_components(preset)
    if vae is not None:
        components["vae"] = vae if hasattr(vae, "encode") else load_vae(vae)
    if audio_encoder is not None:
        if isinstance(audio_encoder, tuple):
            components["audio_encoder"], components["feature_extractor"] = audio_encoder
        elif isinstance(audio_encoder, (str, os.PathLike)):
            components["audio_encoder"], components["feature_extractor"] = load_audio_encoder(audio_encoder)
        else:
            components["audio_encoder"], components["feature_extractor"] = audio_encoder, None
    layers, dim = encoder_dims(components["audio_encoder"])
    overrides = {"audio_dim": dim, "audio_layers": layers, **(transformer_overrides or {})}
    if transformer is not None and wan is not None:
        raise input_error("transformer", "both transformer and wan were given", "pass one of them")
    if transformer is not None:
        components["transformer"] = (transformer if isinstance(transformer, AsymKTransformer)
                                     else AsymKTransformer.from_pretrained(str(transformer)))
    elif wan is not None:
        components["transformer"] = transformer_from_wan(wan, preset=preset, audio_attn_init=audio_attn_init,
                                                         **overrides)
    else:
        components["transformer"] = AsymKTransformer.from_preset(preset, **overrides)
    components["scheduler"] = FlowMatchEulerDiscreteScheduler(
        shift=float(scheduler_shift if scheduler_shift is not None else SCHEDULER_SHIFT.get(preset, 5.0)))
    check_components_match(components)
    config.update(pipeline_config)
    pipe = AsymKPipeline(**components, **config)
    if output_dir is not None:
        pipe.save_pretrained(str(output_dir))
        report = getattr(components["transformer"], "wan_init_report", None)
        if report is not None:
            Path(output_dir, "wan_init_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return pipe
