"""AsymKTransformer: a Wan2.1-style DiT over [motion kernel | noisy chunk] latent frames.

Inputs per call (one KCLG chunk window of ``F = kernel_frames + chunk_frames`` latent frames):

* ``hidden_states``      ``[B, C, F, h, w]``  kernel latents (clean) followed by the noisy chunk
* ``reference_latents``  ``[B, C, F, h, w]``  TRE reference latents, concatenated on channels
* ``timestep``           ``[B, F]``           flow-matching time x 1000 per frame; kernel frames 0
* ``audio_features``     ``[B, F - kernel_frames, r, W, L, D_a]`` per chunk latent frame: ``r`` video
  frames, each a window of ``W`` audio feature frames from ``L`` encoder layers of width ``D_a``
  (``audio_projector="windows"``); or ``[B, 1 + r (F - 1), W, L, D_a]``, one window per video frame
  of the whole window, kernel frames included (``audio_projector="flashhead"``)

Output: the flow-matching velocity ``[B, C, F, h, w]`` (only the chunk frames are used).

Config options that keep other checkpoints loadable (defaults: this project's models):

* ``kernel_timestep``: ``"zero"`` (kernel frames carry t = 0) or ``"shared"`` (kernel frames carry
  the chunk's timestep, whatever the caller passes for them);
* ``mask_channel``: ``True`` adds a kernel-mask input channel (``2 C + 1`` in), ``False`` does not
  (``2 C``);
* ``audio_projector``: ``"windows"`` (:class:`AudioProjection`, audio on the chunk frames) or
  ``"flashhead"`` (:class:`FlashHeadAudioProjection`, audio on every window frame);
* ``kernel_attention``: ``"full"`` or ``"block_causal"`` (see :mod:`.kernel_attention`).

The audio cross-attention is the same in every variant: affine LayerNorm before it, biases on
q/k/v/out, RMS norm on q and k across heads, no gate.

Blocks reuse diffusers' Wan building blocks (``WanAttention``, ``WanRotaryPosEmbed``,
``FeedForward``) and keep Wan's parameter names, so Wan2.1 weights map onto the ``base`` preset.
Audio enters through a frame-local cross-attention: each chunk latent frame attends only to its own
audio tokens; its output projection is zero-initialised so a fresh model ignores audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin, FeedForward
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanRotaryPosEmbed
from diffusers.utils import BaseOutput

from ..errors import input_error
from .audio_projection import AUDIO_PROJECTIONS, AudioProjection, FlashHeadAudioProjection
from .kernel_attention import KERNEL_ATTENTION, BlockCausalAttnProcessor, KernelCache

PRESETS: dict[str, dict] = {
    # Seconds on CPU; used by the tests.
    "tiny": dict(
        latent_channels=4, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2,
        freq_dim=32, audio_dim=80, audio_layers=1, audio_hidden_dim=64, audio_tokens_per_frame=2,
    ),
    # The shipped default: trainable on CPU, real time on CPU at 64x64.
    "synthetic": dict(
        latent_channels=8, num_attention_heads=4, attention_head_dim=32, ffn_dim=384, num_layers=4,
        freq_dim=64, audio_dim=80, audio_layers=1, audio_hidden_dim=128, audio_tokens_per_frame=2,
    ),
    # Wan2.1-1.3B-shaped, with wav2vec2-base audio (13 hidden states of width 768).
    "base": dict(
        latent_channels=16, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
        freq_dim=256, audio_dim=768, audio_layers=13, audio_hidden_dim=512, audio_tokens_per_frame=4,
    ),
}


KERNEL_TIMESTEPS = ("zero", "shared")
"""``AsymKTransformer(kernel_timestep=...)`` choices; ``zero`` is every model of this project."""


@dataclass
class AsymKTransformerOutput(BaseOutput):
    """``sample``: predicted velocity ``[B, C, F, h, w]``."""

    sample: torch.Tensor


class AsymKConditionEmbedder(nn.Module):
    """Per-frame timestep embedding: ``[B, F]`` -> temb ``[B, F, D]`` and modulation ``[B, F, 6, D]``."""

    def __init__(self, dim: int, freq_dim: int):
        super().__init__()
        self.timesteps_proj = Timesteps(num_channels=freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, dim * 6)

    def forward(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames = timestep.shape
        frequencies = self.timesteps_proj(timestep.flatten())
        weight_dtype = self.time_embedder.linear_1.weight.dtype
        temb = self.time_embedder(frequencies.to(weight_dtype))
        # time_embedder stays fp32 in half-precision models (_keep_in_fp32_modules); time_proj does not.
        modulation = self.time_proj(self.act_fn(temb).to(self.time_proj.weight.dtype))
        return temb.view(batch, frames, -1), modulation.view(batch, frames, 6, -1)


class AsymKTransformerBlock(nn.Module):
    """Self-attention with 3D RoPE over the whole window, frame-local audio cross-attention, FFN.

    AdaLN-zero modulation comes per token (from per-frame timesteps) as ``[B, S, 6, D]``.
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float = 1e-6, block_causal: bool = False):
        super().__init__()
        head_dim = dim // num_heads
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        processor = BlockCausalAttnProcessor() if block_causal else WanAttnProcessor()
        self.attn1 = WanAttention(dim=dim, heads=num_heads, dim_head=head_dim, eps=eps, processor=processor)
        self.norm_audio = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.audio_attn = WanAttention(
            dim=dim, heads=num_heads, dim_head=head_dim, eps=eps, cross_attention_dim_head=head_dim,
            processor=WanAttnProcessor(),
        )
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 1, 6, dim) / dim**0.5)

    def forward(
        self,
        hidden_states: torch.Tensor,
        modulation: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        audio_tokens: torch.Tensor | None,
        kernel_frames: int,
        tokens_per_frame: int,
        attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """``kernel_frames``: leading frames of ``hidden_states`` without audio, i.e. the kernel frames
        present (0 when they come from a :class:`KernelCache`, or when the audio covers the whole
        window); ``attention_kwargs`` go to a block-causal self-attention."""
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = (
            self.scale_shift_table + modulation.float()
        ).unbind(2)

        normed = (self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn_output = self.attn1(normed, None, None, rotary_emb, **(attention_kwargs or {}))
        hidden_states = (hidden_states.float() + attn_output * gate_msa).type_as(hidden_states)

        if audio_tokens is not None:
            # Frame-local: fold chunk frames into the batch so frame j only sees audio tokens of frame j.
            batch, _, dim = hidden_states.shape
            chunk_start = kernel_frames * tokens_per_frame
            chunk_states = hidden_states[:, chunk_start:]
            chunk_frames = audio_tokens.shape[1]
            queries = self.norm_audio(chunk_states.float()).type_as(hidden_states)
            queries = queries.reshape(batch * chunk_frames, tokens_per_frame, dim)
            context = audio_tokens.flatten(0, 1)
            audio_output = self.audio_attn(queries, context, None, None)
            audio_output = audio_output.reshape(batch, chunk_frames * tokens_per_frame, dim)
            hidden_states = torch.cat([hidden_states[:, :chunk_start], chunk_states + audio_output], dim=1)

        normed = (self.norm3(hidden_states.float()) * (1 + c_scale) + c_shift).type_as(hidden_states)
        ff_output = self.ffn(normed)
        return (hidden_states.float() + ff_output.float() * c_gate).type_as(hidden_states)


class AsymKTransformer(ModelMixin, ConfigMixin, AttentionMixin):
    """Kernel-conditioned, audio-driven video DiT (see module docstring for the tensor contract).

    Build a preset with ``AsymKTransformer.from_preset("tiny")``. Choose the attention backend with
    diffusers' ``set_attention_backend("native")`` (torch SDPA, default) or ``("xformers")``.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["AsymKTransformerBlock"]
    _keep_in_fp32_modules = ["time_embedder", "scale_shift_table", "norm1", "norm3", "norm_audio"]
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 2,
        attention_head_dim: int = 16,
        ffn_dim: int = 64,
        num_layers: int = 2,
        freq_dim: int = 32,
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
        audio_dim: int = 80,
        audio_layers: int = 1,
        audio_window: int = 5,
        audio_tokens_per_frame: int = 2,
        audio_hidden_dim: int = 64,
        kernel_attention: str = "full",
        kernel_timestep: str = "zero",
        mask_channel: bool = True,
        audio_projector: str = "windows",
        audio_frames_per_latent: int = 4,
    ):
        super().__init__()
        for name, value, choices in (("kernel_attention", kernel_attention, KERNEL_ATTENTION),
                                     ("kernel_timestep", kernel_timestep, KERNEL_TIMESTEPS),
                                     ("audio_projector", audio_projector, AUDIO_PROJECTIONS)):
            if value not in choices:
                raise input_error(name, f"got {value!r}", f"use one of {list(choices)}")
        if kernel_attention == "block_causal" and (kernel_timestep != "zero" or audio_projector != "windows"):
            raise input_error("kernel_attention", "block_causal caches the kernel tokens, so they must be clean "
                              "(kernel_timestep='zero') and without audio (audio_projector='windows')",
                              "use kernel_attention='full' with these options")
        dim = num_attention_heads * attention_head_dim
        # Channels in: noisy/kernel latents, TRE reference latents, and (optionally) a kernel mask channel.
        in_channels = 2 * latent_channels + int(bool(mask_channel))

        self.rope = WanRotaryPosEmbed(attention_head_dim, tuple(patch_size), rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=tuple(patch_size), stride=tuple(patch_size))
        self.condition_embedder = AsymKConditionEmbedder(dim, freq_dim)
        if audio_projector == "flashhead":
            self.audio_projection = FlashHeadAudioProjection(
                audio_dim=audio_dim, audio_layers=audio_layers, audio_window=audio_window,
                hidden_dim=audio_hidden_dim, tokens_per_frame=audio_tokens_per_frame, out_dim=dim,
                frames_per_latent=audio_frames_per_latent,
            )
        else:
            self.audio_projection = AudioProjection(
                audio_dim=audio_dim, audio_layers=audio_layers, audio_window=audio_window,
                hidden_dim=audio_hidden_dim, tokens_per_frame=audio_tokens_per_frame, out_dim=dim,
            )
        self.blocks = nn.ModuleList(
            [AsymKTransformerBlock(dim, ffn_dim, num_attention_heads, eps, kernel_attention == "block_causal")
             for _ in range(num_layers)]
        )
        self.norm_out = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, latent_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 1, 2, dim) / dim**0.5)
        self.gradient_checkpointing = False
        self._zero_init_audio_outputs()

    def _zero_init_audio_outputs(self) -> None:
        for block in self.blocks:
            nn.init.zeros_(block.audio_attn.to_out[0].weight)
            nn.init.zeros_(block.audio_attn.to_out[0].bias)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "AsymKTransformer":
        """A randomly initialised model of a named size: ``tiny``, ``synthetic`` or ``base``."""
        if preset not in PRESETS:
            raise input_error("preset", f"unknown preset {preset!r}", f"use one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        reference_latents: torch.Tensor,
        audio_features: torch.Tensor | None,
        kernel_frames: int,
        return_dict: bool = True,
        kernel_cache: KernelCache | None = None,
    ) -> AsymKTransformerOutput | tuple[torch.Tensor]:
        """Predict the velocity for one ``[kernel | chunk]`` window. Shapes: see the module docstring.

        ``audio_features=None`` drops the audio condition (the unconditional branch of guidance).
        ``kernel_cache`` (``kernel_attention="block_causal"`` only): an empty cache is filled by
        this call; a filled one skips the kernel tokens (their keys/values and output come from
        it), which gives the same output.
        """
        block_causal = self.config.get("kernel_attention", "full") == "block_causal"
        if kernel_cache is not None and not block_causal:
            raise input_error("kernel_cache", "this model uses full kernel attention",
                              "pass kernel_cache only to a model with kernel_attention='block_causal'")
        cached = kernel_cache is not None and kernel_cache.filled
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        if p_t != 1:
            raise ValueError("AsymKTransformer needs a temporal patch size of 1 (frame-local audio).")
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, frames)
        if self.config.get("kernel_timestep", "zero") == "shared" and 0 < kernel_frames < frames:
            chunk_time = timestep[:, kernel_frames:kernel_frames + 1]
            timestep = torch.cat([chunk_time.expand(-1, kernel_frames), timestep[:, kernel_frames:]], dim=1)
        inputs = [hidden_states, reference_latents.to(hidden_states.dtype)]
        if self.config.get("mask_channel", True):
            kernel_mask = torch.zeros_like(hidden_states[:, :1])
            kernel_mask[:, :, :kernel_frames] = 1.0
            inputs.append(kernel_mask)
        model_input = torch.cat(inputs, dim=1)

        rotary_emb = self.rope(model_input)
        tokens_per_frame = (height // p_h) * (width // p_w)
        present_kernel_frames = kernel_frames
        if cached:  # the chunk frames only: kernel states come from the cache
            skip = kernel_frames * tokens_per_frame
            model_input, timestep = model_input[:, :, kernel_frames:], timestep[:, kernel_frames:]
            rotary_emb = tuple(r[:, skip:] for r in rotary_emb)
            present_kernel_frames = 0
        present_frames = model_input.shape[2]
        tokens = self.patch_embedding(model_input).flatten(2).transpose(1, 2).contiguous()

        temb, modulation = self.condition_embedder(timestep.float())
        # Per-frame conditioning to per-token: [B, F, ...] -> [B, F * tokens_per_frame, ...].
        temb = temb.repeat_interleave(tokens_per_frame, dim=1)
        modulation = modulation.repeat_interleave(tokens_per_frame, dim=1)

        audio_tokens, audio_start = None, present_kernel_frames
        if audio_features is not None:
            audio_tokens = self.audio_projection(audio_features.to(tokens.dtype))
            whole_window = self.config.get("audio_projector", "windows") == "flashhead"
            expected = present_frames if whole_window else present_frames - present_kernel_frames
            if audio_tokens.shape[1] != expected:
                raise input_error("audio_features", f"they give {audio_tokens.shape[1]} latent frames of audio, the "
                                  f"window needs {expected}", "pass audio for the " + (
                                      "whole window (kernel included)" if whole_window else "chunk frames"))
            audio_start = 0 if whole_window else present_kernel_frames

        for index, block in enumerate(self.blocks):
            attention_kwargs = None
            if block_causal:
                slot = None
                if kernel_cache is not None:
                    if not cached:
                        kernel_cache.layers.append({})
                    slot = kernel_cache.layers[index]
                attention_kwargs = {"kernel_tokens": present_kernel_frames * tokens_per_frame, "cache_slot": slot}
            args = (tokens, modulation, rotary_emb, audio_tokens, audio_start, tokens_per_frame, attention_kwargs)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(block, *args)
            else:
                tokens = block(*args)

        shift, scale = (self.scale_shift_table + temb.unsqueeze(2).float()).unbind(2)
        tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = self.proj_out(tokens)

        tokens = tokens.reshape(batch, present_frames, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        output = tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if cached:
            output = torch.cat([kernel_cache.kernel_output.to(output.dtype), output], dim=2)
        elif kernel_cache is not None:
            kernel_cache.kernel_output = output[:, :, :kernel_frames].detach()
        if not return_dict:
            return (output,)
        return AsymKTransformerOutput(sample=output)
