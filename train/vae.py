"""Train a small causal video VAE (diffusers ``AutoencoderKLWan``) on synthetic talking-avatar clips.

Only needed for the synthetic setting: real users point ``model.vae`` at a pretrained Wan2.1 VAE.
Clips of ``1 + 4k`` frames are rendered on the fly (``asymk_core.synthetic.corpus.random_sample``,
train seeds only) and reconstructed through the sampled posterior. Loss::

    l1 * |x - x^| + mse * (x - x^)^2 + edge * |grad x - grad x^| + kl * KL(q(z|x) || N(0, I))
    + region_colour * |mean_r x - mean_r x^| + region_l1 * mean_r |x - x^|
    + seam * |d_t x - d_t x^| over the frame pairs across latent-frame boundaries

(means over elements; the edge term is the L1 of spatial and temporal finite differences, it keeps
mouth and eye contours sharp). The two region terms use the renderer's region labels (background,
clothes, skin, hair, mouth) and weigh every region present in a frame equally, whatever its area:
plain L1/MSE are dominated by the background, and let the decoder get the colour of a thin shirt or
a strip of hair tens of levels wrong (see :func:`region_losses`). The seam term weighs the frame
differences across latent-frame boundaries, where a causal decoder jumps (see :func:`seam_loss`).

Decoder only. ``train.trainable: decoder`` freezes the encoder (and ``quant_conv``): the latents, and
so every teacher and student trained on them, stay valid, and the saved VAE keeps the pretrained
``latents_mean`` / ``latents_std``. This is how a shipped model's decoder is improved without
re-encoding its data or retraining its transformer.

Steady state. At inference the VAE streams: its causal caches are full, carrying minutes of context,
while a clip trained from its first frame only ever shows the start-up state. With
``data.context_frames_max`` > 0 most steps first stream a random-length *context* (up to that many
frames) through encoder and decoder without gradients, filling the causal caches exactly as a long
stream would, and train only the ``num_frames - 1`` frames that follow (see
:func:`reconstruct_after_context`). ``data.variety`` (``wide``) and ``data.colour_jitter`` (a
probability of a random colour transform per clip) widen the appearances seen. accelerate throughout (checkpoints ``checkpoints/step-*`` with
``--resume latest``, trackers, progress bar). At the end the per-channel mean/std of the latents
(posterior mode, over ``stats.clips`` clips) are written into the VAE config as
``latents_mean``/``latents_std`` so ``asymk_core.vae.normalize_latents`` gives unit-scale latents,
and the VAE is saved with ``save_pretrained`` to ``output_dir/vae``::

    python -m asymk_talker.train.vae --config train/configs/vae_synthetic.yaml
"""

from __future__ import annotations

# Absolute imports: this file also runs as a script (`accelerate launch train/vae.py`).
import argparse
import copy
import logging
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch.utils.data import Dataset

from asymk_talker.asymk_core.synthetic.appearance import random_colour_transform
from asymk_talker.asymk_core.eval.fidelity import REGION_NAMES
from asymk_talker.asymk_core.synthetic.avatar import REGIONS
from asymk_talker.asymk_core.synthetic.corpus import CORPUS_VARIETIES, random_sample, resolve_variety
from asymk_talker.asymk_core.vae import VAE_PRESETS, use_onednn_convolutions, vae_from_preset
from asymk_talker.train.common import (
    Config,
    Trainer,
    add_common_args,
    config_from_args,
    eval_mode,
    make_lr_scheduler,
    make_optimizer,
    optimizer_step,
)
from asymk_talker.train.data import video_tensor

logger = logging.getLogger("asymk_talker.train.vae")

