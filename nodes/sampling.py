"""AsymK Chunk Loop Sampler (KCLG), AsymK Decode and AsymK Render Video (streaming to mp4).

The sampler and Render Video drive a render session (:meth:`AsymKPipeline.prepare`, the one path
the pipeline and the CLI use); Decode runs the same decode on stored latents (seamless streaming,
or window by window for a model that re-encodes its kernels from decoded frames).
"""

from __future__ import annotations

import os

import torch

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import InputImpl, io, ui

from ..asymk_core.audio import SAMPLE_RATE
from ..asymk_core.errors import input_error
from ..asymk_core.face_crop import PasteBack, even_size, paste_back_chunks
from ..asymk_core.generation import decode_stored_chunks
from ..asymk_core.kclg import ChunkPlan
from ..asymk_core.video_io import write_chunks
from .common import (
    CATEGORY,
    AsymKAudioType,
    AsymKFaceCropType,
    AsymKModel,
    AsymKPipelineType,
    AsymKReference,
    AsymKReferenceType,
    StepProgress,
    audio_features_class,
    comfy_image_to_frames,
    expect,
    prepare_session,
    sampling_inputs,
)

LATENT_KEYS = ("asymk_initial_kernel", "asymk_num_frames", "asymk_chunk_frames", "asymk_kernel_frames",
               "asymk_temporal_factor", "asymk_fps")


def _check_inputs(pipeline, reference, audio_features):
    model = expect(pipeline, AsymKModel, "pipeline", "an ASYMK_PIPELINE (AsymK Load Model)")
    reference = expect(reference, AsymKReference, "reference", "an ASYMK_REFERENCE (AsymK Reference Encode)")
    audio_features = expect(audio_features, audio_features_class(), "audio_features",
                            "an ASYMK_AUDIO (AsymK Audio Encode)")
    return model, reference, audio_features


class AsymKChunkLoopSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKChunkLoopSampler",
            display_name="AsymK Chunk Loop Sampler (KCLG)",
            category=CATEGORY,
            description="Kernel-Conditioned Loop Generation: chunk after chunk, each conditioned on the last "
                        "clean latent frames of the previous one. Outputs all latents (for short clips; use "
                        "AsymK Render Video for long ones).",
            inputs=[
                AsymKPipelineType.Input("pipeline"),
                AsymKReferenceType.Input("reference"),
                AsymKAudioType.Input("audio_features"),
                *sampling_inputs(),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, pipeline, reference, audio_features, seed=0, steps=0, chunk_frames=0, kernel_frames=0,
                guidance=0.0, sampler="auto") -> io.NodeOutput:
        model, reference, audio_features = _check_inputs(pipeline, reference, audio_features)
        session = prepare_session(model, reference, audio_features, seed, steps, chunk_frames, kernel_frames,
                                  guidance, sampler)
        plan = session.plan
        progress = StepProgress(plan.num_chunks, session.settings.num_inference_steps)
        pieces, kernels = [], []
        for chunk in session.chunks(decode=False, step_callback=progress):
            pieces.append(chunk.latents.float().cpu())
            if chunk.index and plan.kernel_source == "decoded":  # re-encoded frames: not in the latents
                kernels.append(chunk.kernel.float().cpu())
            progress.chunk_done(chunk.index)
        latent = {
            "samples": torch.cat(pieces, dim=2),
            "asymk_initial_kernel": session.initial_kernel.float().cpu(),
            "asymk_num_frames": plan.num_frames,
            "asymk_chunk_frames": plan.chunk_frames,
            "asymk_kernel_frames": plan.kernel_frames,
            "asymk_temporal_factor": plan.temporal_factor,
            "asymk_fps": session.settings.fps,
            # decoded frames are corrected towards the portrait (asymk_core.portrait_anchor, WindowCodec)
            "asymk_colour_reference": None if session.image is None else session.image.float().cpu(),
            "asymk_colour_correction": float(session.settings.colour_correction),
            "asymk_decoder_calibration": float(session.settings.decoder_calibration),
            "asymk_colour_lock": float(session.settings.colour_lock),
        }
        if plan.kernel_source == "decoded":  # each window is decoded on its own
            latent.update({
                "asymk_kernel_source": plan.kernel_source,
                "asymk_first_kernel_frames": plan.first_kernel_frames,
                "asymk_kernels": torch.cat(kernels, dim=2) if kernels else session.initial_kernel[:, :, :0].float().cpu(),
            })
        return io.NodeOutput(latent)


class AsymKDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKDecode",
            display_name="AsymK Decode",
            category=CATEGORY,
            description="Decode AsymK latents chunk by chunk with the causal VAE (seamless at chunk "
                        "boundaries) into an IMAGE batch, one image per video frame.",
            inputs=[
                AsymKPipelineType.Input("pipeline"),
                io.Latent.Input("latent", tooltip="The output of AsymK Chunk Loop Sampler."),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="fps"),
            ],
        )

    @classmethod
    def execute(cls, pipeline, latent) -> io.NodeOutput:
        model = expect(pipeline, AsymKModel, "pipeline", "an ASYMK_PIPELINE (AsymK Load Model)")
        if not isinstance(latent, dict) or "samples" not in latent:
            raise input_error("latent", f"expected a LATENT dict, got {type(latent).__name__}",
                              "connect the output of AsymK Chunk Loop Sampler", kind=TypeError)
        missing = [key for key in LATENT_KEYS if key not in latent]
        if missing:
            raise input_error("latent", f"this LATENT was not made by AsymK Chunk Loop Sampler (missing {missing})",
                              "connect the output of AsymK Chunk Loop Sampler")
        pipe = model.ready()
        plan = ChunkPlan(int(latent["asymk_num_frames"]), int(latent["asymk_chunk_frames"]),
                         int(latent["asymk_kernel_frames"]), int(latent["asymk_temporal_factor"]),
                         first_kernel_frames=latent.get("asymk_first_kernel_frames"),
                         kernel_source=latent.get("asymk_kernel_source", "latents"))
        device, dtype = pipe.transformer.device, pipe.transformer.dtype
        kernel = latent["asymk_initial_kernel"].to(device=device, dtype=dtype)
        kernels = None
        if plan.kernel_source == "decoded":
            if latent.get("asymk_kernels") is None:
                raise input_error("latent", "this LATENT of a model with re-encoded kernels has no asymk_kernels",
                                  "connect the output of AsymK Chunk Loop Sampler")
            kernels = latent["asymk_kernels"].to(device=device, dtype=dtype)
        colour = latent.get("asymk_colour_reference")
        colour = None if colour is None else colour.to(pipe.vae.device)
        bar = comfy.utils.ProgressBar(plan.num_chunks)
        pieces = []
        for decoded in decode_stored_chunks(pipe.vae, latent["samples"].to(device=device, dtype=dtype), kernel, plan,
                                            kernels, colour, float(latent.get("asymk_colour_correction", 0.0)),
                                            float(latent.get("asymk_decoder_calibration", 0.0)),
                                            float(latent.get("asymk_colour_lock", 0.0))):
            pieces.append(comfy_image_to_frames(decoded.frames[0]))
            bar.update(1)
            comfy.model_management.throw_exception_if_processing_interrupted()
        return io.NodeOutput(torch.cat(pieces, dim=0), float(latent["asymk_fps"]))


class AsymKRenderVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKRenderVideo",
            display_name="AsymK Render Video (streaming)",
            category=CATEGORY,
            description="The whole chunk loop streamed straight into an mp4 (with the audio) in the output "
                        "folder, chunk by chunk: memory stays constant however long the speech is. With a "
                        "face_crop (AsymK Face Crop) each frame is pasted back into the full photo.",
            inputs=[
                AsymKPipelineType.Input("pipeline"),
                AsymKReferenceType.Input("reference"),
                AsymKAudioType.Input("audio_features"),
                AsymKFaceCropType.Input("face_crop", optional=True,
                                        tooltip="From AsymK Face Crop: the video gets the photo's full size "
                                                "(odd sides gain one pixel)."),
                *sampling_inputs(),
                io.String.Input("filename_prefix", default="video/AsymK",
                                tooltip="Output path under ComfyUI's output folder (may include a sub-folder)."),
            ],
            outputs=[io.Video.Output(display_name="video")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, pipeline, reference, audio_features, seed=0, steps=0, chunk_frames=0, kernel_frames=0,
                guidance=0.0, sampler="auto", filename_prefix="video/AsymK", face_crop=None) -> io.NodeOutput:
        model, reference, audio_features = _check_inputs(pipeline, reference, audio_features)
        if face_crop is not None:
            expect(face_crop, PasteBack, "face_crop", "an ASYMK_FACE_CROP (AsymK Face Crop)")
        if not isinstance(filename_prefix, str) or not filename_prefix.strip():
            raise input_error("filename_prefix", "it is empty", "pass a name such as video/AsymK")
        session = prepare_session(model, reference, audio_features, seed, steps, chunk_frames, kernel_frames,
                                  guidance, sampler)
        progress = StepProgress(session.plan.num_chunks, session.settings.num_inference_steps)
        chunks, width, height = session.chunks(step_callback=progress), reference.width, reference.height
        if face_crop is not None:  # streamed into the photo chunk by chunk
            chunks = paste_back_chunks(chunks, face_crop, even=True)
            width, height = even_size(*face_crop.output_size)
        output_dir = folder_paths.get_output_directory()
        try:
            folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
                filename_prefix, output_dir, width, height
            )
        except Exception as error:  # e.g. ComfyUI refuses a prefix that leaves the output folder
            raise input_error("filename_prefix", f"{filename_prefix!r} cannot be used ({error})",
                              "use a relative name inside the output folder, such as video/AsymK") from None
        file = f"{filename}_{counter:05}_.mp4"
        path = os.path.join(folder, file)
        write_chunks(chunks, path, session.settings.fps, width, height, audio=audio_features.waveform,
                     audio_sample_rate=SAMPLE_RATE, argument="filename_prefix",
                     on_chunk=lambda chunk, frames, writer: progress.chunk_done(chunk.chunk.index))
        return io.NodeOutput(
            InputImpl.VideoFromFile(path),
            ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]),
        )
