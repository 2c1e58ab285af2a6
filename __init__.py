"""AsymK-Talker: real-time, long-horizon audio-driven talking-head generation.

This folder is both the Python package ``asymk_talker`` and a ComfyUI custom-node pack.
Importing it is cheap and never touches ComfyUI: the library classes load on first use, and
ComfyUI finds the nodes through :func:`comfy_entrypoint`, which it alone calls.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "AsymKPipeline": ".pipelines.pipeline_asymk",
    "AsymKPipelineOutput": ".pipelines.pipeline_asymk",
    "AsymKTransformer": ".asymk_core.models.transformer",
    "LogMelAudioEncoder": ".asymk_core.audio",
    "InputError": ".asymk_core.errors",
    "InvalidInputValue": ".asymk_core.errors",
    "InvalidInputType": ".asymk_core.errors",
}

__all__ = [*_LAZY_EXPORTS, "comfy_entrypoint", "__version__"]
_warned: list = []


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        from .asymk_core.environment import BROKEN_TORCHAUDIO_FIX, hide_broken_torchaudio

        broken = hide_broken_torchaudio()  # a torchaudio built for another torch would break transformers
        if broken and not _warned:
            import logging

            logging.getLogger("asymk_talker").warning("the installed torchaudio does not import (%s). %s.", broken,
                                                      BROKEN_TORCHAUDIO_FIX)
            _warned.append(True)
        module = importlib.import_module(_LAZY_EXPORTS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def comfy_entrypoint():
    """ComfyUI (V3 node API) entry point: returns the extension that lists the AsymK nodes."""
    from .nodes import extension

    return await extension.comfy_entrypoint()
