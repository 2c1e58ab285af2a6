"""The choice lists every front end offers (CLI, ComfyUI nodes, benchmarks), defined once; import-light.

``SAMPLERS``: ``teacher`` (multi-step Euler with audio guidance) or ``distilled`` (the few-step
student), see :mod:`.sampling`. ``DTYPES``: weight precision names, ``auto`` = bf16 on CUDA, fp32
otherwise.
"""

from __future__ import annotations

SAMPLERS = ("teacher", "distilled")
DTYPES = ("auto", "fp32", "fp16", "bf16")


def resolve_device_dtype(device: str, dtype: str):
    """``auto`` device -> cuda when available else cpu; ``auto`` dtype -> bf16 on cuda, fp32 on cpu.
    Returns ``(device, torch.dtype)``."""
    import torch  # here, so that the choice lists above stay import-light

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
