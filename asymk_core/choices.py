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
    check_device(device)
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def check_device(device, argument: str = "device") -> None:
    """Refuse a device that cannot render here (before any model is loaded): not a device name,
    ``meta`` (no data), or a backend (CUDA, MPS, ...) this machine or this torch build lacks."""
    import torch

    from .errors import input_error

    fix = "pass auto, cpu, cuda or cuda:N"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise input_error(argument, f"{device!r} is not a device name", fix) from None
    if parsed.type == "meta":
        raise input_error(argument, "'meta' tensors hold no data, so nothing can be rendered on it", fix)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise input_error(argument, f"{device!r} was asked for but CUDA is not available (torch "
                              f"{torch.__version__}, {build})", "use cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise input_error(argument, f"{device!r} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)", "pass cuda:0 .. the last one, or auto")
    elif parsed.type != "cpu":
        backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise input_error(argument, f"{device!r} is not available on this machine", fix)
