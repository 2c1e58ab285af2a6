"""A minimal stand-in for the few ComfyUI modules the AsymK nodes use (ComfyUI is not on PyPI).

Signatures follow ComfyUI's own (``comfy_api.latest._io`` / ``_ui``, ``folder_paths``,
``comfy.utils.ProgressBar``, ``comfy.model_management``, ``comfy.model_patcher.ModelPatcher``;
checked against ComfyUI 0.3.64 (commit a125cd8, 2025-10) and 0.8.0 (commit 3cd7b32, 2026-01)).
Only what the nodes call is here, written for this project. :func:`install` puts the modules into ``sys.modules``; the ``fake_comfy`` fixture in
``test_comfy_nodes.py`` does that for each test and removes them afterwards.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

MODULE_NAMES = ("comfy_api", "comfy_api.latest", "folder_paths", "comfy", "comfy.utils", "comfy.model_management",
                "comfy.model_patcher")


# --------------------------------------------------------------------------------- comfy_api io
def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"


class Input:
    io_type: str = None

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None, raw_link: bool = None):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.extra_dict = extra_dict or {}
        self.raw_link = raw_link

    def as_dict(self):
        return _prune({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                       "lazy": self.lazy, "rawLink": self.raw_link}) | _prune(self.extra_dict)


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default, self.socketless, self.widget_type, self.force_input = default, socketless, widget_type, force_input

    def as_dict(self):
        return super().as_dict() | _prune({"default": self.default, "socketless": self.socketless,
                                           "widgetType": self.widget_type, "forceInput": self.force_input})


class Output:
    io_type: str = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id, self.display_name, self.tooltip = id, display_name or id, tooltip
        self.is_output_list = is_output_list

    def as_dict(self):
        return _prune({"display_name": self.display_name or self.id, "tooltip": self.tooltip,
                       "is_output_list": self.is_output_list})


def _comfy_type(io_type: str, input_base=Input, name: str = None):
    input_cls = type("Input", (input_base,), {"io_type": io_type})
    output_cls = type("Output", (Output,), {"io_type": io_type})
    return type(name or io_type.title(), (), {"io_type": io_type, "Input": input_cls, "Output": output_cls})


class _IntInput(WidgetInput):
    io_type = "INT"

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: int = None, min: int = None, max: int = None, step: int = None,
                 control_after_generate: bool = None, display_mode=None, socketless: bool = None,
                 force_input: bool = None, extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict,
                         raw_link)
        self.min, self.max, self.step, self.control_after_generate = min, max, step, control_after_generate

    def as_dict(self):
        return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step,
                                           "control_after_generate": self.control_after_generate})


class _FloatInput(WidgetInput):
    io_type = "FLOAT"

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: float = None, min: float = None, max: float = None, step: float = None,
                 round: float = None, display_mode=None, socketless: bool = None, force_input: bool = None,
                 extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict,
                         raw_link)
        self.min, self.max, self.step, self.round = min, max, step, round

    def as_dict(self):
        return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step, "round": self.round})


class _StringInput(WidgetInput):
    io_type = "STRING"

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 multiline=False, placeholder: str = None, default: str = None, dynamic_prompts: bool = None,
                 socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict,
                         raw_link)
        self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

    def as_dict(self):
        return super().as_dict() | _prune({"multiline": self.multiline, "placeholder": self.placeholder,
                                           "dynamicPrompts": self.dynamic_prompts})


class _ComboInput(WidgetInput):
    io_type = "COMBO"

    def __init__(self, id: str, options=None, display_name: str = None, optional=False, tooltip: str = None,
                 lazy: bool = None, default=None, control_after_generate: bool = None, upload=None,
                 image_folder=None, remote=None, socketless: bool = None, extra_dict=None, raw_link: bool = None):
        if isinstance(options, type) and issubclass(options, Enum):
            options = [v.value for v in options]
        if isinstance(default, Enum):
            default = default.value
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None, extra_dict,
                         raw_link)
        self.multiselect = False
        self.options, self.control_after_generate = options, control_after_generate

    def as_dict(self):
        return super().as_dict() | _prune({"multiselect": self.multiselect, "options": self.options,
                                           "control_after_generate": self.control_after_generate})


def _build_io() -> types.ModuleType:
    io = types.ModuleType("comfy_api.latest.io")
    io.FolderType, io.Hidden, io.Input, io.WidgetInput, io.Output = FolderType, Hidden, Input, WidgetInput, Output
    for name, io_type, base in (("Int", "INT", _IntInput), ("Float", "FLOAT", _FloatInput),
                                ("String", "STRING", _StringInput), ("Combo", "COMBO", _ComboInput),
                                ("Boolean", "BOOLEAN", WidgetInput)):
        setattr(io, name, _comfy_type(io_type, base, name))
    for name, io_type in (("Image", "IMAGE"), ("Mask", "MASK"), ("Latent", "LATENT"), ("Audio", "AUDIO"),
                          ("Video", "VIDEO"), ("AnyType", "*")):
        setattr(io, name, _comfy_type(io_type, Input, name))
    io.Custom = lambda io_type: _comfy_type(io_type, Input, "CustomComfyType")

    @dataclass
    class Schema:
        node_id: str
        display_name: str = None
        category: str = "sd"
        inputs: list = None
        outputs: list = None
        hidden: list = None
        description: str = ""
        is_input_list: bool = False
        is_output_node: bool = False
        is_deprecated: bool = False
        is_experimental: bool = False
        is_api_node: bool = False
        not_idempotent: bool = False
        enable_expand: bool = False

        def validate(self):
            input_ids = [i.id for i in self.inputs or []]
            output_ids = [o.id for o in self.outputs or []]
            issues = []
            if len(set(input_ids)) != len(input_ids):
                issues.append(f"Input ids must be unique: {[k for k, c in Counter(input_ids).items() if c > 1]}")
            if len(set(output_ids)) != len(output_ids):
                issues.append(f"Output ids must be unique: {[k for k, c in Counter(output_ids).items() if c > 1]}")
            if set(input_ids) & set(output_ids):
                issues.append(f"Ids must be unique between inputs and outputs: {set(input_ids) & set(output_ids)}")
            if issues:
                raise ValueError("\n".join(issues))

        def finalize(self):
            if self.is_output_node:
                self.hidden = list(self.hidden or [])
                for hidden in (Hidden.prompt, Hidden.extra_pnginfo):
                    if hidden not in self.hidden:
                        self.hidden.append(hidden)
            for index, output in enumerate(self.outputs or []):
                if output.id is None:
                    output.id = f"_{index}_{output.io_type}_"

    class ComfyNode(ABC):
        SCHEMA = None

        @classmethod
        @abstractmethod
        def define_schema(cls) -> Schema: ...

        @classmethod
        @abstractmethod
        def execute(cls, **kwargs): ...

        @classmethod
        def GET_SCHEMA(cls) -> Schema:
            schema = cls.define_schema()
            schema.finalize()
            schema.validate()
            cls.SCHEMA = schema
            return schema

    class NodeOutput:
        def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
            self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

        @property
        def result(self):
            return self.args if len(self.args) > 0 else None

        def __getitem__(self, index):
            return self.args[index]

    io.Schema, io.ComfyNode, io.NodeOutput = Schema, ComfyNode, NodeOutput
    return io


def _build_ui(io) -> types.ModuleType:
    ui = types.ModuleType("comfy_api.latest.ui")

    class SavedResult(dict):
        def __init__(self, filename: str, subfolder: str, type: FolderType):
            super().__init__(filename=filename, subfolder=subfolder, type=type.value)

    class PreviewVideo:
        def __init__(self, values: list, **kwargs):
            self.values = values

        def as_dict(self):
            return {"images": self.values, "animated": (True,)}

    ui.SavedResult, ui.PreviewVideo = SavedResult, PreviewVideo
    return ui


class VideoFromFile:
    def __init__(self, file):
        self._file = file

    def get_stream_source(self):
        return self._file


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        pass

    @abstractmethod
    async def get_node_list(self) -> list: ...


# ------------------------------------------------------------------------------ folder_paths
def _build_folder_paths(base: str) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    fp.base_path = base
    fp.models_dir = os.path.join(base, "models")
    fp.output_directory = os.path.join(base, "output")
    fp.folder_names_and_paths = {"checkpoints": ([os.path.join(fp.models_dir, "checkpoints")], {".safetensors"})}

    def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        if folder_name in fp.folder_names_and_paths:
            paths, _ = fp.folder_names_and_paths[folder_name]
            if full_folder_path in paths:
                if is_default and paths[0] != full_folder_path:
                    paths.remove(full_folder_path)
                    paths.insert(0, full_folder_path)
            elif is_default:
                paths.insert(0, full_folder_path)
            else:
                paths.append(full_folder_path)
        else:
            fp.folder_names_and_paths[folder_name] = ([full_folder_path], set())

    def get_folder_paths(folder_name: str) -> list[str]:
        return fp.folder_names_and_paths[folder_name][0][:]

    def get_output_directory() -> str:
        return fp.output_directory

    def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0, image_height=0):
        subfolder = os.path.dirname(os.path.normpath(filename_prefix))
        filename = os.path.basename(os.path.normpath(filename_prefix))
        full_output_folder = os.path.join(output_dir, subfolder)
        if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
            raise Exception("Saving image outside the output folder is not allowed.")
        os.makedirs(full_output_folder, exist_ok=True)
        counters = [int(f[len(filename) + 1:].split("_")[0]) for f in os.listdir(full_output_folder)
                    if f.startswith(filename + "_") and f[len(filename) + 1:].split("_")[0].isdigit()]
        return full_output_folder, filename, max(counters, default=0) + 1, subfolder, filename_prefix

    fp.add_model_folder_path, fp.get_folder_paths = add_model_folder_path, get_folder_paths
    fp.get_output_directory, fp.get_save_image_path = get_output_directory, get_save_image_path
    return fp


# ------------------------------------------------------------------------------------- comfy.*
def _build_comfy():
    comfy = types.ModuleType("comfy")
    utils = types.ModuleType("comfy.utils")
    utils.PROGRESS_BAR_HOOK = None
    utils.updates = []  # test hook: every (value, total) the progress bar reported

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current, self.node_id = total, 0, node_id

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            utils.updates.append((self.current, self.total))
            # the hook ComfyUI's server installs raises on "Cancel" at every progress update
            mm.throw_exception_if_processing_interrupted()

        def update(self, value):
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar

    mm = types.ModuleType("comfy.model_management")
    mm.current_loaded_models = []
    mm.interrupt_processing = False
    mm.interrupt_processing_mutex = threading.RLock()

    class InterruptProcessingException(Exception):
        pass

    def interrupt_current_processing(value=True):
        mm.interrupt_processing = value

    def throw_exception_if_processing_interrupted():
        with mm.interrupt_processing_mutex:
            if mm.interrupt_processing:
                mm.interrupt_processing = False
                raise InterruptProcessingException()

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        for patcher in models:
            patcher.model.to(patcher.load_device)
            if patcher not in mm.current_loaded_models:
                mm.current_loaded_models.insert(0, patcher)

    def unload_all_models():
        for patcher in mm.current_loaded_models:
            patcher.model.to(patcher.offload_device)
        mm.current_loaded_models.clear()

    mm.InterruptProcessingException = InterruptProcessingException
    mm.interrupt_current_processing = interrupt_current_processing
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.load_models_gpu, mm.unload_all_models = load_models_gpu, unload_all_models
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")

    patcher_module = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
            if not hasattr(self.model, "device"):
                self.model.device = offload_device  # as ComfyUI does: fails on a read-only `device`

    patcher_module.ModelPatcher = ModelPatcher
    comfy.utils, comfy.model_management, comfy.model_patcher = utils, mm, patcher_module
    return comfy, utils, mm, patcher_module


def install(base: str) -> dict[str, types.ModuleType]:
    """Put the fake modules into ``sys.modules``; returns them by name."""
    io = _build_io()
    ui = _build_ui(io)
    latest = types.ModuleType("comfy_api.latest")
    latest.io, latest.ui, latest.ComfyExtension = io, ui, ComfyExtension
    latest.InputImpl = type("InputImpl", (), {"VideoFromFile": VideoFromFile})
    comfy_api = types.ModuleType("comfy_api")
    comfy_api.latest = latest
    comfy, utils, mm, patcher = _build_comfy()
    modules = {"comfy_api": comfy_api, "comfy_api.latest": latest, "folder_paths": _build_folder_paths(base),
               "comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm, "comfy.model_patcher": patcher}
    sys.modules.update(modules)
    return modules


def uninstall() -> None:
    for name in MODULE_NAMES:
        sys.modules.pop(name, None)

