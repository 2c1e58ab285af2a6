"""Flow-matching training losses for KCLG chunks (used by the teacher and by AKD's critic).

The algebra is :mod:`.flow_matching`: the model predicts ``v = noise - x_0`` for the chunk frames
of a ``[kernel | noisy chunk]`` window, model time ``1000 * sigma``, kernel frames at time 0.

Condition dropout for classifier-free guidance is per sample: samples whose ``audio_keep`` is
False are run with ``audio_features=None`` (exactly the unconditional branch used at inference),
in a second transformer call on that sub-batch; the reference is dropped by zeroing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .flow_matching import add_noise, time_shift
from .sampling import ChunkConditions, predict_velocity


def sample_sigmas(batch: int, generator: torch.Generator | None = None, mode: str = "logit_normal",
                  logit_mean: float = 0.0, logit_std: float = 1.0, shift: float = 1.0,
                  min_sigma: float = 1e-3, device=None) -> torch.Tensor:
    """Training noise levels ``[batch]`` in ``[min_sigma, 1]``.

    ``mode``: ``"logit_normal"`` (``sigmoid(N(logit_mean, logit_std))``, SD3) or ``"uniform"``;
    then time-shifted by ``shift``.
    """
    if mode == "logit_normal":
        sigma = torch.sigmoid(logit_mean + logit_std * torch.randn(batch, generator=generator))
    elif mode == "uniform":
        sigma = torch.rand(batch, generator=generator)
    else:
        raise ValueError(f"unknown sigma sampling mode {mode!r}; use 'logit_normal' or 'uniform'")
    sigma = time_shift(sigma, float(shift)).clamp(min_sigma, 1.0)
    return sigma.to(device) if device is not None else sigma


@dataclass
class FlowLossOutput:
    """``loss`` (scalar mean over all samples), ``per_sample`` ``[B]`` (detached), ``velocity``
    ``[B, C, n, h, w]`` (the prediction, in batch order), the ``target`` velocity and ``audio_keep``
    ``[B]`` (which samples were audio-conditioned)."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    velocity: torch.Tensor
    target: torch.Tensor
    audio_keep: torch.Tensor

    @property
    def all_unconditional(self) -> bool:
        """No sample used audio, so the audio layers got no gradient (see :func:`touch_parameters`)."""
        return not bool(self.audio_keep.any())


def flow_matching_loss(transformer, clean: torch.Tensor, conditions: ChunkConditions, sigma: torch.Tensor,
                       noise: torch.Tensor, audio_keep: torch.Tensor | None = None,
                       unconditional_transformer=None) -> FlowLossOutput:
    """MSE between the predicted and the true velocity ``noise - clean`` of one chunk.

    ``clean`` ``[B, C, n, h, w]``; ``sigma`` ``[B]``; ``noise`` like ``clean``; ``audio_keep`` ``[B]``
    bool (``None``: all conditional). Samples with ``audio_keep`` False go through
    ``unconditional_transformer`` (default: ``transformer``) with ``audio_features=None``; under
    DDP pass the unwrapped module there so the wrapped model is called once per step.
    """
    noisy = add_noise(clean, noise, sigma)
    target = noise - clean
    batch = clean.shape[0]
    if audio_keep is None or conditions.audio_features is None:
        keep = torch.full((batch,), conditions.audio_features is not None, dtype=torch.bool)
    else:
        keep = audio_keep.detach().bool().cpu()
    velocity = torch.empty_like(target)
    first = True
    for use_audio in (True, False):
        index = torch.nonzero(keep == use_audio).flatten()
        if index.numel() == 0:
            continue
        model = transformer if first or unconditional_transformer is None else unconditional_transformer
        first = False
        index = index.to(clean.device)
        sub = ChunkConditions(
            kernel=conditions.kernel.index_select(0, index),
            reference_latents=conditions.reference_latents.index_select(0, index),
            audio_features=conditions.audio_features.index_select(0, index) if use_audio else None,
        )
        prediction = predict_velocity(model, noisy.index_select(0, index), sigma.index_select(0, index), sub,
                                      audio=use_audio)
        velocity = velocity.index_copy(0, index, prediction.to(velocity.dtype))
    per_sample = (velocity.float() - target.float()).pow(2).flatten(1).mean(1)
    return FlowLossOutput(loss=per_sample.mean(), per_sample=per_sample.detach(), velocity=velocity, target=target,
                          audio_keep=keep)


def touch_parameters(loss: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """``loss + 0 * sum(parameters)``: puts every trainable parameter in the graph (DDP without
    ``find_unused_parameters`` needs each one to receive a gradient every step)."""
    zero = sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0
    return loss + zero


def drift_kernels(kernel: torch.Tensor, probability: float, scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Kernels ``[B, C, tau, h, w]`` degraded the way a model's own kernels drift over a long video.

    Each sample, with ``probability``, is blurred (mixed with its 3x3 spatial mean, weight U(0, 1))
    and shifted by ``U(0, scale)`` times a steady appearance offset: one ``N(0, 1)`` value per
    channel plus a 2x2 ``N(0, 1)`` field per channel, bilinearly upsampled (latent units; the
    shift is the same for every kernel frame). Trained on these with the clean target and the TRE
    reference, a model must take colours from the reference rather than from its own past output.
    All random numbers come from ``generator`` (CPU); returns a new tensor.
    """
    if probability <= 0 or scale <= 0:
        return kernel
    batch, channels, _, height, width = kernel.shape
    chosen = (torch.rand(batch, generator=generator) < probability).float()
    blur_weight = torch.rand(batch, generator=generator) * chosen
    amplitude = torch.rand(batch, generator=generator) * float(scale) * chosen
    offset = torch.randn(batch, channels, 1, 1, generator=generator)
    field = torch.randn(batch, channels, 2, 2, generator=generator)
    field = torch.nn.functional.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)
    shift = (amplitude.view(-1, 1, 1, 1) * (offset + field)).unsqueeze(2)  # [B, C, 1, h, w]
    frames = kernel.transpose(1, 2).reshape(-1, channels, height, width)
    blurred = torch.nn.functional.avg_pool2d(frames, 3, stride=1, padding=1, count_include_pad=False)
    blurred = blurred.reshape(batch, -1, channels, height, width).transpose(1, 2)
    weight = blur_weight.view(-1, 1, 1, 1, 1).to(kernel)
    return (1 - weight) * kernel + weight * blurred + shift.to(kernel)
