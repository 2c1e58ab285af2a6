"""ComfyUI nodes for AsymK-Talker (V3 node API, ``comfy_api.latest``).

Thin wrappers over :mod:`asymk_talker.asymk_core`. Only :mod:`.extension` is imported by ComfyUI
(through the root ``comfy_entrypoint``); nothing outside this folder imports ComfyUI, and importing
this package alone imports nothing.
"""
