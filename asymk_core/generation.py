"""Streaming generation from TRE reference latents: the KCLG chunk loop -> seamless decode, one chunk at a time.

This composes the method's parts for inference; the render session (``pipelines``) drives it for
the pipeline, the CLI, resume and the ComfyUI nodes. Memory per chunk is constant: audio features,
latents and decoder state are per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from .audio_flashhead import uses_flashhead_audio
from .errors import input_error
from .kclg import (Chunk, ChunkPlan, DenoiseChunk, chunk_audio_windows, initial_kernel, kclg_chunks,
                   split_chunks, window_audio_windows)
from .sampling import (
    ChunkConditions,
    fill_kernel_cache,
    kernel_cache_for,
    StepCallback,
    check_sampler,
    sample_chunk_distilled,
    sample_chunk_teacher,
    shifted_sigmas,
)
from .vae import StreamingDecoder, spatial_factor, temporal_factor
from .portrait_anchor import PortraitAnchor, check_calibration, portrait_anchor
from .window_kernel import WindowCodec


class RestartChunk(Exception):
    """Raised by a step callback to abandon the chunk being denoised: it is denoised again from its
    first step, with its audio fetched again and, when a generator is given, the same noise (live
    mode restarts a chunk this way when an interrupt drops the speech it was made from)."""


@dataclass(frozen=True)
class SamplingSettings:
    """``sampler``: ``teacher`` (Euler, many steps, audio guidance) or ``distilled`` (few steps);
    ``shift``: the time shift of the distilled schedule; ``window_noise`` (distilled): noise drawn
    for the whole window, as SoulX-FlashHead does (see :func:`sample_chunk_distilled`)."""

    sampler: str = "teacher"
    num_inference_steps: int = 20
    guidance_scale: float = 1.0
    shift: float = 3.0
    window_noise: bool = False

    def __post_init__(self):
        check_sampler(self.sampler)


@dataclass
class VideoChunk:
    """A decoded chunk: ``frames`` ``[B, f, H, W, 3]`` float in [0, 1], starting at video frame ``start_frame``."""

    chunk: Chunk
    frames: torch.Tensor
    start_frame: int


@dataclass
class LoopState:
    """What the chunk loop needs to continue at a chunk: that chunk's motion kernel
    ``[B, C, kernel_frames, h, w]``, the ``torch.Generator`` state (uint8) before it, and the
    streaming decoder's causal state (:meth:`StreamingDecoder.get_state`) after the chunk before."""

    kernel: torch.Tensor | None = None
    generator_state: torch.Tensor | None = None
    decoder_state: dict | None = None


def make_chunk_denoiser(
    transformer,
    scheduler,
    reference_latents: torch.Tensor,
    audio,
    plan: ChunkPlan,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    step_callback: StepCallback | None = None,
) -> DenoiseChunk:
    """The ``denoise_chunk(index, kernel)`` callable KCLG runs at inference (``step_callback`` may
    raise :class:`RestartChunk`). A block-causal transformer's kernel tokens are computed before the
    chunk's audio is asked for, so a live source can wait for its audio with that work done."""
    batch, channels, _, height, width = reference_latents.shape
    device, dtype = reference_latents.device, transformer.dtype
    reference_latents = reference_latents.to(dtype)
    sigmas = shifted_sigmas(settings.num_inference_steps, settings.shift)

    whole_window_audio = uses_flashhead_audio(transformer)

    def denoise(chunk_index: int, kernel: torch.Tensor) -> torch.Tensor:
        state = None if generator is None else generator.get_state()
        kernel = kernel.to(dtype)
        kernel_cache = kernel_cache_for(transformer)
        with torch.no_grad():
            fill_kernel_cache(transformer, ChunkConditions(kernel, reference_latents, None, kernel_cache))
        while True:
            try:
                return denoise_once(chunk_index, kernel, kernel_cache)
            except RestartChunk:
                if state is not None:
                    generator.set_state(state)

    def denoise_once(chunk_index: int, kernel: torch.Tensor, kernel_cache) -> torch.Tensor:
        frames = plan.chunk_frames_for(chunk_index)
        if settings.window_noise:  # drawn for [kernel | chunk]; the kernel positions are overwritten
            noise = randn_tensor((batch, channels, kernel.shape[2] + frames, height, width), generator=generator,
                                 device=device, dtype=dtype)[:, :, kernel.shape[2]:]
        else:
            noise = randn_tensor((batch, channels, frames, height, width), generator=generator, device=device,
                                 dtype=dtype)
        windows = window_audio_windows if whole_window_audio else chunk_audio_windows
        features = windows(audio, plan, chunk_index).to(device=device, dtype=dtype)
        conditions = ChunkConditions(
            kernel=kernel, reference_latents=reference_latents,
            audio_features=features.expand(batch, *features.shape[1:]), kernel_cache=kernel_cache,
        )
        if settings.sampler == "distilled":
            with torch.no_grad():
                return sample_chunk_distilled(transformer, noise, conditions, sigmas, generator, step_callback,
                                              chunk_index=chunk_index, window_noise=settings.window_noise)
        return sample_chunk_teacher(
            transformer, scheduler, noise, conditions, settings.num_inference_steps, settings.guidance_scale,
            step_callback, chunk_index=chunk_index,
        )

    return denoise


