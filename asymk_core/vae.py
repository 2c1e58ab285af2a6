"""The temporal (3D, causal) VAE: presets, latent normalisation and seamless streaming decode.

The VAE is diffusers' ``AutoencoderKLWan``: ``1 + 4k`` video frames <-> ``1 + k`` latent frames,
spatial factor 4 (``tiny``/``synthetic``) or 8 (``base``, the Wan2.1 VAE).
"""

from __future__ import annotations

import threading
from weakref import WeakKeyDictionary

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanRMS_norm

from .errors import input_error

VAE_PRESETS: dict[str, dict] = {
    "tiny": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[],
                 temperal_downsample=[True, True], scale_factor_spatial=4),
    "synthetic": dict(base_dim=16, z_dim=8, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[],
                      temperal_downsample=[True, True], scale_factor_spatial=4),
    # Wan2.1's VAE shape (use the pretrained weights for real data).
    "base": dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], scale_factor_spatial=8),
}


def vae_from_preset(preset: str) -> AutoencoderKLWan:
    """A randomly initialised ``AutoencoderKLWan`` of a named size, with identity latent statistics."""
    if preset not in VAE_PRESETS:
        raise input_error("preset", f"unknown VAE preset {preset!r}", f"use one of {sorted(VAE_PRESETS)}")
    config = dict(VAE_PRESETS[preset])
    z_dim = config["z_dim"]
    return AutoencoderKLWan(**config, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)


