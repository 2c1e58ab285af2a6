"""AsymK Face Crop and AsymK Paste Back: animate a real photo of any size, get the whole photo back.

Thin wrappers over :mod:`asymk_talker.asymk_core.face_crop`: Face Crop finds the face and gives
the model-size crop (into AsymK Reference Encode) plus an ``ASYMK_FACE_CROP`` (the photo and the
box); Paste Back blends generated frames into the photo one by one. AsymK Render Video takes the
same ``ASYMK_FACE_CROP`` to paste while it streams the mp4 (constant memory for long videos).
"""

from __future__ import annotations

import numpy as np
import torch

import comfy.model_management
import comfy.utils
from comfy_api.latest import io

from ..asymk_core.errors import input_error
from ..asymk_core.face_crop import (DEFAULT_FEATHER, DEFAULT_PADDING, COLOR_MATCH, FaceCrop, PasteBack,
                                    pad_to_even, parse_face_box)
from ..asymk_core.face_crop import even_size as even_size_of  # the node's input is named even_size
from .common import CATEGORY, AsymKFaceCropType, comfy_image_to_frames, expect


def _first_image(image, argument: str) -> np.ndarray:
    """A ComfyUI IMAGE ``[B, H, W, C]`` -> its first image, uint8 ``[H, W, 3]``."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] not in (3, 4):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise input_error(argument, f"expected a ComfyUI IMAGE [B, H, W, 3] tensor, got {got}",
                          "connect an IMAGE output such as Load Image", kind=TypeError)
    pixels = image[0, ..., :3].float().cpu().clamp(0, 1).numpy()
    return np.rint(pixels * 255.0).astype(np.uint8)


class AsymKFaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKFaceCrop",
            display_name="AsymK Face Crop",
            category=CATEGORY,
            description="Find the face in a real photo (any size or aspect ratio; OpenCV Haar cascade, the largest "
                        "face) and crop a padded box around it at the video size. Feed the crop to AsymK Reference "
                        "Encode and the face_crop to AsymK Paste Back (or AsymK Render Video).",
            inputs=[
                io.Image.Input("image", tooltip="The photo (the first image of a batch is used)."),
                io.Int.Input("width", default=64, min=16, max=2048, step=8,
                             tooltip="Crop width in pixels: the video width set in AsymK Reference Encode."),
                io.Int.Input("height", default=64, min=16, max=2048, step=8,
                             tooltip="Crop height in pixels: the video height set in AsymK Reference Encode."),
                io.Float.Input("padding", default=DEFAULT_PADDING, min=1.0, max=4.0, step=0.05, round=0.01,
                               tooltip="Crop side / face side: room for hair, chin and neck around the face."),
                io.String.Input("face_box", default="auto", optional=True,
                                tooltip="auto: detect the face. Else the face's box x,y,w,h in photo pixels."),
            ],
            outputs=[
                io.Image.Output(display_name="face"),
                AsymKFaceCropType.Output(display_name="face_crop"),
            ],
        )

    @classmethod
    def execute(cls, image, width: int = 64, height: int = 64, padding: float = DEFAULT_PADDING,
                face_box: str = "auto") -> io.NodeOutput:
        photo = _first_image(image, "image")
        crop = FaceCrop.detect(photo, (int(width), int(height)), float(padding), parse_face_box(face_box))
        face = torch.from_numpy(crop.crop(photo).astype(np.float32) / 255.0)[None]
        return io.NodeOutput(comfy_image_to_frames(face), PasteBack(photo, crop))


class AsymKPasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AsymKPasteBack",
            display_name="AsymK Paste Back",
            category=CATEGORY,
            description="Blend generated face frames back into the full-resolution photo, frame by frame: resized "
                        "to the face box, colours matched at the box border, feathered edge; the rest of the "
                        "photo is unchanged (odd sides one pixel more for video, unless even_size is off).",
            inputs=[
                AsymKFaceCropType.Input("face_crop", tooltip="The face_crop output of AsymK Face Crop."),
                io.Image.Input("images", tooltip="Generated frames (e.g. AsymK Decode), the crop's size."),
                io.Float.Input("feather", default=DEFAULT_FEATHER, min=0.0, max=0.5, step=0.01, round=0.01,
                               tooltip="Width of the blending band at the box edge, as a fraction of the box.",
                               optional=True),
                io.Combo.Input("color_match", options=list(COLOR_MATCH), default="mean_std", optional=True,
                               tooltip="Match the frames' colours to the photo at the box border: mean and "
                                       "standard deviation per channel, the mean only, or none."),
                io.Boolean.Input("even_size", default=True, optional=True,
                                 tooltip="On: an odd photo side gets one more pixel row / column (copied from "
                                         "the edge), as H.264 video (Save Video) needs. Off: exactly the "
                                         "photo's size."),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, face_crop, images, feather: float = DEFAULT_FEATHER, color_match: str = "mean_std",
                even_size: bool = True) -> io.NodeOutput:
        paste = expect(face_crop, PasteBack, "face_crop", "an ASYMK_FACE_CROP (AsymK Face Crop)")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise input_error("images", f"expected a ComfyUI IMAGE [B, H, W, 3] tensor, got {got}",
                              "connect the images output of AsymK Decode", kind=TypeError)
        paste = PasteBack(paste.photo, paste.crop, feather=float(feather), color_match=color_match)
        width, height = even_size_of(*paste.output_size) if even_size else paste.output_size
        pad = pad_to_even if even_size else (lambda frame: frame)
        out = torch.empty((images.shape[0], height, width, 3), dtype=torch.float32,
                          device=comfy.model_management.intermediate_device())
        bar = comfy.utils.ProgressBar(images.shape[0])
        for index, frame in enumerate(images):  # one frame at a time: only the output batch grows
            out[index] = torch.from_numpy(pad(paste(frame.float().cpu().numpy())).astype(np.float32) / 255.0)
            bar.update(1)
            comfy.model_management.throw_exception_if_processing_interrupted()
        return io.NodeOutput(out)
