"""AsymK Load Model: a pipeline folder from ``models/asymk/`` -> ``ASYMK_PIPELINE``."""

from __future__ import annotations

import importlib.util

import comfy.model_management
from comfy_api.latest import io

from ..asymk_core.choices import DTYPES, resolve_device_dtype
from ..asymk_core.errors import InputError, input_error
from .common import CATEGORY, NO_MODEL, AsymKModel, AsymKPipelineType, list_models, logger, resolve_model

ATTENTION_BACKENDS = {"sdpa": "native", "xformers": "xformers"}  # widget value -> diffusers backend name


def attention_choices() -> list[str]:
    choices = ["sdpa"]
    if importlib.util.find_spec("xformers") is not None:
        choices.append("xformers")
    return choices


class AsymKLoadModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        models = list_models()
        return io.Schema(
            node_id="AsymKLoadModel",
            display_name="AsymK Load Model",
            category=CATEGORY,
            description="Load an AsymK-Talker pipeline folder (diffusers format, model_index.json) from "
                        "ComfyUI/models/asymk/ (or an `asymk` entry of extra_model_paths.yaml).",
            inputs=[
                io.Combo.Input("model", options=models, default=models[0],
                               tooltip="A sub-folder of models/asymk/ that contains model_index.json."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="auto = bf16 on CUDA, fp32 otherwise."),
                io.Combo.Input("attention", options=attention_choices(), default="sdpa",
                               tooltip="sdpa = torch scaled-dot-product attention (diffusers 'native'); "
                                       "xformers is listed only when it is installed."),
            ],
            outputs=[AsymKPipelineType.Output(display_name="pipeline")],
        )

    @classmethod
    def execute(cls, model: str, dtype: str = "auto", attention: str = "sdpa") -> io.NodeOutput:
        from ..pipelines.pipeline_asymk import AsymKPipeline

        if model == NO_MODEL:
            resolve_model(model)  # raises the "where to put models" error
        if dtype not in DTYPES:
            raise input_error("dtype", f"unknown dtype {dtype!r}", f"use one of {list(DTYPES)}")
        if attention not in ATTENTION_BACKENDS:
            raise input_error("attention", f"unknown attention backend {attention!r}",
                              f"use one of {list(ATTENTION_BACKENDS)}")
        folder = resolve_model(model)
        device = comfy.model_management.get_torch_device()
        _, torch_dtype = resolve_device_dtype("cuda" if device.type == "cuda" else "cpu", dtype)
        try:
            pipe = AsymKPipeline.from_pretrained(folder, torch_dtype=torch_dtype)
        except InputError as error:  # the library names its own argument; the node's is `model`
            message = str(error).replace("`pretrained_model_name_or_path`", "`model`", 1)
            raise type(error)(message) from error
        pipe.to(comfy.model_management.unet_offload_device())
        pipe.set_progress_bar_config(disable=True)
        if attention != "sdpa":  # sdpa is diffusers' default ("native") backend
            try:
                pipe.transformer.set_attention_backend(ATTENTION_BACKENDS[attention])
            except Exception as error:  # broken or incompatible install
                raise input_error("attention", f"{attention} could not be enabled ({type(error).__name__}: {error})",
                                  "choose sdpa, or fix the xformers install") from error
        logger.info("AsymK: loaded %s (%s, %s attention)", folder, torch_dtype, attention)
        return io.NodeOutput(AsymKModel.create(pipe, folder, torch_dtype, attention))
