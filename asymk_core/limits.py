"""Sane bounds, checked before anything is allocated: model configs and render sizes.

A model folder's ``config.json`` decides how much memory building the component takes; an edited
or hostile one (``num_layers`` = 1e6, ``rope_max_seq_len`` = 1e9, ``n_mels`` = 1e6,
``num_train_timesteps`` = 3e8) would allocate until the machine dies. :func:`check_component_config`
estimates the parameter count and the largest buffer of each component from its config alone and
refuses absurd ones. :func:`check_render_memory` estimates the memory one chunk needs at a given
output size and refuses a size the device cannot hold, with the figure.

The estimates are deliberately simple (they only need to be right within a small factor): the
parameter formulas follow the layer shapes of each class, and the render estimate was calibrated
on the ``synthetic`` model on the CPU (peak resident memory of a one-chunk render at 64, 128 and
256 px; 256 x 256 measured 335 MB, estimated 360 MB).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import input_error

MAX_PARAMETERS = 5e10  # per component; Wan2.1-14B, the largest backbone in reach, has 1.4e10
MAX_BUFFER_ELEMENTS = 2**26  # one buffer (256 MiB of float32); the base preset's largest is 2.6e5
MAX_LAYERS = 1000  # blocks in one stack (each is its own module); real models have at most ~100
CONFIG_FILES = ("config.json", "scheduler_config.json")
VAE_DECODE_FLOATS_PER_PIXEL = 64  # per top-level decoder channel, per output pixel (calibrated)


# ---------------------------------------------------------------------------------- configs
def _ints(config: dict, *names, default=None) -> list[int] | None:
    values = []
    for name in names:
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return None  # not a size: the class's own validation says what is wrong
        values.append(int(value))
    return values


def _transformer(config: dict) -> tuple[float, dict] | None:
    sizes = _ints(config, "latent_channels", "num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers",
                  "freq_dim", "rope_max_seq_len", "audio_dim", "audio_layers", "audio_window",
                  "audio_tokens_per_frame", "audio_hidden_dim")
    patch = config.get("patch_size", [1, 2, 2])
    if sizes is None or not isinstance(patch, (list, tuple)) or _ints(dict(enumerate(patch)), *range(len(patch))) is None:
        return None
    channels, heads, head_dim, ffn, layers, freq, rope, audio_dim, audio_layers, window, tokens, hidden = sizes
    dim, patch_volume = heads * head_dim, math.prod(int(p) for p in patch)
    block = 8 * dim * dim + 2 * dim * ffn + 8 * dim
    audio_in = window * audio_dim * hidden
    if config.get("audio_projector") == "flashhead":  # every layer, first + later latent frames, a middle layer
        frames_per_latent = _ints(config, "audio_frames_per_latent", default=4) or [4]
        audio_in = (2 * window + frames_per_latent[0] - 1) * audio_layers * audio_dim * hidden + hidden * hidden
    parameters = ((2 * channels + 1) * patch_volume * dim + freq * dim + 7 * dim * dim + audio_layers
                  + audio_in + hidden * tokens * dim + layers * block + dim * channels * patch_volume)
    return float(parameters), {"rope_max_seq_len": 2 * rope * head_dim}


def _vae(config: dict) -> tuple[float, dict] | None:
    sizes = _ints(config, "base_dim", "z_dim", "num_res_blocks")
    mult = config.get("dim_mult", [1, 2, 4, 4])
    if sizes is None or not isinstance(mult, (list, tuple)) or _ints(dict(enumerate(mult)), *range(len(mult))) is None:
        return None
    base, z_dim, res_blocks = sizes
    decoder_base = config.get("decoder_base_dim") or base
    if _ints({"d": decoder_base}, "d") is None:
        return None
    conv = sum(27 * ((b * int(m)) ** 2) * 2 * (res_blocks + 1) for m in mult for b in (base, int(decoder_base)))
    return float(conv + 54 * z_dim * base * (mult[-1] if mult else 1)), {}


def _log_mel(config: dict) -> tuple[float, dict] | None:
    sizes = _ints(config, "n_mels", "n_fft", default=None)
    if sizes is None:
        return None
    n_mels, n_fft = sizes
    return 0.0, {"n_mels": (n_fft // 2 + 1) * n_mels}


def _scheduler(config: dict) -> tuple[float, dict] | None:
    sizes = _ints(config, "num_train_timesteps", default=1000)
    return None if sizes is None else (0.0, {"num_train_timesteps": sizes[0]})


def _wav2vec2(config: dict) -> tuple[float, dict] | None:
    sizes = _ints(config, "hidden_size", "num_hidden_layers", "intermediate_size", "num_conv_pos_embeddings",
                  "num_conv_pos_embedding_groups", default=None)
    conv_dim, conv_kernel = config.get("conv_dim", [512] * 7), config.get("conv_kernel", [10] + [3] * 6)
    if sizes is None or not isinstance(conv_dim, (list, tuple)) or not isinstance(conv_kernel, (list, tuple)) or \
            _ints(dict(enumerate(list(conv_dim) + list(conv_kernel))), *range(len(conv_dim) + len(conv_kernel))) is None:
        return None
    hidden, layers, intermediate, pos_kernel, pos_groups = sizes
    conv = sum(int(a) * int(b) * int(k) for a, b, k in zip([1] + list(conv_dim)[:-1], conv_dim, conv_kernel))
    parameters = conv + layers * (4 * hidden * hidden + 2 * hidden * intermediate) \
        + hidden * hidden * pos_kernel // max(1, pos_groups)
    return float(parameters), {}


ESTIMATORS = {"AsymKTransformer": _transformer, "AutoencoderKLWan": _vae, "LogMelAudioEncoder": _log_mel,
              "FlowMatchEulerDiscreteScheduler": _scheduler, "Wav2Vec2Model": _wav2vec2}


def check_config_bounds(config: dict, class_name: str, where: str, argument: str) -> None:
    """Refuse a component config whose estimated parameters or largest buffer are absurd."""
    estimator = ESTIMATORS.get(class_name)
    estimate = estimator(config) if estimator is not None and isinstance(config, dict) else None
    if estimate is None:
        return
    parameters, buffers = estimate
    fix = "restore the original config file (re-save or re-download the model)"
    for key in ("num_layers", "num_hidden_layers"):
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_LAYERS:
            raise input_error(argument, f"{where} sets {key}={value}, more than the {MAX_LAYERS} layers allowed", fix)
    if parameters > MAX_PARAMETERS:
        sizes = sorted(((v, k) for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)),
                       reverse=True)[:2]
        named = ", ".join(f"{k}={v}" for v, k in sizes)
        raise input_error(argument, f"{where} describes a {class_name} of about {parameters:.1e} parameters "
                          f"({named}), more than the {MAX_PARAMETERS:.0e} allowed", fix)
    available = available_memory("cpu")
    if available is not None and parameters * 2 > available:  # 2 bytes: even half precision needs that
        raise input_error(argument, f"{where} describes a {class_name} of about {parameters:.1e} parameters, "
                          f"at least {parameters * 2 / 2**30:.1f} GiB even in half precision, more than the "
                          f"{available / 2**30:.1f} GiB of memory available", "use a machine with more memory, or " + fix)
    for key, elements in buffers.items():
        if elements > MAX_BUFFER_ELEMENTS:
            raise input_error(argument, f"{where} sets {key}={config.get(key)}, which needs a buffer of "
                              f"{elements:.1e} values, more than the {MAX_BUFFER_ELEMENTS:.1e} allowed", fix)


def check_component_config(subfolder: str | os.PathLike, class_name: str, argument: str) -> None:
    """:func:`check_config_bounds` on a component folder's config file (unreadable ones are left to
    the loader, which reports them)."""
    for name in CONFIG_FILES:
        path = Path(subfolder) / name
        if path.is_file():
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                return
            check_config_bounds(config, class_name, str(path), argument)
            return


# ------------------------------------------------------------------------------ render memory
def available_memory(device) -> int | None:
    """Bytes that can still be allocated on ``device`` (CUDA: free device memory; CPU: the
    system's or the cgroup's available memory), or ``None`` when unknown."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    if device.type != "cpu":
        return None
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's own limit
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            room = int(limit) - used
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def estimate_render_bytes(transformer_config, vae_config, height: int, width: int, chunk_frames: int,
                          kernel_frames: int, bytes_per_value: int = 4) -> int:
    """Memory one chunk needs at ``height x width`` beyond the weights: the transformer's
    activations over the ``[kernel | chunk]`` window (two guidance branches) and the VAE decode
    at full size, which dominates at large sizes."""
    spatial = int(vae_config.get("scale_factor_spatial") or 2 ** (len(vae_config.get("dim_mult", [1, 2, 4, 4])) - 1))
    patch = transformer_config.get("patch_size", [1, 2, 2])
    dim = int(transformer_config["num_attention_heads"]) * int(transformer_config["attention_head_dim"])
    tokens = (kernel_frames + chunk_frames) * (height // spatial // patch[1]) * (width // spatial // patch[2])
    transformer = 2 * tokens * (int(transformer_config["ffn_dim"]) + 10 * dim) * bytes_per_value
    top_channels = int(vae_config.get("decoder_base_dim") or vae_config["base_dim"]) * int(
        vae_config.get("dim_mult", [1])[0])
    decode = VAE_DECODE_FLOATS_PER_PIXEL * top_channels * height * width * bytes_per_value
    return int(transformer + decode)


def check_render_memory(transformer_config, vae_config, height: int, width: int, chunk_frames: int,
                        kernel_frames: int, *, dtype=None, device=None, available: int | None = None,
                        argument: str = "height") -> None:
    """Refuse an output size whose estimated memory exceeds what ``device`` has free."""
    import torch

    bytes_per_value = torch.tensor([], dtype=dtype).element_size() if dtype is not None else 4
    needed = estimate_render_bytes(dict(transformer_config), dict(vae_config), height, width, chunk_frames,
                                   kernel_frames, bytes_per_value)
    available = available_memory(device) if available is None else available
    if available is not None and needed > available:
        gib = 2**30
        raise input_error(argument, f"{height} x {width} needs about {needed / gib:.1f} GiB of memory per chunk "
                          f"(mostly the VAE decode at full size), more than the {available / gib:.1f} GiB "
                          f"available on {torch.device(device or 'cpu')}",
                          "lower height and width (the model's default size is a safe choice), or use a "
                          "device with more memory")