DEFAULTS: dict = {
    "seed": 0,
    "output_dir": None,
    # pretrained: an AutoencoderKLWan folder to fine-tune; init_logvar_bias: see build_vae
    "model": {"preset": "synthetic", "pretrained": None, "init_logvar_bias": -6.0},
    # context_frames_max: 0 (train from the first frame) or 1 + 4q (see the module docstring)
    "data": {"size": 64, "fps": 25.0, "num_frames": 9, "batch_size": 4, "num_workers": 0,
             "num_identities": None, "epoch_size": 10000, "variety": "classic", "colour_jitter": 0.0,
             "context_frames_max": 0, "no_context_probability": 0.2},
    "loss": {"l1": 1.0, "mse": 1.0, "edge": 0.5, "motion": 0.0, "kl": 1.0e-4, "region_colour": 0.0,
             "region_l1": 0.0, "seam": 0.0},
    # trainable: "all", or "decoder" (encoder and quant_conv frozen; see the module docstring)
    "train": {"trainable": "all", "max_steps": 1000, "learning_rate": 5.0e-4, "weight_decay": 0.0, "adam_betas": [0.9, 0.99],
              "warmup_steps": 50, "lr_scheduler": "constant_with_warmup", "max_grad_norm": 1.0,
              "gradient_accumulation_steps": 1, "mixed_precision": "no", "num_threads": None,
              "max_minutes": None},  # stop (and save) after this many minutes of training
    "ema": {"decay": 0.999, "warmup": True},
    "checkpoint": {"every": 200, "keep": 2},
    "logging": {"report_to": "tensorboard", "log_every": 10},
    # num_frames: validation clips are longer than the training clips on purpose: a causal VAE
    # trained on short clips can fall apart after the trained length (val/psnr_tail shows it)
    # tail_from: val/psnr_tail covers frames from here on (default: the training clip length)
    "validation": {"every": 200, "clips": 4, "num_frames": 97, "tail_from": None},
    "stats": {"clips": 32, "num_frames": 17},
}


class SyntheticVideoDataset(Dataset):
    """``dataset[i]`` -> video ``[3, num_frames, size, size]`` in [-1, 1], a pure function of ``(seed, i)``.

    ``variety`` is the identity distribution (``avatar.VARIETIES``, or ``mixed``: classic for even
    indices, wide for odd ones); ``colour_jitter`` the probability of a random colour transform of the
    whole clip (``synthetic.appearance``). With ``regions=True`` an item is ``(video, labels)``, labels
    int64 ``[num_frames, size, size]`` (``avatar.REGIONS`` codes; a colour transform keeps them).
    """

    def __init__(self, num_frames: int, size: int = 64, fps: float = 25.0, split: str = "train", seed: int = 0,
                 num_identities: int | None = None, epoch_size: int = 10000, variety: str = "classic",
                 colour_jitter: float = 0.0, regions: bool = False):
        if (num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 1 + 4k for the causal VAE, got {num_frames}")
        if variety not in CORPUS_VARIETIES:
            raise ValueError(f"unknown variety {variety!r}; use one of {list(CORPUS_VARIETIES)}")
        self.num_frames, self.size, self.fps, self.split = num_frames, size, fps, split
        self.seed, self.num_identities, self.epoch_size = seed, num_identities, epoch_size
        self.variety, self.colour_jitter, self.regions = variety, float(colour_jitter), bool(regions)

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, int(index), 0xFAE])
        sample = random_sample(rng, (self.num_frames + 0.5) / self.fps, split=self.split,
                               num_identities=self.num_identities, size=self.size, fps=self.fps,
                               variety=resolve_variety(self.variety, int(index)), regions=self.regions)
        frames = sample.frames[: self.num_frames]
        if self.colour_jitter > 0:
            frames = random_colour_transform(rng, probability=self.colour_jitter)(frames)
        video = video_tensor(frames)[0]
        if self.regions:
            return video, torch.from_numpy(np.asarray(sample.regions[: self.num_frames], np.int64))
        return video


def training_clip_frames(num_frames: int, context_frames_max: int) -> int:
    """Frames a training clip must have: ``num_frames``, plus the longest context (``1 + 4q``) when on."""
    if context_frames_max and (context_frames_max - 1) % 4:
        raise ValueError(f"data.context_frames_max must be 0 or 1 + 4q, got {context_frames_max}")
    return num_frames + context_frames_max - 1 if context_frames_max else num_frames


