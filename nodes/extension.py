"""The AsymK-Talker ComfyUI extension (V3 node API).

ComfyUI calls the package root's ``comfy_entrypoint``, which delegates here. Every node group is
imported on its own: a missing optional dependency disables only the nodes that need it, with a
log line naming the package and the fix, and never stops ComfyUI from starting.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

from comfy_api.latest import ComfyExtension, io

logger = logging.getLogger("asymk_talker")

# Packages every AsymK node needs (model loading and the method), then extra ones per node group.
CORE_PACKAGES = ("diffusers", "transformers", "safetensors", "numpy", "PIL")
NODE_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (module, node classes, extra packages it needs)
    (".loader", ("AsymKLoadModel",), ()),
    (".encode", ("AsymKReferenceEncode", "AsymKAudioEncode"), ("scipy",)),
    (".sampling", ("AsymKChunkLoopSampler", "AsymKDecode"), ()),
    (".sampling", ("AsymKRenderVideo",), ("av",)),
    # Face Crop finds faces with OpenCV when it is installed (any opencv-python build < 5); without it
    # the face box is given by hand, so OpenCV is not required here.
    (".photo", ("AsymKFaceCrop", "AsymKPasteBack"), ()),
)
FIX = "install the AsymK requirements into ComfyUI's Python: `pip install -r requirements.txt` in this folder"

disabled: dict[str, str] = {}
"""Node id -> why it is disabled (filled by :func:`node_list`)."""


def missing_packages(packages) -> list[str]:
    missing = []
    for name in packages:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a parent package is missing, or a module is half-imported
            missing.append(name)
    return missing


def node_list() -> list[type[io.ComfyNode]]:
    """Every AsymK node whose dependencies import; the rest are logged and left out."""
    disabled.clear()
    nodes: list[type[io.ComfyNode]] = []
    from ..asymk_core.environment import BROKEN_TORCHAUDIO_FIX, hide_broken_torchaudio

    broken = hide_broken_torchaudio()
    if broken:
        logger.warning("AsymK-Talker: the installed torchaudio does not import (%s). Fix: %s.", broken,
                       BROKEN_TORCHAUDIO_FIX)
    core_missing = missing_packages(CORE_PACKAGES)
    for module_name, class_names, packages in NODE_GROUPS:
        missing = core_missing + missing_packages(packages)
        reason = None
        if missing:
            reason = f"missing Python package(s) {', '.join(missing)}"
        else:
            try:
                module = importlib.import_module(module_name, __package__)
                nodes.extend(getattr(module, name) for name in class_names)
            except Exception as error:  # a broken optional install must not break ComfyUI start-up
                reason = f"import failed ({type(error).__name__}: {error})"
        if reason:
            for name in class_names:
                disabled[name] = reason
            logger.warning("AsymK-Talker: %s disabled: %s. Fix: %s.", ", ".join(class_names), reason, FIX)
    return nodes


class AsymKExtension(ComfyExtension):
    async def on_load(self) -> None:
        try:
            from .common import register_model_folder

            register_model_folder()
        except Exception as error:
            logger.warning("AsymK-Talker: could not register the models/asymk folder: %s", error)

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()


async def comfy_entrypoint() -> AsymKExtension:
    extension = AsymKExtension()
    await extension.on_load()
    return extension