def latent_size(vae, transformer, height: int, width: int) -> tuple[int, int]:
    """Latent height/width for a video size; raises if the size does not fit the model's grid."""
    factor = spatial_factor(vae) * transformer.config.patch_size[1]
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise input_error(name, f"{value} is not a multiple of {factor}",
                              f"pass a multiple of {factor} (this model's VAE x patch size)")
    return height // spatial_factor(vae), width // spatial_factor(vae)


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """VAE output ``[B, 3, f, H, W]`` in [-1, 1] -> frames ``[B, f, H, W, 3]`` in [0, 1]."""
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 4, 1)


def decode_chunks(
    vae, chunks: Iterator[Chunk], initial_kernel: torch.Tensor, plan: ChunkPlan,
    decoder: StreamingDecoder | None = None, window_codec: WindowCodec | None = None,
    anchor: PortraitAnchor | None = None,
) -> Iterator[VideoChunk]:
    """Seamlessly decode generated chunks in order; the initial kernel is decoded first as context.

    ``decoder``: a :class:`StreamingDecoder` to use (and keep updating), e.g. one restored with
    ``set_state`` to continue a stream; when it has already decoded something, the initial kernel
    is not decoded again. ``anchor``: a :class:`asymk_core.portrait_anchor.PortraitAnchor` that
    corrects every decoded frame towards the portrait. A ``"decoded"`` plan decodes each chunk's
    window on its own with ``window_codec`` (a :class:`asymk_core.window_kernel.WindowCodec`; one
    without colour correction when not given).
    """
    if plan.kernel_source == "decoded":
        codec = window_codec or WindowCodec(vae, plan)
        for chunk in chunks:
            start, _ = plan.video_range(chunk.index)
            yield VideoChunk(chunk=chunk, frames=to_frames(codec.shown_frames(chunk)), start_frame=start)
        return
    if decoder is None:
        decoder = StreamingDecoder(vae)
    if not decoder.started:
        decoder.decode(initial_kernel)  # causal context only: these frames belong to the reference
    for chunk in chunks:
        start, stop = plan.video_range(chunk.index)
        frames = to_frames(decoder.decode(chunk.latents)[:, :, : stop - start])
        if anchor is not None:
            frames = anchor.apply(frames, start)
        yield VideoChunk(chunk=chunk, frames=frames, start_frame=start)


def decode_stored_chunks(
    vae, latents: torch.Tensor, initial_kernel: torch.Tensor, plan: ChunkPlan, kernels: torch.Tensor | None = None,
    colour_reference: torch.Tensor | None = None, colour_correction: float = 0.0, decoder_calibration: float = 0.0,
    colour_lock: float = 0.0,
) -> Iterator[VideoChunk]:
    """Decode latents that were stored instead of streamed (chunks concatenated, as
    :func:`asymk_core.kclg.split_chunks` takes them) exactly as :func:`generate_chunks` decodes
    them: seamlessly, or for a ``"decoded"`` plan window by window from the stored re-encoded
    ``kernels``, corrected towards the portrait ``colour_reference`` with ``colour_correction`` and
    ``decoder_calibration`` and ``colour_lock``."""
    codec = None
    if plan.kernel_source == "decoded":
        codec = WindowCodec(vae, plan, colour_reference, colour_correction)
    anchor = portrait_anchor(vae, plan, colour_reference, initial_kernel, decoder_calibration, colour_correction,
                             colour_lock)
    yield from decode_chunks(vae, split_chunks(latents, initial_kernel, plan, kernels), initial_kernel, plan,
                             window_codec=codec, anchor=anchor)