def draw_context_frames(rng: np.random.Generator, context_frames_max: int, no_context_probability: float) -> int:
    """A context length for one step: 0 (start-up state) or ``1 + 4q`` up to ``context_frames_max``."""
    if not context_frames_max or rng.uniform() < no_context_probability:
        return 0
    return 1 + 4 * int(rng.integers(0, (context_frames_max - 1) // 4 + 1))


LOSS_TERMS = ("loss", "l1", "mse", "edge", "motion", "kl", "region_colour", "region_l1", "seam")
LOSS_REGIONS = tuple(REGIONS[name] for name in REGION_NAMES)  # the regions the fidelity metrics score
TRAINABLE = ("all", "decoder")


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over elements of KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def edge_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between finite differences along H, W and T of ``[B, C, T, H, W]`` videos."""
    loss = (x.diff(dim=-1) - y.diff(dim=-1)).abs().mean() + (x.diff(dim=-2) - y.diff(dim=-2)).abs().mean()
    if x.shape[2] > 1:
        loss = loss + (x.diff(dim=2) - y.diff(dim=2)).abs().mean()
    return loss


def motion_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between ``[B, C, T, H, W]`` videos ``x`` and ``y`` where the target ``y`` moves.

    Each pixel is weighted by how far it strays from its own mean over the clip (channel-averaged),
    so the loss concentrates on the mouth, blinks and moving outlines, a few percent of the pixels
    that plain L1/MSE let the decoder blur. About 0 for a static target (the normaliser has a floor of
    1e-3 per pixel, so float noise in the weights of a still clip does not blow up).
    """
    weight = (y - y.mean(dim=2, keepdim=True)).abs().mean(dim=1, keepdim=True)
    normaliser = torch.clamp(weight.sum(), min=1e-3 * weight.numel()) * x.shape[1]
    return (weight * (x - y).abs()).sum() / normaliser


def seam_loss(x: torch.Tensor, y: torch.Tensor, first_boundary: int, temporal: int = 4) -> torch.Tensor:
    """L1 between the frame differences of ``[B, C, T, H, W]`` videos ``x`` and ``y`` across the
    boundaries of the causal VAE's latent frames only: the pairs ``(j, j + 1)`` with
    ``j = first_boundary + temporal * i``. A decoder that moves less inside a latent frame than
    between two of them shows a jump every ``temporal`` frames (every chunk boundary is one); the
    temporal part of :func:`edge_loss` weighs those pairs like all others. Zero without such a pair.
    """
    if first_boundary >= x.shape[2] - 1:
        return x.new_zeros(())
    pairs = torch.arange(first_boundary, x.shape[2] - 1, temporal, device=x.device)
    across_x = x.index_select(2, pairs + 1) - x.index_select(2, pairs)
    across_y = y.index_select(2, pairs + 1) - y.index_select(2, pairs)
    return (across_x - across_y).abs().mean()


def region_losses(x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(colour, l1)`` of videos ``[B, 3, T, H, W]`` with region ``labels`` ``[B, T, H, W]``.

    ``colour``: L1 between the mean colours of each region of :data:`LOSS_REGIONS` in each frame;
    ``l1``: the L1 of the pixels of each region, averaged within the region. Both are means over the
    (clip, region, frame) triples where the region is present, so a region of 50 pixels weighs as
    much as the background's 2000. Zero when no region is present.
    """
    masks = torch.stack([labels == code for code in LOSS_REGIONS], dim=1).to(x.dtype)  # [B, R, T, H, W]
    area = masks.sum(dim=(-1, -2))  # [B, R, T]
    present = area > 0
    if not bool(present.any()):
        return x.new_zeros(()), x.new_zeros(())
    area = area.clamp_min(1.0)
    mean_x = torch.einsum("bcthw,brthw->bcrt", x, masks) / area[:, None]
    mean_y = torch.einsum("bcthw,brthw->bcrt", y, masks) / area[:, None]
    colour = (mean_x - mean_y).abs().mean(dim=1)[present].mean()
    l1 = (torch.einsum("bthw,brthw->brt", (x - y).abs().mean(dim=1), masks) / area)[present].mean()
    return colour, l1


def decode_unclamped(vae, latents: torch.Tensor) -> torch.Tensor:
    """``AutoencoderKLWan.decode`` without its final clamp to [-1, 1] (a clamp has zero gradient
    outside the range, which stalls training); the same causal frame-by-frame pass otherwise."""
    if vae.config.get("patch_size") is not None:
        raise ValueError("decode_unclamped supports Wan2.1-style VAEs (patch_size=None)")
    vae.clear_cache()
    hidden = vae.post_quant_conv(latents)
    frames = []
    for index in range(hidden.shape[2]):
        vae._conv_idx = [0]
        frames.append(vae.decoder(hidden[:, :, index:index + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                  first_chunk=index == 0))
    vae.clear_cache()
    return torch.cat(frames, dim=2)


def reconstruct_after_context(vae, video: torch.Tensor, context_frames: int,
                              generator: torch.Generator | None = None):
    """Stream ``video`` ``[B, 3, F, H, W]`` through encoder and decoder with their causal caches, the
    way inference streams, and reconstruct what follows the first ``context_frames`` frames.

    The context (0 or ``1 + 4q`` frames) runs without gradients (posterior mode into the decoder),
    so it only fills the caches; the remaining ``F - context_frames`` frames (a multiple of 4 after
    a context, ``1 + 4k`` without one) are encoded, sampled and decoded with gradients. Returns
    ``(reconstruction [B, 3, F - context_frames, H, W] unclamped, posterior mean, posterior logvar)``
    of those frames. With ``context_frames == 0`` this is ``vae.encode`` + :func:`decode_unclamped`.
    """
    if vae.config.get("patch_size") is not None:
        raise ValueError("reconstruct_after_context supports Wan2.1-style VAEs (patch_size=None)")
    frames = video.shape[2]
    if context_frames and ((context_frames - 1) % 4 or (frames - context_frames) % 4 or frames <= context_frames):
        raise ValueError(f"context of {context_frames} frames does not fit a {frames}-frame clip in 1 + 4q + 4k")
    # Encoder chunks as AutoencoderKLWan._encode cuts them: frame 0, then 4 frames at a time.
    chunks = [video[:, :, :1]] + list(video[:, :, 1:].split(4, dim=2))
    context_chunks = 0 if not context_frames else 1 + (context_frames - 1) // 4
    vae.clear_cache()
    encoded = []
    for index, chunk in enumerate(chunks):
        vae._enc_conv_idx = [0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and index >= context_chunks):
            encoded.append(vae.encoder(chunk, feat_cache=vae._enc_feat_map, feat_idx=vae._enc_conv_idx))
    posterior = DiagonalGaussianDistribution(vae.quant_conv(torch.cat(encoded[context_chunks:], dim=2)))
    for index in range(context_chunks):  # decode the context: fills the decoder's caches
        with torch.no_grad():
            context = vae.post_quant_conv(vae.quant_conv(encoded[index])[:, : vae.config.z_dim])
            vae._conv_idx = [0]
            vae.decoder(context, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=index == 0)
    noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
    hidden = vae.post_quant_conv(posterior.mean + posterior.std * noise)
    frames_out = []
    for index in range(hidden.shape[2]):
        vae._conv_idx = [0]
        frames_out.append(vae.decoder(hidden[:, :, index:index + 1], feat_cache=vae._feat_map,
                                      feat_idx=vae._conv_idx, first_chunk=context_chunks == 0 and index == 0))
    vae.clear_cache()
    return torch.cat(frames_out, dim=2), posterior.mean, posterior.logvar


class Reconstructor(torch.nn.Module):
    """``forward(video, generator, context_frames) -> (reconstruction, posterior mean, posterior logvar)``
    of the frames after the context (:func:`reconstruct_after_context`), through the sampled
    posterior: one module call, so DDP/FSDP wrappers see (and synchronise) the whole pass."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None, context_frames: int = 0):
        return reconstruct_after_context(self.vae, video, context_frames, generator)


def uses_region_terms(weights: Config) -> bool:
    """Whether the loss ``weights`` give a region term (``region_colour``, ``region_l1``) any weight."""
    return any(float(weights.get(k, 0.0) or 0.0) for k in ("region_colour", "region_l1"))


def vae_loss(model, video: torch.Tensor, weights: Config, generator: torch.Generator | None = None,
             context_frames: int = 0, labels: torch.Tensor | None = None) -> dict:
    """Losses of one batch; ``model`` is a :class:`Reconstructor` (possibly wrapped); only the frames
    after ``context_frames`` are reconstructed and scored. ``labels`` ``[B, F, H, W]``: region codes
    of ``video``'s frames, needed by a non-zero ``region_colour`` / ``region_l1`` weight. Returns
    ``{"loss", "l1", "mse", "edge", "motion", "kl", "region_colour", "region_l1", "seam"}``."""
    reconstruction, mean, logvar = model(video, generator, context_frames)
    video = video[:, :, context_frames:]
    if labels is not None:
        region_colour, region_l1 = region_losses(reconstruction, video, labels[:, context_frames:])
    elif uses_region_terms(weights):
        raise ValueError("loss.region_colour / loss.region_l1 need region labels (the dataset's regions=True)")
    else:
        region_colour = region_l1 = reconstruction.new_zeros(())
    parts = {
        "l1": (reconstruction - video).abs().mean(),
        "mse": (reconstruction - video).pow(2).mean(),
        "edge": edge_loss(reconstruction, video),
        "motion": motion_loss(reconstruction, video),
        "kl": gaussian_kl(mean, logvar),
        "region_colour": region_colour,
        "region_l1": region_l1,
        # after a context the segment starts on a latent frame of 4; without one, frame 0 is latent 0's
        "seam": seam_loss(reconstruction, video, 3 if context_frames else 0),
    }
    parts["loss"] = sum(float(weights.get(k, 0.0) or 0.0) * v for k, v in parts.items())
    return parts


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1] (measured on [0, 1])."""
    return float(10 * torch.log10(1.0 / ((x - y) / 2).pow(2).mean().clamp_min(1e-10)))


@torch.no_grad()
def reconstruction_psnr(vae, videos: list[torch.Tensor], tail_from: int | None = None) -> tuple[dict, torch.Tensor]:
    """Mean PSNR (dB, on [0, 1]) of posterior-mode reconstructions of ``[3, F, H, W]`` videos:
    ``{"psnr"}`` over all frames, plus ``{"psnr_tail"}`` over frames ``tail_from:`` when given;
    and the first reconstruction."""
    totals, tails, first = [], [], None
    for video in videos:
        x = video[None].to(vae.device)
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        totals.append(psnr(y, x))
        if tail_from is not None and tail_from < x.shape[2]:
            tails.append(psnr(y[:, :, tail_from:], x[:, :, tail_from:]))
        first = y[0] if first is None else first
    result = {"psnr": float(np.mean(totals))}
    if tails:
        result["psnr_tail"] = float(np.mean(tails))
    return result, first


def save_preview(path: Path, video: torch.Tensor, reconstruction: torch.Tensor, max_frames: int = 17) -> None:
    """PNG: original frames (top row) over reconstructions (bottom row), at most ``max_frames``
    evenly spaced frames of ``[3, F, H, W]`` videos."""
    from PIL import Image

    keep = torch.linspace(0, video.shape[1] - 1, min(max_frames, video.shape[1])).round().long().unique()
    video, reconstruction = video[:, keep], reconstruction[:, keep.to(reconstruction.device)]

    def row(v):
        frames = ((v.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
        return np.concatenate(list(frames), axis=1)

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([row(video), row(reconstruction)], axis=0)).save(path)


@torch.no_grad()
def latent_statistics(vae, dataset: Dataset, count: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw latents (posterior mode) of ``count`` clips."""
    total = total_sq = None
    n = 0
    for index in range(count):
        x = dataset[index][None].to(vae.device)
        z = vae.encode(x).latent_dist.mode().double()
        flat = z.transpose(0, 1).flatten(1)  # [C, *]
        total = flat.sum(1) if total is None else total + flat.sum(1)
        total_sq = flat.pow(2).sum(1) if total_sq is None else total_sq + flat.pow(2).sum(1)
        n += flat.shape[1]
    mean = total / n
    std = (total_sq / n - mean.pow(2)).clamp_min(1e-12).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]


def build_vae(config: Config) -> AutoencoderKLWan:
    """The VAE to train: ``model.pretrained`` or a fresh ``model.preset`` (seeded by ``seed``)."""
    if config.model.get("pretrained"):
        return AutoencoderKLWan.from_pretrained(config.model.pretrained)
    if config.model.preset not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {config.model.preset!r}; use one of {sorted(VAE_PRESETS)}")
    torch.manual_seed(int(config.seed))
    vae = vae_from_preset(config.model.preset)
    bias = config.model.get("init_logvar_bias")
    if bias is not None:
        # Start with a nearly deterministic posterior (std = exp(bias / 2)): with the default std of
        # 1 the sampled latents are mostly noise and the decoder first learns only the mean image.
        with torch.no_grad():
            vae.quant_conv.bias[vae.config.z_dim:] = float(bias)
    return vae


class VAETrainer(Trainer):
    """The VAE on the shared loop: one reconstruction loss per micro-batch (after a random causal
    context, see the module docstring); validation = PSNR of posterior-mode reconstructions of
    held-out clips (live and EMA weights) and a preview PNG; the saved VAE carries the latent
    statistics of its EMA weights."""

    project = "asymk-vae"
    final_name = "vae"
    logger = logger

    def setup(self) -> None:
        config, accelerator, data = self.config, self.accelerator, self.config.data
        vae = build_vae(config).train()
        self.trainable = str(config.train.get("trainable", "all") or "all")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"train.trainable must be one of {list(TRAINABLE)}, got {self.trainable!r}")
        if self.trainable == "decoder":
            if not config.model.get("pretrained"):
                raise ValueError("train.trainable=decoder fine-tunes a trained VAE: set model.pretrained")
            vae.encoder.requires_grad_(False)
            vae.quant_conv.requires_grad_(False)
        self.context_max = int(data.get("context_frames_max", 0) or 0)
        self.use_regions = uses_region_terms(config.loss)
        self.dataset = SyntheticVideoDataset(
            training_clip_frames(int(data.num_frames), self.context_max), int(data.size), float(data.fps), "train",
            int(config.seed), data.get("num_identities"), int(data.get("epoch_size", 10000)),
            data.get("variety", "classic"), float(data.get("colour_jitter", 0.0) or 0.0), regions=self.use_regions)
        val_frames = int(config.validation.get("num_frames") or config.stats.num_frames)
        val_variety = "wide" if data.get("variety", "classic") == "mixed" else data.get("variety", "classic")
        val_dataset = SyntheticVideoDataset(val_frames, int(data.size), float(data.fps), "heldout",
                                            int(config.seed) + 1, variety=val_variety)
        self.val_videos = [val_dataset[i] for i in range(int(config.validation.get("clips", 4)))]

        optimizer = make_optimizer(vae.parameters(), config)
        lr_scheduler = make_lr_scheduler(optimizer, config, accelerator.num_processes)
        # oneDNN for the gradient-free passes (the context, validation); training passes keep the stock kernel
        use_onednn_convolutions(vae)
        self.model, self.optimizer, self.lr_scheduler = accelerator.prepare(Reconstructor(vae), optimizer,
                                                                            lr_scheduler)
        self.vae = accelerator.unwrap_model(self.model).vae
        self.latent_stats: dict = {}

    def describe(self, step: int, max_steps: int) -> str:
        data = self.config.data
        return (f"VAE: {sum(p.numel() for p in self.vae.parameters())} parameters, clips of {int(data.num_frames)} "
                f"frames at {int(data.size)} px, batch {int(data.batch_size)}, steps {step} -> {max_steps}")

    def train_step(self, batch, micro_step: int, step: int) -> dict[str, torch.Tensor]:
        config, accelerator, data = self.config, self.accelerator, self.config.data
        video, labels = batch if self.use_regions else (batch, None)
        video = video.to(accelerator.device)
        step_seed = np.random.SeedSequence([int(config.seed), micro_step, accelerator.process_index])
        generator = torch.Generator().manual_seed(int(step_seed.generate_state(1)[0]))
        context_frames = draw_context_frames(np.random.default_rng(step_seed), self.context_max,
                                             float(data.get("no_context_probability", 0.2)))
        video = video[:, :, : training_clip_frames(int(data.num_frames), context_frames)]
        if labels is not None:
            labels = labels[:, : video.shape[2]].to(accelerator.device)
        with accelerator.autocast():
            parts = vae_loss(self.model, video, config.loss, generator, context_frames, labels)
        optimizer_step(accelerator, parts["loss"], self.model, self.optimizer, self.lr_scheduler,
                       config.train.get("max_grad_norm"))
        return {k: parts[k] for k in LOSS_TERMS}

    def step_record(self, step: int, losses: dict[str, float]) -> dict:
        return {"step": step, **losses, "lr": self.lr_scheduler.get_last_lr()[0]}

    def validate(self, step: int, saved: Path | None = None) -> dict[str, float]:
        if not self.accelerator.is_main_process:
            return {}
        tail_from = int(self.config.validation.get("tail_from") or self.config.data.num_frames)  # the steady state
        with eval_mode(self.vae):
            measured, reconstruction = reconstruction_psnr(self.vae, self.val_videos, tail_from)
            scalars = {f"val/{k}": v for k, v in measured.items()}
            if self.ema is not None:
                with self.ema.averaged(self.vae):
                    measured, reconstruction = reconstruction_psnr(self.vae, self.val_videos, tail_from)
                scalars.update({f"val/{k}_ema": v for k, v in measured.items()})
            save_preview(self.output_dir / "validation" / f"step-{step:07d}.png", self.val_videos[0], reconstruction)
        return scalars

    def final_model(self, state: dict[str, torch.Tensor]) -> AutoencoderKLWan:
        """A copy of the VAE with the EMA weights and their latent statistics (``latents_mean``,
        ``latents_std`` of ``stats.clips`` clips of ``stats.num_frames`` frames) in its config; a
        decoder-only run keeps the pretrained statistics (its encoder is unchanged)."""
        config, data = self.config, self.config.data
        vae = copy.deepcopy(self.vae).eval()
        vae.load_state_dict({k.removeprefix("vae."): v for k, v in state.items()})
        if self.trainable == "decoder":
            self.latent_stats = {"latents_mean": list(vae.config.latents_mean),
                                 "latents_std": list(vae.config.latents_std)}
            return vae
        stats_data = SyntheticVideoDataset(int(config.stats.num_frames), int(data.size), float(data.fps), "train",
                                           int(config.seed) + 2, variety=data.get("variety", "classic"))
        mean, std = latent_statistics(vae, stats_data, int(config.stats.clips))
        vae.register_to_config(latents_mean=mean, latents_std=std)
        self.latent_stats = {"latents_mean": mean, "latents_std": std}
        self.logger.info("VAE latents_mean %s, latents_std %s", [round(v, 3) for v in mean], [round(v, 3) for v in std])
        return vae

    def summary(self, step: int, last: dict, validation: dict) -> dict:
        return {"step": step, "loss": last.get("loss"),
                "psnr": validation.get("val/psnr_ema", validation.get("val/psnr")),
                "vae_dir": str(self.output_dir / "vae"), **self.latent_stats}


def train(config: Config, resume_from: str | None = "latest") -> dict:
    """Train the VAE; returns ``{"step", "loss", "psnr", "vae_dir", "latents_mean", "latents_std"}``."""
    return VAETrainer(config).train(resume_from)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train the synthetic causal video VAE (AutoencoderKLWan).")
    add_common_args(parser)
    args = parser.parse_args(argv)
    return train(config_from_args(args, DEFAULTS), resume_from=args.resume)


if __name__ == "__main__":
    main()
