"""AsymKPipeline: portrait + speech -> lip-synced talking-head video (diffusers conventions).

A thin orchestration of ``asymk_core``: input checks, component loading/saving, output formats.
The method itself (TRE, the KCLG chunk loop, samplers, streaming decode) lives in ``asymk_core``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput

from ..asymk_core.audio import FrameAudioFeatures, load_audio
from ..asymk_core.audio_flashhead import FlashHeadAudioFeatures, uses_flashhead_audio
from ..asymk_core.errors import InputError, error_argument, input_error, rename_argument
from ..asymk_core.face_crop import DEFAULT_PADDING, crop_photo, paste_back_chunks
from ..asymk_core.files import apply_umask_to_weights
from ..asymk_core.generation import latent_size
from ..asymk_core.image import preprocess_image
from ..asymk_core.kclg import ChunkPlan
from ..asymk_core.limits import check_render_memory
from ..asymk_core.live import LiveSession
from ..asymk_core.model_folder import load_pipeline_components, preset_components, resolve_model_folder
from ..asymk_core.models.transformer import AsymKTransformer
from ..asymk_core.sampling import check_sampler, own_scheduler
from ..asymk_core.tre import encode_reference
from ..asymk_core.vae import temporal_factor, use_onednn_convolutions
from .render_session import LOOP_SETTINGS, RenderSession, RenderSettings

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from asymk_talker import AsymKPipeline

        >>> pipe = AsymKPipeline.from_pretrained("path/to/model")  # or no path: the shipped default
        >>> video = pipe(
        ...     image="portrait.png", audio="speech.wav", generator=torch.Generator().manual_seed(0)
        ... ).frames  # list of PIL images, one per video frame
        >>> frames = pipe(image="portrait.png", audio="speech.wav", output_type="np").frames  # [F, H, W, 3]
        >>> session = pipe.prepare("portrait.png", "speech.wav", generator=torch.Generator().manual_seed(0))
        >>> for chunk in session.chunks():  # decoded chunks, constant memory
        ...     chunk.frames.shape  # [1, f, H, W, 3]
        ```
"""

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class AsymKPipelineOutput(BaseOutput):
    """``frames``: list of PIL images (``pil``), ``np.ndarray [F, H, W, 3]`` in [0, 1] (``np``),
    ``torch.Tensor [F, 3, H, W]`` in [0, 1] (``pt``), or latents ``[1, C, N, h, w]`` (``latent``).
    ``fps``: frames per second of the video; ``audio``: the 16 kHz mono waveform it was made for."""

    frames: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    fps: float
    audio: np.ndarray | None = None


@dataclass
class AsymKStreamChunk:
    """One streamed chunk: ``frames`` ``np.ndarray [f, H, W, 3]`` float32 in [0, 1] from ``start_frame``."""

    frames: np.ndarray
    start_frame: int
    chunk_index: int
    num_chunks: int
    num_frames: int


