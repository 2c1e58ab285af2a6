"""The render session: a render prepared once, driven chunk by chunk.

:meth:`AsymKPipeline.prepare` resolves every setting (one resolver; defaults from the model
folder), preprocesses the portrait, wraps the audio in lazily computed per-frame features and
plans the chunks. :meth:`RenderSession.chunks` is then the only driver of generation and decode:
``pipe(...)``, ``pipe.stream``, the CLI, ``--resume`` and the ComfyUI nodes all consume it, and
:func:`asymk_core.video_io.write_chunks` streams it into an mp4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..asymk_core.errors import input_error
from ..asymk_core.generation import LoopState, SamplingSettings, VideoChunk, generate_chunks
from ..asymk_core.kclg import Chunk, ChunkPlan, initial_kernel, next_kernel
from ..asymk_core.portrait_anchor import PortraitAnchor, portrait_anchor
from ..asymk_core.sampling import own_scheduler
from ..asymk_core.tre import encode_reference
from ..asymk_core.vae import StreamingDecoder
from ..asymk_core.window_kernel import WindowCodec


LOOP_SETTINGS = dict(kernel_source="latents", first_kernel_frames=0, colour_correction=0.0, window_noise=False,
                     decoder_calibration=0.0, colour_lock=0.0)
"""Pipeline config entries that describe a model's chunk loop (defaults: this project's loop
uncorrected; a model folder or a converted SoulX-FlashHead folder sets them): see
:class:`asymk_core.kclg.ChunkPlan`, :mod:`asymk_core.portrait_anchor` (``decoder_calibration``,
``colour_lock`` and ``colour_correction`` for a ``"latents"`` loop), :class:`asymk_core.window_kernel.WindowCodec`
(``colour_correction`` for a ``"decoded"`` one) and :class:`asymk_core.generation.SamplingSettings`.
``first_kernel_frames`` 0 means ``kernel_frames``."""


@dataclass(frozen=True)
class RenderSettings:
    """Every setting of one render, resolved: size (px), ``fps``, sampler, steps per chunk, audio
    guidance, the distilled schedule's time ``shift``, latent frames per chunk and per kernel, and
    the loop's :data:`LOOP_SETTINGS` (``first_kernel_frames`` ``None`` = ``kernel_frames``)."""

    height: int
    width: int
    fps: float
    sampler: str
    num_inference_steps: int
    guidance_scale: float
    shift: float
    chunk_frames: int
    kernel_frames: int
    kernel_source: str = "latents"
    first_kernel_frames: int | None = None
    colour_correction: float = 0.0
    window_noise: bool = False
    decoder_calibration: float = 0.0
    colour_lock: float = 0.0

    @property
    def sampling(self) -> SamplingSettings:
        return SamplingSettings(sampler=self.sampler, num_inference_steps=self.num_inference_steps,
                                guidance_scale=self.guidance_scale, shift=self.shift,
                                window_noise=bool(self.window_noise))