def _cpu_inference(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether a CPU float32 inference-only fast path applies: no gradients needed, strided tensors."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.layout != torch.strided:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p is not None and p.requires_grad for p in params)):
        return False
    return all(p is None or p.dtype == torch.float32 for p in params)


class OneDNNCausalConv3d(WanCausalConv3d):
    """``WanCausalConv3d`` whose CPU float32 inference runs through oneDNN in channels-last layout (see
    :func:`use_onednn_convolutions`).

    Everything else (CUDA, half precision, anything that needs gradients) takes the stock path.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "zeros" and _cpu_inference(input, weight, bias):
            # channels-last spares oneDNN two layout reorders per call (about 1.3x on the decoder); the
            # output stays channels-last, and the norms, activations and caches after it accept that
            return torch.mkldnn_convolution(input.contiguous(memory_format=torch.channels_last_3d),
                                            weight.contiguous(memory_format=torch.channels_last_3d), bias,
                                            self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


class FastRMSNorm(WanRMS_norm):
    """``WanRMS_norm`` computing CPU float32 inference as ``x * rsqrt(max(sum_c x^2, eps^2))``.

    The same function as the stock ``F.normalize(x, dim=1)`` (eps = 1e-12 on the norm), which PyTorch
    computes on CPU with a strided ``linalg_vector_norm`` reduction over the channel axis: about a
    quarter of a streaming decode, 5-15x slower than this sum of squares. Other cases take the
    stock path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_first and _cpu_inference(x, self.gamma):
            inverse_norm = (x * x).sum(dim=1, keepdim=True).clamp_min(1e-24).rsqrt()
            return x * inverse_norm * (self.scale * self.gamma) + self.bias
        return super().forward(x)


def use_onednn_convolutions(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Switch the VAE to the CPU inference fast paths; returns ``vae``.

    * Causal 3D convolutions -> :class:`OneDNNCausalConv3d`. For batch-1 inputs as small as those of
      streaming decode (one latent frame at a time), PyTorch's dispatcher picks its reference
      ``slow_conv3d`` kernel instead of oneDNN; on the ``synthetic`` preset that kernel took half of an
      end-to-end CPU render, and oneDNN computes the same convolutions 3-5 times faster.
    * RMS norms -> :class:`FastRMSNorm`.

    Results differ from the stock modules by float rounding only (a few 1e-6 on frames in [0, 1]).
    Training (gradients), CUDA and half precision are unchanged. Idempotent; the convolutions stay
    stock where PyTorch has no oneDNN.
    """
    onednn = torch.backends.mkldnn.is_available()
    for module in vae.modules():
        if type(module) is WanCausalConv3d and onednn:
            module.__class__ = OneDNNCausalConv3d
        elif type(module) is WanRMS_norm:
            module.__class__ = FastRMSNorm
    return vae


def temporal_factor(vae: AutoencoderKLWan) -> int:
    """Video frames per latent frame (after the first): 4 for Wan-style VAEs."""
    return 2 ** sum(vae.config.temperal_downsample)


def spatial_factor(vae: AutoencoderKLWan) -> int:
    return int(vae.config.scale_factor_spatial)


def _latent_stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def normalize_latents(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the unit-scale space the transformer works in."""
    mean, std = _latent_stats(vae, latents)
    return (latents - mean) / std


def denormalize_latents(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    mean, std = _latent_stats(vae, latents)
    return latents * std + mean


_ENCODE_LOCKS: WeakKeyDictionary = WeakKeyDictionary()
_ENCODE_LOCKS_GUARD = threading.Lock()


def _encode_lock(vae: AutoencoderKLWan) -> threading.Lock:
    """The lock of ``vae``'s encoder. diffusers' ``AutoencoderKLWan.encode`` keeps its causal cache on the
    module (``clear_cache``, ``_enc_feat_map``, ``_enc_conv_idx``), so two threads encoding with one VAE
    would mix their caches; encoding is once per render (the reference), so serialising it costs little."""
    with _ENCODE_LOCKS_GUARD:
        return _ENCODE_LOCKS.setdefault(vae, threading.Lock())


def encode_video(vae: AutoencoderKLWan, video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 1 + 4k, H, W]`` in [-1, 1] -> normalised latents ``[B, C, 1 + k, H/s, W/s]`` (posterior mode).
    Safe to call from several threads with one VAE."""
    vae_dtype = next(vae.parameters()).dtype
    with _encode_lock(vae):
        latents = vae.encode(video.to(vae_dtype)).latent_dist.mode()
    return normalize_latents(vae, latents.float())


class StreamingDecoder:
    """Decode a latent stream chunk by chunk, exactly as if it were decoded in one call.

    diffusers' ``AutoencoderKLWan.decode`` clears the causal-convolution cache on every call, so
    decoding chunks separately would restart the temporal context at each chunk boundary (visible
    seams). This keeps the cache between calls instead, calling the VAE's own decoder frame by frame
    the way ``AutoencoderKLWan._decode`` does. Memory is constant: the cache holds a few frames of
    features per causal convolution.

    The first latent frame ever decoded yields 1 video frame, every later one yields ``4``.
    """

    def __init__(self, vae: AutoencoderKLWan):
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        num_convs = sum(1 for _ in self._causal_convs())
        self._feature_cache: list = [None] * num_convs
        self._first = True

    def _causal_convs(self):
        return (m for m in self.vae.decoder.modules() if isinstance(m, WanCausalConv3d))

    @property
    def started(self) -> bool:
        """Whether any latent frame was decoded since the last :meth:`reset`."""
        return not self._first

    def get_state(self) -> dict:
        """The causal state, to continue this stream elsewhere (e.g. after a restart).

        ``{"first": bool, "cache": [None | "Rep" | tensor, ...]}`` (one entry per causal
        convolution; ``"Rep"`` is diffusers' marker for a replicated first frame). Tensors are the
        cache itself, not copies: save or clone them before decoding further.
        """
        return {"first": self._first, "cache": list(self._feature_cache)}

    def set_state(self, state: dict) -> None:
        """Restore a :meth:`get_state` result (tensors are moved to the VAE's device and dtype).

        Decoding then continues exactly as the stream that produced the state would have.
        """
        cache = state.get("cache") if isinstance(state, dict) else None
        expected = sum(1 for _ in self._causal_convs())
        if not isinstance(cache, list) or len(cache) != expected:
            got = len(cache) if isinstance(cache, list) else type(cache).__name__
            raise input_error("decoder_state", f"expected {expected} cache entries for this VAE, got {got}",
                              "restore a state saved from a decoder of the same VAE")
        parameter = next(self.vae.parameters())
        restored = []
        for entry in cache:
            if entry is None or (isinstance(entry, str) and entry == "Rep"):
                restored.append(entry)
            elif isinstance(entry, torch.Tensor):
                restored.append(entry.to(device=parameter.device, dtype=entry.dtype))
            else:
                raise input_error("decoder_state", f"unexpected cache entry {type(entry).__name__}",
                                  "restore a state saved by get_state()", kind=TypeError)
        self._feature_cache = restored
        self._first = bool(state.get("first", True))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, f, h, w]`` -> video ``[B, 3, n, H, W]`` in [-1, 1]."""
        return torch.cat(list(self.decode_frames(latents)), dim=2)

    @torch.no_grad()
    def decode_frames(self, latents: torch.Tensor):
        """Like :meth:`decode`, yielding the video of each latent frame as soon as it is decoded:
        ``[B, 3, 1 or 4, H, W]`` in [-1, 1] (live output shows a chunk's first frames early)."""
        vae_dtype = next(self.vae.parameters()).dtype
        hidden = self.vae.post_quant_conv(denormalize_latents(self.vae, latents).to(vae_dtype))
        for index in range(hidden.shape[2]):
            video = self.vae.decoder(
                hidden[:, :, index : index + 1],
                feat_cache=self._feature_cache,
                feat_idx=[0],
                first_chunk=self._first,
            )
            self._first = False
            yield video.clamp(-1.0, 1.0).float()