class AsymKPipeline(DiffusionPipeline):
    r"""Audio-driven talking-head generation with AsymK-Talker.

    Components: ``vae`` (``AutoencoderKLWan``), ``transformer`` (``AsymKTransformer``),
    ``audio_encoder`` (``LogMelAudioEncoder`` or a transformers ``Wav2Vec2Model``),
    ``feature_extractor`` (for wav2vec2, else ``None``), ``scheduler``
    (``FlowMatchEulerDiscreteScheduler``). Generation defaults (sampler, steps, guidance, size,
    fps, chunk and kernel frames) are part of the pipeline config and saved with it.
    """

    model_cpu_offload_seq = "audio_encoder->vae->transformer"
    # diffusers saves a component whose __init__ argument has a default only if it is listed here:
    # without this, a wav2vec2 pipeline's feature extractor was not written by save_pretrained.
    _optional_components = ["feature_extractor"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKLWan,
        transformer: AsymKTransformer,
        audio_encoder,
        scheduler: FlowMatchEulerDiscreteScheduler,
        feature_extractor=None,
        sampler: str = "teacher",
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        height: int = 64,
        width: int = 64,
        fps: float = 25.0,
        chunk_frames: int = 4,
        kernel_frames: int = 3,
        kernel_source: str = "latents",
        first_kernel_frames: int = 0,
        colour_correction: float = 0.0,
        window_noise: bool = False,
        decoder_calibration: float = 0.0,
        colour_lock: float = 0.0,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, transformer=transformer, audio_encoder=audio_encoder, scheduler=scheduler,
            feature_extractor=feature_extractor,
        )
        check_sampler(sampler)
        if vae is not None:
            use_onednn_convolutions(vae)  # 2x faster CPU renders; see asymk_core.vae
        self.register_to_config(
            sampler=sampler, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            height=height, width=width, fps=fps, chunk_frames=chunk_frames, kernel_frames=kernel_frames,
            kernel_source=kernel_source, first_kernel_frames=first_kernel_frames,
            colour_correction=colour_correction, window_noise=window_noise, decoder_calibration=decoder_calibration,
            colour_lock=colour_lock,
        )

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs):
        """Load a saved pipeline folder, a Hub repository id, or (no argument) the shipped default.

        Keyword arguments: ``torch_dtype``, ``device``, ``local_files_only``, ``revision``, ``cache_dir``,
        plus any component (e.g. ``transformer=...``) or config value (e.g. ``sampler="distilled"``)
        to override.
        """
        folder = resolve_model_folder(
            pretrained_model_name_or_path,
            local_files_only=kwargs.pop("local_files_only", None),
            revision=kwargs.pop("revision", None),
            cache_dir=kwargs.pop("cache_dir", None),
        )
        torch_dtype = kwargs.pop("torch_dtype", None)
        device = kwargs.pop("device", None)
        components, config = load_pipeline_components(folder, torch_dtype=torch_dtype)
        components.update({k: kwargs.pop(k) for k in list(kwargs) if k in components})
        config.update(kwargs)
        pipe = cls(**components, **config)
        pipe._config_file = Path(folder) / "model_index.json"  # named when one of its values is refused
        if device is not None:
            pipe.to(device)
        return pipe

    @classmethod
    def from_preset(cls, preset: str = "tiny", seed: int = 0, **config) -> "AsymKPipeline":
        """A randomly initialised pipeline of a named size (``tiny``, ``synthetic``, ``base``)."""
        components, defaults = preset_components(preset, seed=seed)
        return cls(**components, **{**defaults, **config})

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Save in diffusers folder format (safetensors); this package's classes are recorded as
        ``["asymk_talker", ClassName]`` so the folder loads wherever the package is installed."""
        super().save_pretrained(save_directory, **kwargs)
        index_path = Path(save_directory) / "model_index.json"
        index = json.loads(index_path.read_text())
        for name, value in index.items():
            if isinstance(value, list) and len(value) == 2 and value[0] and "asymk" in str(value[0]):
                index[name] = ["asymk_talker", value[1]]
        index["_class_name"] = "AsymKPipeline"
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        apply_umask_to_weights(save_directory)  # safetensors writes 0600 whatever the umask

    # ------------------------------------------------------------------------------------ checks
    def check_inputs(
        self, height, width, fps, num_inference_steps, guidance_scale, chunk_frames, kernel_frames, sampler,
        generator, callback_on_step_end_tensor_inputs,
    ):
        """Raise a one-line ``ValueError``/``TypeError`` naming the first bad argument and its fix."""
        def positive_int(name, value, upper):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise input_error(name, f"expected an integer, got {type(value).__name__}", f"pass an int in 1..{upper}",
                                  kind=TypeError)
            if not 1 <= value <= upper:
                raise input_error(name, f"{value} is out of range", f"pass an int in 1..{upper}")

        positive_int("num_inference_steps", num_inference_steps, 1000)
        positive_int("chunk_frames", chunk_frames, 64)
        positive_int("kernel_frames", kernel_frames, 16)
        for name, value in (("height", height), ("width", width)):
            positive_int(name, value, 4096)
        latent_size(self.vae, self.transformer, height, width)
        check_render_memory(self.transformer.config, self.vae.config, height, width, chunk_frames, kernel_frames,
                            dtype=self.vae.dtype, device=self._execution_device)
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 1 <= fps <= 120:
            raise input_error("fps", f"{fps!r} is not a frame rate", "pass a number between 1 and 120")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or not (
            0 <= guidance_scale <= 50
        ):
            raise input_error("guidance_scale", f"{guidance_scale!r} is invalid", "pass a number in [0, 50]")
        check_sampler(sampler)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise input_error("generator", f"got {type(generator).__name__}", "pass a torch.Generator or None",
                              kind=TypeError)
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise input_error("callback_on_step_end_tensor_inputs", f"unknown names {sorted(unknown)}",
                              f"use a subset of {self._callback_tensor_inputs}")

    # ---------------------------------------------------------------------------------- prepare
    def encode_audio(self, audio, sample_rate: int | None = None, fps: float | None = None) -> FrameAudioFeatures:
        """Audio (path, or array + ``sample_rate``) -> per-video-frame feature windows, computed lazily
        (:class:`FlashHeadAudioFeatures` for a transformer with ``audio_projector="flashhead"``)."""
        waveform = load_audio(audio, sample_rate)
        config = self.transformer.config
        if uses_flashhead_audio(self.transformer):
            return FlashHeadAudioFeatures(self.audio_encoder, waveform, fps or self.config.fps,
                                          window=config.audio_window, feature_extractor=self.feature_extractor,
                                          num_layers=config.audio_layers)
        return FrameAudioFeatures(
            self.audio_encoder, waveform, fps or self.config.fps, window=self.transformer.config.audio_window,
            feature_extractor=self.feature_extractor,
        )

    def resolve_settings(self, generator: torch.Generator | None = None,
                         callback_on_step_end_tensor_inputs: list[str] | None = None, **overrides) -> RenderSettings:
        """The one resolver of render settings. ``overrides``: ``height``, ``width``, ``fps``,
        ``num_inference_steps``, ``guidance_scale``, ``chunk_frames``, ``kernel_frames``, ``sampler``;
        each one missing or ``None`` takes the model folder's default (its pipeline config; the steps
        are the config's whichever sampler is chosen). Then :meth:`check_inputs`."""
        names = ("height", "width", "fps", "num_inference_steps", "guidance_scale", "chunk_frames", "kernel_frames",
                 "sampler")
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"resolve_settings() got unexpected arguments {unknown}")
        settings = {name: self.config[name] if overrides.get(name) is None else overrides[name] for name in names}
        try:
            self.check_inputs(**settings, generator=generator,
                              callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        except InputError as error:  # a default from the model folder: name its file, not the caller's argument
            argument = error_argument(error)
            if argument in names and overrides.get(argument) is None:
                source = getattr(self, "_config_file", None) or "the pipeline config"
                raise rename_argument(error, f"{argument} in {source}") from None
            raise
        settings["guidance_scale"] = float(settings["guidance_scale"])
        loop = {name: self.config.get(name, default) for name, default in LOOP_SETTINGS.items()}
        loop["first_kernel_frames"] = loop["first_kernel_frames"] or None
        return RenderSettings(**settings, shift=float(self.scheduler.config.get("shift", 3.0)), **loop)

    def prepare(
        self,
        image,
        audio,
        sample_rate: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        chunk_frames: int | None = None,
        kernel_frames: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        reference_latents: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
        paste_back: bool = False,
        face_box: tuple[int, int, int, int] | None = None,
        face_padding: float | None = None,
    ) -> RenderSession:
        """Prepare a render: settings resolved, portrait preprocessed, audio features (lazy), chunk plan.

        Arguments are those of ``__call__``; besides, ``audio`` may be a prepared
        :class:`asymk_core.audio.FrameAudioFeatures` (its ``fps`` is then the default), and
        ``reference_latents`` (TRE latents ``[1, C, kernel + chunk, h, w]``, or a function of that
        window length returning them, e.g. a cache) replaces encoding ``image`` (which may then be
        ``None``). Drive it with :meth:`RenderSession.chunks`; with ``paste_back`` the session's
        ``paste_back`` turns its chunks into photo frames (:func:`asymk_core.face_crop.paste_back_chunks`).
        """
        if isinstance(audio, (FrameAudioFeatures, FlashHeadAudioFeatures)):
            if fps is not None and float(fps) != audio.fps:
                raise input_error("fps", f"{fps!r} differs from the audio features' {audio.fps:g} fps",
                                  "leave fps unset, or encode the audio at that fps")
            fps = audio.fps
        settings = self.resolve_settings(
            generator, callback_on_step_end_tensor_inputs, height=height, width=width, fps=fps,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, chunk_frames=chunk_frames,
            kernel_frames=kernel_frames, sampler=sampler,
        )
        if image is None and reference_latents is None:
            raise input_error("image", "no portrait was given", "pass the portrait image")
        self.check_photo_inputs(image, paste_back, face_box, face_padding)
        paste = None
        if paste_back:  # the face crop is the portrait; its PasteBack puts the frames back into the photo
            image, paste = crop_photo(image, (settings.width, settings.height), face_box=face_box,
                                      padding=DEFAULT_PADDING if face_padding is None else face_padding)
        image_tensor = None if image is None else preprocess_image(image, settings.height, settings.width)
        if not isinstance(audio, (FrameAudioFeatures, FlashHeadAudioFeatures)):
            audio = self.encode_audio(audio, sample_rate, settings.fps)
        plan = ChunkPlan(audio.num_frames, settings.chunk_frames, settings.kernel_frames, temporal_factor(self.vae),
                         first_kernel_frames=settings.first_kernel_frames, kernel_source=settings.kernel_source)
        return RenderSession(self, settings, plan, audio, image=image_tensor, reference_latents=reference_latents,
                             generator=generator, callback_on_step_end=callback_on_step_end,
                             callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                             paste_back=paste)

    @staticmethod
    def check_photo_inputs(image, paste_back, face_box, face_padding) -> None:
        """The face-crop arguments: ``paste_back`` a bool; ``face_box`` / ``face_padding`` only with it."""
        if not isinstance(paste_back, (bool, np.bool_)):
            raise input_error("paste_back", f"expected True or False, got {type(paste_back).__name__}",
                              "pass paste_back=True for a real photo", kind=TypeError)
        if not paste_back:
            for name, value in (("face_box", face_box), ("face_padding", face_padding)):
                if value is not None:
                    raise input_error(name, "it only applies when the face is cropped from a photo",
                                      "also pass paste_back=True")
        elif image is None:
            raise input_error("paste_back", "it needs the photo itself, not reference latents",
                              "pass the photo as image")

    # ----------------------------------------------------------------------------------- streaming
    @torch.no_grad()
    def stream(self, image, audio, **kwargs) -> Iterator[AsymKStreamChunk]:
        """Like ``__call__`` but yields frames chunk by chunk as they are generated (constant memory).

        Keyword arguments are those of ``__call__`` (without ``output_type`` / ``return_dict``), as
        :meth:`prepare` takes them; each item is an :class:`AsymKStreamChunk`.
        """
        session = self.prepare(image, audio, **kwargs)
        plan = session.plan
        chunks = session.chunks()
        if session.paste_back is not None:
            chunks = paste_back_chunks(chunks, session.paste_back)
        for chunk in chunks:
            yield AsymKStreamChunk(
                frames=chunk.frames[0].cpu().numpy(), start_frame=chunk.start_frame, chunk_index=chunk.chunk.index,
                num_chunks=plan.num_chunks, num_frames=plan.num_frames,
            )

    # ------------------------------------------------------------------------------------- compile
    def compile_transformer(self, warm_up: bool = True, **compile_kwargs) -> "AsymKPipeline":
        """Compile the transformer with ``torch.compile`` (in place, ``nn.Module.compile``); returns ``self``.

        On the CPU this fuses the many small element-wise operations of a small transformer (about
        1.5x faster transformer calls on the ``synthetic`` model; frames equal up to float rounding).
        Compiling takes about a minute on 2 CPU cores and needs a C++ compiler there. ``warm_up``
        renders two chunks of a quiet tone now, so the first real chunk (above all, a live
        session's) does not wait for it. A failed compilation leaves the transformer eager and raises.
        """
        self.transformer.compile(**compile_kwargs)
        if not warm_up:
            return self
        size = (int(self.config.height), int(self.config.width), 3)
        seconds = 2 * int(self.config.chunk_frames) * temporal_factor(self.vae) / float(self.config.fps)
        tone = 0.1 * np.sin(np.arange(int(seconds * 16000), dtype=np.float32) * (2 * np.pi * 220 / 16000))
        try:
            self(image=np.full(size, 128, np.uint8), audio=tone, sample_rate=16000, output_type="latent")
        except Exception as error:
            self.transformer._compiled_call_impl = None  # back to eager
            raise RuntimeError(f"compile: torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                               "run without compiling, or install a C++ compiler (e.g. g++)") from error
        return self

    # ---------------------------------------------------------------------------------------- live
    def live(
        self,
        image,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        chunk_frames: int | None = None,
        kernel_frames: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        realtime: bool = True,
        **options,
    ) -> LiveSession:
        """A live session for ``image``: push speech as it arrives, read frames as they are due.

        Settings are those of ``__call__`` (defaults from the model folder). ``realtime=False``
        generates on demand instead of pacing to a clock. ``options`` go to
        :class:`asymk_core.live.LiveSession` (``clock``, ``context_frames``, ``max_queued_seconds``).

        ```py
        >>> with pipe.live("portrait.png", generator=torch.Generator().manual_seed(0)) as live:
        ...     live.push(pcm_block, sample_rate=48000)  # any block size and rate, e.g. from a TTS engine
        ...     for frame in live.frames():  # LiveFrame: index, pts (s), image [H, W, 3], audio (16 kHz)
        ...         show(frame.image, frame.audio)
        ```
        """
        settings = self.resolve_settings(
            generator, None, height=height, width=width, fps=fps, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, chunk_frames=chunk_frames, kernel_frames=kernel_frames, sampler=sampler,
        )
        if image is None:
            raise input_error("image", "no portrait was given", "pass the portrait image")
        portrait = preprocess_image(image, settings.height, settings.width).to(self.vae.device)
        with torch.no_grad():
            reference_latents = encode_reference(self.vae, portrait, settings.kernel_frames + settings.chunk_frames)
        return LiveSession(
            transformer=self.transformer, vae=self.vae,
            scheduler=own_scheduler(self.scheduler),
            reference_latents=reference_latents, chunk_frames=settings.chunk_frames,
            kernel_frames=settings.kernel_frames, sampling=settings.sampling, audio_encoder=self.audio_encoder,
            feature_extractor=self.feature_extractor, fps=settings.fps,
            audio_window=self.transformer.config.audio_window, generator=generator, realtime=realtime,
            first_kernel_frames=settings.first_kernel_frames, kernel_source=settings.kernel_source,
            colour_reference=portrait, colour_correction=float(settings.colour_correction),
            decoder_calibration=float(settings.decoder_calibration), colour_lock=float(settings.colour_lock),
            **options,
        )

    # -------------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        image,
        audio,
        sample_rate: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        chunk_frames: int | None = None,
        kernel_frames: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        paste_back: bool = False,
        face_box: tuple[int, int, int, int] | None = None,
        face_padding: float | None = None,
    ):
        r"""Generate a talking-head video whose length follows the audio: ``round(duration_s * fps)`` frames.

        Args:
            image: the portrait: path, ``PIL.Image``, ``np.ndarray`` ``[H, W, C]`` or ``torch.Tensor``.
                RGBA is composited over white, grayscale/16-bit/CMYK converted to RGB; it is centre-cropped
                and resized to ``height`` x ``width``.
            audio: speech: a file path (wav, flac, mp3, m4a, ...) or an array ``[T]``/``[C, T]`` with
                ``sample_rate``. Resampled to 16 kHz mono.
            sample_rate: sample rate of ``audio`` when it is an array (Hz).
            height, width: video size in pixels (defaults from the model config).
            fps: video frame rate (default from the model config, usually 25).
            num_inference_steps: denoising steps per chunk (the distilled student uses 4).
            guidance_scale: audio classifier-free guidance (teacher sampler only; 1 disables it).
            chunk_frames: latent frames generated per chunk (each is 4 video frames).
            kernel_frames: motion-kernel length: clean latent frames carried to the next chunk.
            sampler: ``"teacher"`` or ``"distilled"`` (default from the model config).
            generator: ``torch.Generator`` for reproducible results.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict: return an :class:`AsymKPipelineOutput` (else a tuple ``(frames,)``).
            callback_on_step_end: ``callback(pipe, global_step, step_in_chunk, callback_kwargs) -> dict``;
                a returned ``"latents"`` replaces the current latents.
            callback_on_step_end_tensor_inputs: names passed in ``callback_kwargs`` (``["latents"]``).
            paste_back: ``image`` is a real photo (any size and aspect): the face is found (OpenCV Haar
                cascade), a padded crop of it at ``height`` x ``width`` is animated, and every frame is
                blended back into the photo (feathered, colour-matched), so the frames have the photo's
                size. See ``docs/photoreal.md``.
            face_box: with ``paste_back``, the face's box ``(x, y, w, h)`` in photo pixels instead of
                detecting it.
            face_padding: with ``paste_back``, crop side / face side (default 1.8).

        Examples:
        """
        # 1. Check the output type; resolve and check every other setting (in prepare)
        if output_type not in OUTPUT_TYPES:
            raise input_error("output_type", f"{output_type!r} is not supported", f"use one of {OUTPUT_TYPES}")
        if paste_back is True and output_type == "latent":
            raise input_error("paste_back", "latents cannot be pasted into a photo",
                              "use output_type 'pil', 'np' or 'pt', or decode the latents first")
        # 2. Prepare the render: portrait, lazy audio features, chunk plan
        session = self.prepare(
            image, audio, sample_rate, height, width, fps, num_inference_steps, guidance_scale, chunk_frames,
            kernel_frames, sampler, generator, callback_on_step_end, callback_on_step_end_tensor_inputs,
            paste_back=paste_back, face_box=face_box, face_padding=face_padding,
        )
        # 3. The KCLG chunk loop (TRE reference encoded on the first chunk), decoding as it goes; with
        #    paste_back each chunk's frames are blended into the photo
        decode = output_type != "latent"
        chunks = session.chunks(decode=decode)
        if session.paste_back is not None:
            chunks = paste_back_chunks(chunks, session.paste_back)
        if output_type == "pil":  # per chunk, so only 8-bit images accumulate
            pieces = [PIL.Image.fromarray(frame) for chunk in chunks
                      for frame in (chunk.frames[0].float().cpu().numpy() * 255).round().astype(np.uint8)]
        else:
            pieces = [(chunk.frames[0] if decode else chunk.latents).cpu() for chunk in chunks]
        # 4. Post-process
        if output_type == "pil":
            frames = pieces
        elif output_type == "latent":
            frames = torch.cat(pieces, dim=2)
        else:
            video = torch.cat(pieces, dim=0)  # [F, H, W, 3]
            if output_type == "np":
                frames = video.numpy()
            else:
                frames = video.permute(0, 3, 1, 2).contiguous()
        if not return_dict:
            return (frames,)
        return AsymKPipelineOutput(frames=frames, fps=float(session.settings.fps), audio=session.audio.waveform)


AsymKPipeline.__call__.__doc__ = AsymKPipeline.__call__.__doc__.replace("Examples:\n", EXAMPLE_DOC_STRING)