class RenderSession:
    """One prepared render (made by :meth:`AsymKPipeline.prepare`).

    Attributes: ``pipe``; ``settings`` (:class:`RenderSettings`); ``plan``
    (:class:`asymk_core.kclg.ChunkPlan`); ``image`` the portrait ``[1, 3, H, W]`` in [-1, 1] (or
    ``None`` when reference latents were given); ``audio`` the lazily computed
    :class:`asymk_core.audio.FrameAudioFeatures`; ``generator``. ``reference_latents`` (TRE,
    ``[1, C, kernel + chunk, h, w]``) are encoded on first use. ``paste_back``: with
    ``prepare(..., paste_back=True)`` the :class:`asymk_core.face_crop.PasteBack` that puts the
    generated face crops back into the photo (:func:`asymk_core.face_crop.paste_back_chunks`), else ``None``.
    """

    def __init__(self, pipe, settings: RenderSettings, plan: ChunkPlan, audio, image: torch.Tensor | None = None,
                 reference_latents: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None, paste_back=None):
        self.pipe, self.settings, self.plan, self.audio, self.image = pipe, settings, plan, audio, image
        self.paste_back = paste_back
        self.generator = generator
        self.callback_on_step_end = callback_on_step_end
        self.callback_on_step_end_tensor_inputs = list(callback_on_step_end_tensor_inputs or [])
        self._reference_latents = reference_latents
        self._decoder: StreamingDecoder | None = None
        self._codec: WindowCodec | None = None
        self._anchor: PortraitAnchor | None = None

    @property
    def reference_latents(self) -> torch.Tensor:
        """TRE reference latents for this plan's window, encoded once."""
        given = self._reference_latents
        if callable(given):
            given = given(self.plan.window_frames)
        if given is None:
            vae = self.pipe.vae
            with torch.no_grad():
                given = encode_reference(vae, self.image.to(vae.device), self.plan.window_frames)
        self._reference_latents = given
        return given

    @property
    def initial_kernel(self) -> torch.Tensor:
        """Chunk 0's motion kernel ``[1, C, kernel_frames, h, w]``."""
        return initial_kernel(self.reference_latents, self.plan)

    @property
    def anchor(self) -> PortraitAnchor | None:
        """The :class:`asymk_core.portrait_anchor.PortraitAnchor` correcting this render's decoded
        frames (``None`` when its loop settings ask for none), made once."""
        if self._anchor is None:
            settings, vae = self.settings, self.pipe.vae
            self._anchor = portrait_anchor(vae, self.plan, None if self.image is None else self.image.to(vae.device),
                                           self.initial_kernel, float(settings.decoder_calibration),
                                           float(settings.colour_correction), float(settings.colour_lock))
        return self._anchor

    def chunks(self, start_chunk: int = 0, state: LoopState | None = None, *, decode: bool = True,
               step_callback: Callable | None = None) -> Iterator[VideoChunk | Chunk]:
        """Generate (and with ``decode``, seamlessly decode) chunks ``start_chunk ..`` in order.

        Yields :class:`asymk_core.generation.VideoChunk` (frames ``[1, f, H, W, 3]`` in [0, 1]), or
        the latent :class:`asymk_core.kclg.Chunk` with ``decode=False``. Resuming: ``state`` is the
        :class:`asymk_core.generation.LoopState` saved by :meth:`state_after` for chunk
        ``start_chunk - 1``; the chunks are then those of an uninterrupted render.
        ``step_callback(chunk_index, step, num_steps, latents)`` runs after every denoising step,
        besides the pipeline's progress bar and ``callback_on_step_end``.
        """
        pipe, plan, steps = self.pipe, self.plan, self.settings.num_inference_steps
        kernel = None
        decoder = StreamingDecoder(pipe.vae) if decode else None
        if state is not None:
            kernel = state.kernel
            if state.generator_state is not None:
                if self.generator is None:
                    raise input_error("generator", "resuming needs the render's torch.Generator",
                                      "prepare the session with generator=torch.Generator()")
                self.generator.set_state(state.generator_state)
            if decoder is not None and state.decoder_state is not None:
                decoder.set_state(state.decoder_state)
        self._decoder = decoder
        colour_reference = None if self.image is None else self.image.to(pipe.vae.device)
        self._codec = None
        if plan.kernel_source == "decoded":  # kept to read each chunk's next kernel for state_after
            self._codec = WindowCodec(pipe.vae, plan, colour_reference, float(self.settings.colour_correction))
        progress = pipe.progress_bar(total=plan.num_chunks * steps)
        callback, names = self.callback_on_step_end, self.callback_on_step_end_tensor_inputs

        def on_step(chunk_index, step, num_steps, latents):
            progress.update()
            if step_callback is not None:
                step_callback(chunk_index, step, num_steps, latents)
            if callback is None:
                return None
            outputs = callback(pipe, chunk_index * num_steps + step, step, {name: latents for name in names}) or {}
            return outputs.get("latents")

        with progress:
            yield from generate_chunks(
                pipe.transformer, pipe.vae, own_scheduler(pipe.scheduler), self.reference_latents, self.audio, plan,
                self.settings.sampling, generator=self.generator, step_callback=on_step, decode=decode,
                start_chunk=start_chunk, kernel=kernel, decoder=decoder,
                colour_reference=colour_reference, window_codec=self._codec,
                colour_correction=float(self.settings.colour_correction),
                decoder_calibration=float(self.settings.decoder_calibration),
                colour_lock=float(self.settings.colour_lock),
                anchor=self.anchor if decode and plan.kernel_source == "latents" else None,
            )
        pipe.maybe_free_model_hooks()

    def state_after(self, chunk: Chunk) -> LoopState:
        """The loop state right after ``chunk`` was yielded by :meth:`chunks`: enough to resume at
        ``chunk.index + 1`` (the next chunk has not drawn any noise yet)."""
        if self._codec is not None:
            kernel = self._codec.next_kernel(chunk)  # the loop reuses this very tensor
        else:
            kernel = next_kernel(chunk.kernel, chunk.latents, self.plan.kernel_frames)
        return LoopState(
            kernel=kernel,
            generator_state=None if self.generator is None else self.generator.get_state(),
            decoder_state=None if self._decoder is None else self._decoder.get_state(),
        )
