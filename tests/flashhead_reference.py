"""Test helpers: SoulX-FlashHead's checkpoint layout at any size, and its transformer forward in plain torch.

``flashhead_state_dict`` makes random weights with FlashHead's key names and shapes
(``original_wan_vae`` / ``tiny_wav2vec2``: the other two inputs of the converter, tiny);
``reference_forward`` computes what FlashHead's ``WanModelAudioProject`` computes (one timestep for
the whole window, ``[noisy | reference]`` channels, audio windows per video frame), written from its
published semantics so the converted :class:`AsymKTransformer` can be checked against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F


def tiny_config(**overrides) -> dict:
    """A FlashHead ``config.json`` (tiny sizes; RoPE needs ``head_dim // 3`` even)."""
    config = dict(_class_name="WanModelAudioProject", dim=48, in_dim=8, ffn_dim=64, out_dim=4, text_dim=12,
                  freq_dim=32, eps=1e-6, vae_stride=[4, 8, 8], patch_size=[1, 2, 2], num_heads=2, num_layers=2,
                  has_image_input=False)
    config.update(overrides)
    return config


def flashhead_state_dict(config: dict, audio_layers: int = 2, audio_dim: int = 8, audio_window: int = 5,
                         hidden: int = 16, tokens: int = 3, audio_emb_dim: int = 768, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights in FlashHead's names and shapes (``audio_emb``/``text_embedding`` included)."""
    g = torch.Generator().manual_seed(seed)
    dim, ffn, freq = config["dim"], config["ffn_dim"], config["freq_dim"]
    patch = config["patch_size"]
    r = config["vae_stride"][0]

    def rand(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / math.sqrt(shape[-1] if len(shape) > 1 else 1.0)
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    def linear(name, out_features, in_features):
        state[f"{name}.weight"] = rand(out_features, in_features)
        state[f"{name}.bias"] = rand(out_features, scale=0.1)

    def norm(name, size, bias=True):
        state[f"{name}.weight"] = 1.0 + rand(size, scale=0.1)
        if bias:
            state[f"{name}.bias"] = rand(size, scale=0.1)

    state: dict[str, torch.Tensor] = {}
    state["patch_embedding.weight"] = rand(dim, config["in_dim"], *patch, scale=0.2)
    state["patch_embedding.bias"] = rand(dim, scale=0.1)
    linear("text_embedding.0", dim, config["text_dim"])
    linear("text_embedding.2", dim, dim)
    linear("time_embedding.0", dim, freq)
    linear("time_embedding.2", dim, dim)
    linear("time_projection.1", 6 * dim, dim)
    for i in range(config["num_layers"]):
        for attn in ("self_attn", "cross_attn"):
            for p in ("q", "k", "v", "o"):
                linear(f"blocks.{i}.{attn}.{p}", dim, dim)
            norm(f"blocks.{i}.{attn}.norm_q", dim, bias=False)
            norm(f"blocks.{i}.{attn}.norm_k", dim, bias=False)
        norm(f"blocks.{i}.norm3", dim)
        linear(f"blocks.{i}.ffn.0", ffn, dim)
        linear(f"blocks.{i}.ffn.2", dim, ffn)
        state[f"blocks.{i}.modulation"] = rand(1, 6, dim, scale=dim ** -0.5)
    linear("head.head", config["out_dim"] * math.prod(patch), dim)
    state["head.modulation"] = rand(1, 2, dim, scale=dim ** -0.5)
    norm("audio_emb.proj.0", audio_emb_dim)
    linear("audio_emb.proj.1", audio_emb_dim, audio_emb_dim)
    linear("audio_emb.proj.3", dim, audio_emb_dim)
    norm("audio_emb.proj.4", dim)
    per = audio_layers * audio_dim
    linear("audio_proj.proj1", hidden, audio_window * per)
    linear("audio_proj.proj1_vf", hidden, (audio_window + r - 1) * per)
    linear("audio_proj.proj2", hidden, hidden)
    linear("audio_proj.proj3", tokens * dim, hidden)
    norm("audio_proj.norm", dim)
    return state


def save_flashhead_folder(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


# ------------------------------------------------------------------------------- other components
def original_wan_vae(tmp: Path) -> tuple[Path, dict]:
    """A tiny VAE in Wan2.1's layout saved under the original checkpoint's key names (.pth)."""
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    ours = vae.state_dict()
    # Original names: candidates from Wan's module layout, kept where diffusers' converter lands on ours.
    residual = [f"residual.{i}.{p}" for i, p in ((0, "gamma"), (2, "weight"), (2, "bias"), (3, "gamma"),
                                                  (6, "weight"), (6, "bias"))]
    parts = residual + ["shortcut.weight", "shortcut.bias", "resample.1.weight", "resample.1.bias",
                        "time_conv.weight", "time_conv.bias"]
    candidates = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    for side in ("encoder", "decoder"):
        candidates += [f"{side}.conv1.{p}" for p in ("weight", "bias")]
        candidates += [f"{side}.head.0.gamma", f"{side}.head.2.weight", f"{side}.head.2.bias"]
        candidates += [f"{side}.middle.{m}.{p}" for m in (0, 2) for p in residual]
        candidates += [f"{side}.middle.1.{p}" for p in ("norm.gamma", "to_qkv.weight", "to_qkv.bias",
                                                         "proj.weight", "proj.bias")]
        stage = "downsamples" if side == "encoder" else "upsamples"
        candidates += [f"{side}.{stage}.{i}.{p}" for i in range(16) for p in parts]
    names = {}
    for name in candidates:
        (mapped,) = convert_wan_vae_to_diffusers({name: name}).keys()
        if mapped in ours:
            assert mapped not in names, mapped
            names[mapped] = name
    assert set(names) == set(ours)
    path = tmp / "Wan2.1_VAE.pth"
    torch.save({names[k]: v.clone() for k, v in ours.items()}, str(path))
    return path, ours


def tiny_wav2vec2(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(str(folder))
    return folder



# ----------------------------------------------------------------------------------- the forward
def converted_tiny_folder(root: Path) -> Path:
    """A converted pipeline folder from tiny random weights in FlashHead's layout (its Wan VAE and wav2vec2 too)."""
    from asymk_talker.pipelines.convert_flashhead import convert_flashhead

    config = tiny_config()
    folder = save_flashhead_folder(root / "Model_Pro", config, flashhead_state_dict(config))
    vae, _ = original_wan_vae(root)
    return convert_flashhead(folder, vae, tiny_wav2vec2(root / "wav2vec2"), root / "model", audio_layers=2,
                             audio_dim=8)


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _linear(state, name, x):
    return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])


def _rope_tables(head_dim: int, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles per token and rotated pair ``[S, head_dim // 2]`` (float64): frames, rows, columns."""
    dims = (head_dim - 2 * (head_dim // 3), head_dim // 3, head_dim // 3)
    angles = []
    for axis, (size, d) in enumerate(zip(grid, dims)):
        freqs = 1.0 / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64)[: d // 2] / d)
        pos = torch.arange(size, dtype=torch.float64)
        a = torch.outer(pos, freqs)
        shape = [1, 1, 1, a.shape[1]]
        shape[axis] = size
        angles.append(a.view(shape).expand(*grid, a.shape[1]))
    table = torch.cat(angles, dim=-1).reshape(-1, sum(d // 2 for d in dims))
    return table.cos(), table.sin()


def _rope(x, cos, sin):
    """``x`` ``[S, H, D]``: consecutive pairs rotated by the per-token angles (in float64)."""
    pairs = x.double().unflatten(-1, (-1, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, None], sin[:, None]
    return torch.stack([real * c - imag * s, real * s + imag * c], -1).flatten(-2).to(x.dtype)


def _attention(q, k, v, heads):
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(-3, -2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(-3, -2).flatten(-2)


def _audio_tokens(state, context, r, window):
    """``context`` ``[1, 1 + r (F - 1), W, L, D]`` -> tokens ``[F, n, dim]``."""
    half = window // 2
    first = context[0, :1].flatten(1)
    groups = context[0, 1:].unflatten(0, (-1, r))
    pieces = [groups[:, :1, : half + 1], groups[:, 1:-1, half: half + 1], groups[:, -1:, half:]]
    rest = torch.cat([p.flatten(1, 2) for p in pieces], dim=1).flatten(1)
    hidden = torch.cat([torch.relu(_linear(state, "audio_proj.proj1", first)),
                        torch.relu(_linear(state, "audio_proj.proj1_vf", rest))])
    hidden = torch.relu(_linear(state, "audio_proj.proj2", hidden))
    dim = state["audio_proj.norm.weight"].shape[0]
    tokens = _linear(state, "audio_proj.proj3", hidden).view(hidden.shape[0], -1, dim)
    return F.layer_norm(tokens, (dim,), state["audio_proj.norm.weight"], state["audio_proj.norm.bias"])


@torch.no_grad()
def reference_forward(state, config, x, timestep: float, context, y):
    """FlashHead's velocity for ``x`` ``[1, C, F, h, w]`` (prefix latents first), one ``timestep``
    (0..1000) for every frame, audio ``context`` ``[1, 1 + r (F - 1), W, L, D]``, reference ``y``."""
    dim, heads, eps = config["dim"], config["num_heads"], config["eps"]
    r = config["vae_stride"][0]
    window = context.shape[2]
    tokens = F.conv3d(torch.cat([x, y], 1), state["patch_embedding.weight"], state["patch_embedding.bias"],
                      stride=tuple(config["patch_size"]))
    grid = tuple(tokens.shape[2:])
    tokens = tokens.flatten(2).transpose(1, 2)[0]  # [S, dim]
    half = config["freq_dim"] // 2
    position = torch.tensor([float(timestep)], dtype=torch.float64)
    angle = torch.outer(position, 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half))
    sinusoid = torch.cat([angle.cos(), angle.sin()], 1).float()
    t = _linear(state, "time_embedding.2", F.silu(_linear(state, "time_embedding.0", sinusoid)))
    t_mod = _linear(state, "time_projection.1", F.silu(t)).view(6, dim)
    audio = _audio_tokens(state, context, r, window)  # [F, n, dim]
    frames = audio.shape[0]
    cos, sin = _rope_tables(dim // heads, grid)
    for i in range(config["num_layers"]):
        b = f"blocks.{i}"
        e = state[f"{b}.modulation"][0] + t_mod
        h = F.layer_norm(tokens, (dim,), eps=eps) * (1 + e[1]) + e[0]
        q = _rms(_linear(state, f"{b}.self_attn.q", h), state[f"{b}.self_attn.norm_q.weight"], eps)
        k = _rms(_linear(state, f"{b}.self_attn.k", h), state[f"{b}.self_attn.norm_k.weight"], eps)
        v = _linear(state, f"{b}.self_attn.v", h)
        q, k = (_rope(z.unflatten(-1, (heads, -1)), cos, sin).flatten(-2) for z in (q, k))
        tokens = tokens + _linear(state, f"{b}.self_attn.o", _attention(q, k, v, heads)) * e[2]
        h = F.layer_norm(tokens, (dim,), state[f"{b}.norm3.weight"], state[f"{b}.norm3.bias"], eps)
        h = h.view(frames, -1, dim)
        q = _rms(_linear(state, f"{b}.cross_attn.q", h), state[f"{b}.cross_attn.norm_q.weight"], eps)
        k = _rms(_linear(state, f"{b}.cross_attn.k", audio), state[f"{b}.cross_attn.norm_k.weight"], eps)
        v = _linear(state, f"{b}.cross_attn.v", audio)
        tokens = tokens + _linear(state, f"{b}.cross_attn.o", _attention(q, k, v, heads)).reshape(-1, dim)
        h = F.layer_norm(tokens, (dim,), eps=eps) * (1 + e[4]) + e[3]
        h = _linear(state, f"{b}.ffn.2", F.gelu(_linear(state, f"{b}.ffn.0", h), approximate="tanh"))
        tokens = tokens + h * e[5]
    shift, scale = state["head.modulation"][0] + t
    out = _linear(state, "head.head", F.layer_norm(tokens, (dim,), eps=eps) * (1 + scale) + shift)
    f, hh, ww = grid
    pt, ph, pw = config["patch_size"]
    out = out.view(f, hh, ww, pt, ph, pw, -1).permute(6, 0, 3, 1, 4, 2, 5)
    return out.reshape(1, -1, f * pt, hh * ph, ww * pw)
