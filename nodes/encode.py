"""AsymK Reference Encode (TRE) and AsymK Audio Encode."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..asymk_core.errors import input_error
from ..asymk_core.generation import latent_size
from ..asymk_core.image import preprocess_image
from .common import (
    CATEGORY,
    AsymKAudioType,
    AsymKModel,
    AsymKPipelineType,
    AsymKReference,
    AsymKReferenceType,
    expect,
)


MIN_CROP = 32


def _center_zoom(image: torch.Tensor, zoom: float) -> torch.Tensor:
    """Keep the central ``1 / zoom`` of a ComfyUI IMAGE ``[1, H, W, C]`` (a centred face crop)."""
    if zoom <= 1.0:
        return image
    height, width = image.shape[1:3]
    # never below MIN_CROP px (the image loader's smallest accepted side), nor above the image
    crop_h = min(height, max(min(MIN_CROP, height), round(height / zoom)))
    crop_w = min(width, max(min(MIN_CROP, width), round(width / zoom)))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[:, top : top + crop_h, left : left + crop_w]


class AsymKReferenceEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKReferenceEncode",
            display_name="AsymK Reference Encode (TRE)",
            category=CATEGORY,
            description="Temporal Reference Encoding: the portrait is centre-cropped, resized, replicated "
                        "into a pseudo-video as long as one chunk window and encoded by the causal 3D VAE.",
            inputs=[
                AsymKPipelineType.Input("pipeline"),
                io.Image.Input("image", tooltip="The portrait (the first image of a batch is used)."),
                # step 8: the front end snaps INT widgets to multiples of their step, and the shipped
                # model takes any multiple of 8 (a model that needs 16 says so when it runs)
                io.Int.Input("width", default=64, min=16, max=2048, step=8,
                             tooltip="Video width in pixels (a multiple of the model's VAE x patch size: "
                                     "8 for the shipped model)."),
                io.Int.Input("height", default=64, min=16, max=2048, step=8,
                             tooltip="Video height in pixels (a multiple of the model's VAE x patch size)."),
                io.Float.Input("face_zoom", default=1.0, min=1.0, max=4.0, step=0.05, round=0.01,
                               tooltip="Centre face crop: 1 = the whole (centre-cropped) image; 2 = the "
                                       "central half, for portraits where the face is small.", optional=True),
            ],
            outputs=[AsymKReferenceType.Output(display_name="reference")],
        )

    @classmethod
    def execute(cls, pipeline: AsymKModel, image: torch.Tensor, width: int = 64, height: int = 64,
                face_zoom: float = 1.0) -> io.NodeOutput:
        model = expect(pipeline, AsymKModel, "pipeline", "an ASYMK_PIPELINE (AsymK Load Model)")
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] not in (1, 3, 4):
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise input_error("image", f"expected a ComfyUI IMAGE [B, H, W, C] tensor, got {got}",
                              "connect an IMAGE output such as Load Image", kind=TypeError)
        pipe = model.ready()
        latent_size(pipe.vae, pipe.transformer, int(height), int(width))  # clear error for a bad size
        picture = _center_zoom(image[:1].float().cpu(), float(face_zoom or 1.0))
        tensor = preprocess_image(picture, int(height), int(width))
        reference = AsymKReference(image=tensor.cpu(), height=int(height), width=int(width))
        reference.latents_for(pipe, pipe.config.kernel_frames + pipe.config.chunk_frames)  # the default window
        return io.NodeOutput(reference)


class AsymKAudioEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKAudioEncode",
            display_name="AsymK Audio Encode",
            category=CATEGORY,
            description="Speech -> per-video-frame audio feature windows (16 kHz mono; log-mel or wav2vec2, "
                        "whichever the model uses). The video will have round(duration x fps) frames.",
            inputs=[
                AsymKPipelineType.Input("pipeline"),
                io.Audio.Input("audio", tooltip="Speech (the first clip of a batch is used)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Video frame rate (the shipped models are trained at 25)."),
            ],
            outputs=[
                AsymKAudioType.Output(display_name="audio_features"),
                io.Int.Output(display_name="frames", tooltip="Number of video frames: round(duration x fps)."),
                io.Float.Output(display_name="fps", tooltip="The frame rate (connect it to Create Video)."),
            ],
        )

    @classmethod
    def execute(cls, pipeline: AsymKModel, audio: dict, fps: float = 25.0) -> io.NodeOutput:
        model = expect(pipeline, AsymKModel, "pipeline", "an ASYMK_PIPELINE (AsymK Load Model)")
        if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
            raise input_error("audio", f"expected a ComfyUI AUDIO dict with 'waveform' and 'sample_rate', got "
                              f"{type(audio).__name__}", "connect an AUDIO output such as Load Audio", kind=TypeError)
        waveform = audio["waveform"]
        if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or waveform.shape[0] < 1:
            got = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
            raise input_error("audio", f"'waveform' must be a [B, C, T] tensor, got {got}",
                              "connect an AUDIO output such as Load Audio", kind=TypeError)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= 120:
            raise input_error("fps", f"{fps!r} is not a frame rate", "pass a number between 1 and 120")
        pipe = model.ready()
        features = pipe.encode_audio(waveform[:1].float().cpu(), int(audio["sample_rate"]), float(fps))
        return io.NodeOutput(features, int(features.num_frames), float(fps))
