"""Block-causal kernel attention: the clean kernel tokens attend only to themselves.

In a ``[kernel | chunk]`` window the kernel frames are clean (t = 0) and identical for every
denoising step and both guidance branches of a chunk. If kernel queries see only kernel keys, the
kernel tokens' states in every layer depend on the kernel alone, so their keys and values can be
computed once per chunk (:class:`KernelCache`) and every further transformer call processes the
chunk tokens only; chunk queries attend to kernel + chunk keys as with full attention.

:class:`BlockCausalAttnProcessor` is written here because diffusers' ``WanAttnProcessor`` has no
key/value cache; it computes exactly what ``WanAttnProcessor`` does for the self-attention
(projections, RMS norm across heads, 3D RoPE, ``dispatch_attention_fn``), split into the two blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

KERNEL_ATTENTION = ("full", "block_causal")
"""``AsymKTransformer(kernel_attention=...)`` choices; ``full`` is every model trained before."""


@dataclass
class KernelCache:
    """Per-chunk cache of the kernel tokens: keys/values ``[B, S_k, H, D]`` of each block's
    self-attention, and the model output on the kernel frames ``[B, C, tau, h, w]``.

    Create an empty one per chunk and pass it to every transformer call of that chunk: the first
    call fills it, the others reuse it. A call on the kernel frames alone fills it too
    (:func:`asymk_core.sampling.fill_kernel_cache`), which a sampler can make before the chunk's
    audio is known. Only valid while the kernel, the reference latents and the batch stay the same.
    """

    layers: list = field(default_factory=list)
    kernel_output: torch.Tensor | None = None

    @property
    def filled(self) -> bool:
        return self.kernel_output is not None


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved RoPE on ``[B, S, H, D]`` with ``cos``/``sin`` ``[1, S, 1, D]``."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class BlockCausalAttnProcessor:
    """Self-attention for ``WanAttention`` with kernel tokens attending only to kernel tokens.

    Called as ``attn(hidden_states, None, None, rotary_emb, kernel_tokens=K, cache_slot=slot)``:

    * ``slot`` is ``None`` or an empty dict: ``hidden_states`` ``[B, K + S_c, D]`` is the whole
      window; an empty ``slot`` receives the kernel keys/values (``"key"``, ``"value"``);
    * ``slot`` holds them: ``hidden_states`` ``[B, S_c, D]`` is the chunk only and ``rotary_emb``
      covers the chunk positions.
    """

    _attention_backend = None
    _parallel_config = None

    def _attend(self, query, key, value):
        return dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                     backend=self._attention_backend)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 kernel_tokens: int = 0, cache_slot: dict | None = None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("BlockCausalAttnProcessor is for the window self-attention only (no context, no mask)")
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query, key = _apply_rotary(query, *rotary_emb), _apply_rotary(key, *rotary_emb)
        if cache_slot:  # chunk tokens only; the kernel's keys/values come from the cache
            out = self._attend(query, torch.cat([cache_slot["key"], key], 1), torch.cat([cache_slot["value"], value], 1))
        else:
            out = self._attend(query[:, :kernel_tokens], key[:, :kernel_tokens], value[:, :kernel_tokens])
            if query.shape[1] > kernel_tokens:  # else a kernel-only call (see KernelCache)
                out = torch.cat([out, self._attend(query[:, kernel_tokens:], key, value)], dim=1)
            if cache_slot is not None:
                cache_slot.update(key=key[:, :kernel_tokens], value=value[:, :kernel_tokens])
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))