@torch.no_grad()
def generate_chunks(
    transformer,
    vae,
    scheduler,
    reference_latents: torch.Tensor,
    audio,
    plan: ChunkPlan,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    step_callback: StepCallback | None = None,
    decode: bool = True,
    start_chunk: int = 0,
    kernel: torch.Tensor | None = None,
    decoder: StreamingDecoder | None = None,
    colour_reference: torch.Tensor | None = None,
    colour_correction: float = 0.0,
    window_codec: WindowCodec | None = None,
    decoder_calibration: float = 0.0,
    anchor: PortraitAnchor | None = None,
    colour_lock: float = 0.0,
) -> Iterator[VideoChunk | Chunk]:
    """TRE reference latents ``[B, C, plan.window_frames, h, w]`` (:func:`asymk_core.tre.encode_reference`)
    + per-frame audio -> decoded :class:`VideoChunk` objects, streamed (``decode=False``: the latent
    :class:`Chunk` objects). ``audio`` provides ``windows(start_frame, num_frames) -> [num_frames, W, L, D_a]``
    (:class:`asymk_core.audio.FrameAudioFeatures`).

    Resuming (see :mod:`asymk_core.render_state`): ``start_chunk`` is the first chunk to generate,
    ``kernel`` its motion kernel ``[B, C, kernel_frames, h, w]`` (required when ``start_chunk > 0``),
    ``decoder`` a :class:`StreamingDecoder` holding the causal decode state after chunk
    ``start_chunk - 1``, and ``generator`` must be in the state it had before chunk ``start_chunk``.
    Given those, the chunks are exactly those of an uninterrupted run. The chunk loop is lazy: when a
    chunk is yielded, the next one has not consumed any random numbers yet, so the generator, the
    next kernel and the decoder are a consistent checkpoint at every yield.

    A ``"decoded"`` plan (:class:`asymk_core.window_kernel.WindowCodec`) decodes each window on its
    own and re-encodes the next kernel from its last frames, colour-corrected towards
    ``colour_reference`` (the portrait ``[B, 3, H, W]`` in [-1, 1]) with strength
    ``colour_correction`` in [0, 1]. Its windows are decoded on their own, so resuming it needs only
    ``kernel`` (the re-encoded one) and ``generator``. ``window_codec``: the codec to use (made here
    when not given); pass one to read each chunk's next kernel, e.g. to save a resumable state.

    A ``"latents"`` plan's decoded frames are corrected towards ``colour_reference``
    (:class:`asymk_core.portrait_anchor.PortraitAnchor`): the decoder's own error on the still
    portrait removed with strength ``decoder_calibration``, then Lab statistics matched with
    ``colour_correction``, then colours close to the portrait's pulled onto it within ``colour_lock``
    levels. ``anchor``: one already made for this portrait and kernel (made here when not given and
    any of the three is above 0).
    """
    if plan.temporal_factor != temporal_factor(vae):
        raise ValueError("`plan.temporal_factor` does not match the VAE.")
    if reference_latents.ndim != 5 or reference_latents.shape[2] != plan.window_frames:
        raise input_error("reference_latents", f"expected {plan.window_frames} latent frames (kernel + chunk), "
                          f"got shape {tuple(reference_latents.shape)}",
                          "encode the reference with window_frames = kernel_frames + chunk_frames")
    if isinstance(start_chunk, bool) or not isinstance(start_chunk, int) or not 0 <= start_chunk <= plan.num_chunks:
        raise input_error("start_chunk", f"{start_chunk!r} is not a chunk index in 0..{plan.num_chunks}",
                          "pass the next chunk index saved with the render state")
    reference_latents = reference_latents.to(transformer.device)
    first_kernel = initial_kernel(reference_latents, plan)
    if kernel is None:
        if start_chunk:
            raise input_error("kernel", f"resuming at chunk {start_chunk} needs that chunk's motion kernel",
                              "pass the kernel saved with the render state")
        kernel = first_kernel
    elif tuple(kernel.shape) != (expected := (*first_kernel.shape[:2], plan.kernel_frames_for(start_chunk),
                                              *first_kernel.shape[3:])):
        raise input_error("kernel", f"expected shape {expected}, got {tuple(kernel.shape)}",
                          "pass the kernel saved with the render state for this model and size")
    else:
        kernel = kernel.to(device=first_kernel.device)  # keep its dtype: exactly what the loop carried
    if decode and start_chunk and plan.kernel_source == "latents" and (decoder is None or not decoder.started):
        raise input_error("decoder", f"resuming at chunk {start_chunk} needs the decoder state after chunk "
                          f"{start_chunk - 1}", "pass a StreamingDecoder restored with set_state()")
    denoise = make_chunk_denoiser(
        transformer, scheduler, reference_latents, audio, plan, settings, generator, step_callback
    )
    if uses_flashhead_audio(transformer) and plan.kernel_source != "decoded":
        raise input_error("kernel_source", "this transformer's audio covers whole decoded windows "
                          "(audio_projector='flashhead')", "use kernel_source='decoded' (as its model folder does)")
    check_calibration(plan, decoder_calibration)
    if plan.kernel_source == "decoded":
        codec = window_codec or WindowCodec(vae, plan, colour_reference, colour_correction)
        chunks = kclg_chunks(denoise, kernel, plan.num_chunks, plan.kernel_frames, start_chunk=start_chunk,
                             make_kernel=codec.next_kernel, initial_kernel_frames=plan.kernel_frames_for(start_chunk))
        if not decode:
            yield from chunks
            return
        yield from decode_chunks(vae, chunks, first_kernel, plan, window_codec=codec)
        return
    chunks = kclg_chunks(denoise, kernel, plan.num_chunks, plan.kernel_frames, start_chunk=start_chunk,
                         initial_kernel_frames=plan.kernel_frames_for(start_chunk))
    if not decode:
        yield from chunks
        return
    if anchor is None:
        anchor = portrait_anchor(vae, plan, colour_reference, first_kernel, decoder_calibration, colour_correction,
                                 colour_lock)
    yield from decode_chunks(vae, chunks, first_kernel, plan, decoder, anchor=anchor)
