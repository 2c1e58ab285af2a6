"""The ComfyUI nodes, workflows and extension entry point, against a fake ComfyUI (no ComfyUI needed)."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_comfy_fake  # noqa: E402  (the fake ComfyUI modules)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
OUR_NODES = {"AsymKLoadModel", "AsymKReferenceEncode", "AsymKAudioEncode", "AsymKChunkLoopSampler", "AsymKDecode",
             "AsymKRenderVideo", "AsymKFaceCrop", "AsymKPasteBack"}

# ComfyUI core nodes the workflows may use: inputs (name -> type) in order, widget names in
# widgets_values order (None = a UI-only widget), outputs. Facts from ComfyUI's node definitions.
CORE_NODES = {
    "LoadImage": dict(inputs={"image": "COMBO"}, widgets=["image", None], outputs=["IMAGE", "MASK"]),
    "LoadAudio": dict(inputs={"audio": "COMBO"}, widgets=["audio", None, None], outputs=["AUDIO"]),
    "CreateVideo": dict(inputs={"images": "IMAGE", "fps": "FLOAT", "audio": "AUDIO"}, widgets=["fps"],
                        outputs=["VIDEO"], ranges={"fps": (1.0, 120.0)}, optional={"audio"}),
    "SaveVideo": dict(inputs={"video": "VIDEO", "filename_prefix": "STRING", "format": "COMBO", "codec": "COMBO"},
                      widgets=["filename_prefix", "format", "codec"], outputs=[]),
    "PreviewAny": dict(inputs={"source": "*"}, widgets=[], outputs=[]),
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "COMBO", "BOOLEAN"}


def _drop_node_modules():
    """Forget the node modules so the next import binds to the ComfyUI modules now in sys.modules."""
    package = sys.modules.get("asymk_talker.nodes")
    for name in [n for n in sys.modules if n.startswith("asymk_talker.nodes.")]:
        del sys.modules[name]
        if package is not None and hasattr(package, name.rsplit(".", 1)[1]):
            delattr(package, name.rsplit(".", 1)[1])


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """Fake ComfyUI installed into sys.modules, with a fresh import of the node modules."""
    _drop_node_modules()
    modules = test_comfy_fake.install(str(tmp_path / "ComfyUI"))
    extension = importlib.import_module("asymk_talker.nodes.extension")
    asyncio.run(extension.comfy_entrypoint())  # registers the "asymk" model folder
    nodes = {cls.GET_SCHEMA().node_id: cls for cls in extension.node_list()}
    yield type("Comfy", (), dict(modules=modules, extension=extension, nodes=nodes, base=tmp_path / "ComfyUI",
                                 mm=modules["comfy.model_management"], utils=modules["comfy.utils"],
                                 folder_paths=modules["folder_paths"]))
    test_comfy_fake.uninstall()
    _drop_node_modules()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from asymk_talker import AsymKPipeline

    folder = tmp_path_factory.mktemp("asymk_models") / "tiny"
    AsymKPipeline.from_preset("tiny").save_pretrained(folder)
    return folder


@pytest.fixture
def models_dir(comfy, tiny_model_dir):
    """ComfyUI/models/asymk/tiny -> the tiny model."""
    target = Path(comfy.folder_paths.models_dir) / "asymk"
    target.mkdir(parents=True)
    (target / "tiny").symlink_to(tiny_model_dir, target_is_directory=True)
    return target


def comfy_image(height=72, width=64):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([xx, yy, torch.full_like(xx, 0.5)], dim=-1).unsqueeze(0)  # [1, H, W, 3]


def comfy_audio(speech, seconds=1.0, sample_rate=16000, channels=2):
    mono = torch.from_numpy(speech(seconds, sample_rate))
    return {"waveform": mono.expand(channels, -1).unsqueeze(0).contiguous(), "sample_rate": sample_rate}


def run_node(cls, **inputs):
    """Execute a node the way ComfyUI does (under inference_mode) and check its outputs against its schema."""
    schema = cls.GET_SCHEMA()
    known = {i.id for i in schema.inputs}
    assert set(inputs) <= known, f"unknown inputs {set(inputs) - known}"
    missing = {i.id for i in schema.inputs if not i.optional} - set(inputs)
    widgets = {i.id: i.default for i in schema.inputs if i.io_type in WIDGET_TYPES}
    assert missing <= set(widgets), f"missing required inputs {missing - set(widgets)}"
    with torch.inference_mode():
        output = cls.execute(**{**{k: widgets[k] for k in missing}, **inputs})
    assert len(output.args) == len(schema.outputs)
    for value, out in zip(output.args, schema.outputs):
        check_output_type(out.io_type, value)
    return output


def check_output_type(io_type, value):
    if io_type == "IMAGE":
        assert isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[-1] == 3
        assert value.dtype == torch.float32 and 0.0 <= value.min() and value.max() <= 1.0
    elif io_type == "LATENT":
        assert isinstance(value, dict) and isinstance(value["samples"], torch.Tensor)
    elif io_type == "INT":
        assert isinstance(value, int) and not isinstance(value, bool)
    elif io_type == "FLOAT":
        assert isinstance(value, float)
    elif io_type == "VIDEO":
        assert type(value).__name__ == "VideoFromFile"
    else:
        assert io_type.startswith("ASYMK_") and value is not None


# ------------------------------------------------------------------------------------ schemas
def test_every_node_schema_is_valid(comfy):
    assert set(comfy.nodes) == OUR_NODES
    for node_id, cls in comfy.nodes.items():
        schema = cls.GET_SCHEMA()
        assert schema.node_id == node_id and schema.display_name and schema.category == "AsymK-Talker"
        assert schema.description
        for item in [*schema.inputs, *schema.outputs]:
            assert isinstance(item.io_type, str) and item.io_type, (node_id, item.id)
        for item in schema.inputs:
            if getattr(item, "default", None) is None:
                continue
            if item.io_type in ("INT", "FLOAT"):
                assert item.min <= item.default <= item.max, (node_id, item.id)
            if item.io_type == "COMBO":
                assert item.default in item.options, (node_id, item.id)
    assert comfy.nodes["AsymKRenderVideo"].GET_SCHEMA().is_output_node


def test_size_widgets_reach_every_size_the_shipped_model_takes(comfy):
    # ComfyUI's front end snaps an INT widget to multiples of its step (offset by min % step), so a
    # step of 16 would make valid sizes such as 40 or 72 impossible to enter
    inputs = {i.id: i for i in comfy.nodes["AsymKReferenceEncode"].GET_SCHEMA().inputs}
    for name in ("width", "height"):
        assert inputs[name].step == 8 and inputs[name].min % 8 == 0 and inputs[name].default % 8 == 0, name


def test_only_v3_entry_point_is_exported(comfy):
    import asymk_talker

    assert not hasattr(asymk_talker, "NODE_CLASS_MAPPINGS")
    assert not hasattr(comfy.extension, "NODE_CLASS_MAPPINGS")
    extension = asyncio.run(asymk_talker.comfy_entrypoint())
    assert isinstance(extension, test_comfy_fake.ComfyExtension)
    nodes = asyncio.run(extension.get_node_list())
    assert {cls.GET_SCHEMA().node_id for cls in nodes} == OUR_NODES


def test_asymk_model_folder_lists_pipeline_folders(comfy, models_dir, tmp_path):
    fp = comfy.folder_paths
    assert str(models_dir) in fp.get_folder_paths("asymk")
    extra = tmp_path / "extra"  # an extra_model_paths.yaml entry named `asymk`
    (extra / "group" / "mine").mkdir(parents=True)
    (extra / "group" / "mine" / "model_index.json").write_text("{}")
    (extra / "not_a_model").mkdir()
    fp.add_model_folder_path("asymk", str(extra))
    options = comfy.nodes["AsymKLoadModel"].GET_SCHEMA().inputs[0].options
    assert "tiny" in options and "group/mine" in options and "not_a_model" not in options
    assert not any(o.startswith("tiny/") for o in options)  # component folders are not models


def test_shipped_default_model_is_the_loader_default(comfy, models_dir, tiny_model_dir, monkeypatch):
    from asymk_talker.asymk_core import model_folder

    monkeypatch.setattr(model_folder, "DEFAULT_MODEL_DIR", tiny_model_dir.parent / "asymk-synthetic")
    common = importlib.import_module("asymk_talker.nodes.common")
    assert common.list_models() == ["tiny"]  # not installed: not listed
    (tiny_model_dir.parent / "asymk-synthetic").symlink_to(tiny_model_dir, target_is_directory=True)
    model_input = comfy.nodes["AsymKLoadModel"].GET_SCHEMA().inputs[0]
    assert model_input.options == ["asymk-synthetic", "tiny"] and model_input.default == "asymk-synthetic"
    assert common.resolve_model("asymk-synthetic") == tiny_model_dir.parent / "asymk-synthetic"


def test_no_model_gives_clear_error(comfy):
    from asymk_talker.asymk_core.errors import InputError

    schema = comfy.nodes["AsymKLoadModel"].GET_SCHEMA()
    model_input = schema.inputs[0]
    assert model_input.default in model_input.options
    with pytest.raises(InputError, match="models/asymk"):
        comfy.nodes["AsymKLoadModel"].execute(model="missing-model")


# ---------------------------------------------------------------------------------- workflows
def _our_schemas(comfy):
    table = {}
    for node_id, cls in comfy.nodes.items():
        schema = cls.GET_SCHEMA()
        widgets = []
        for i in schema.inputs:
            if i.io_type in WIDGET_TYPES:
                widgets.append(i.id)
                if getattr(i, "control_after_generate", None):
                    widgets.append(None)  # the front end's "control after generate" value
        table[node_id] = dict(
            inputs={i.id: i.io_type for i in schema.inputs}, widgets=widgets,
            outputs=[o.io_type for o in schema.outputs], optional={i.id for i in schema.inputs if i.optional},
            specs={i.id: i for i in schema.inputs},
        )
    return table


def _check_widget(spec, name, value, where):
    if spec is None:
        return
    if spec.io_type in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert spec.min <= value <= spec.max, f"{where}: {name}={value} out of range"
        if spec.io_type == "INT":
            assert isinstance(value, int), where
    elif spec.io_type == "COMBO":
        if name == "model":  # the dropdown lists what is installed; the default is the shipped model's name
            from asymk_talker.asymk_core.model_folder import DEFAULT_MODEL_DIR

            assert value == DEFAULT_MODEL_DIR.name, where
        else:
            assert value in spec.options, f"{where}: {name}={value!r} not in {spec.options}"
    elif spec.io_type == "STRING":
        assert isinstance(value, str) and value, where


@pytest.mark.parametrize("name", ["asymk_talking_head.json", "asymk_long_form.json", "asymk_photo.json"])
def test_ui_workflow_is_consistent(comfy, name):
    workflow = json.loads((WORKFLOWS / name).read_text())
    schemas = {**CORE_NODES, **_our_schemas(comfy)}
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert workflow["version"] >= 0.4 and workflow["last_node_id"] == max(nodes)
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    for node in workflow["nodes"]:
        assert node["type"] in schemas, f"unknown node type {node['type']}"
        schema = schemas[node["type"]]
        for slot in node["inputs"]:
            assert schema["inputs"][slot["name"]] == slot["type"], (node["type"], slot)
        assert [o["type"] for o in node["outputs"]] == schema["outputs"], node["type"]
        assert len(node["widgets_values"]) == len(schema["widgets"]), node["type"]
        for widget, value in zip(schema["widgets"], node["widgets_values"]):
            if widget is not None and "specs" in schema:
                _check_widget(schema["specs"][widget], widget, value, f"{name}:{node['type']}")
        if node["type"] in OUR_NODES:  # every socket (non-widget, non-optional) input is connected
            linked = {slot["name"] for slot in node["inputs"] if slot["link"] is not None}
            sockets = {k for k, t in schema["inputs"].items() if t not in WIDGET_TYPES} - schema["optional"]
            assert sockets <= linked, (node["type"], sockets - linked)
    for link_id, source, source_slot, target, target_slot, link_type in workflow["links"]:
        out = nodes[source]["outputs"][source_slot]
        into = nodes[target]["inputs"][target_slot]
        assert link_id in out["links"] and into["link"] == link_id
        assert out["type"] == into["type"] == link_type
    for node in workflow["nodes"]:  # no dangling references
        for slot in node["inputs"]:
            assert slot["link"] is None or any(link[0] == slot["link"] for link in workflow["links"])
    assert any(n["type"] in ("SaveVideo", "AsymKRenderVideo") for n in workflow["nodes"])


def test_every_template_json_is_a_ui_workflow():
    # ComfyUI offers each *.json directly in a pack's workflows/ folder under Templates > Extensions and
    # opens it as a UI graph: an API-format file there opens as an empty canvas with a validation alert
    names = sorted(path.name for path in WORKFLOWS.glob("*.json"))
    assert names == ["asymk_long_form.json", "asymk_photo.json", "asymk_talking_head.json"]
    for name in names:
        workflow = json.loads((WORKFLOWS / name).read_text())
        assert "version" in workflow and isinstance(workflow["nodes"], list) and "links" in workflow, name


def test_api_workflow_matches_ui_workflow(comfy):
    api = json.loads((WORKFLOWS / "api" / "asymk_talking_head_api.json").read_text())
    ui = json.loads((WORKFLOWS / "asymk_talking_head.json").read_text())
    schemas = {**CORE_NODES, **_our_schemas(comfy)}
    assert {int(k): v["class_type"] for k, v in api.items()} == {n["id"]: n["type"] for n in ui["nodes"]}
    for node_id, node in api.items():
        schema = schemas[node["class_type"]]
        for name, value in node["inputs"].items():
            assert name in schema["inputs"], (node["class_type"], name)
            if isinstance(value, list):
                source = api[value[0]]
                source_type = schemas[source["class_type"]]["outputs"][value[1]]
                assert source_type == schema["inputs"][name], (node["class_type"], name)
            elif "specs" in schema:
                _check_widget(schema["specs"][name], name, value, f"api:{node['class_type']}")
        required = {k for k in schema["inputs"]} - schema.get("optional", set())
        assert required <= set(node["inputs"]), (node["class_type"], required - set(node["inputs"]))
    assert api["9"]["class_type"] == "SaveVideo" and api["8"]["inputs"]["audio"] == ["2", 0]


# ------------------------------------------------------------------------------- execution
@pytest.fixture
def loaded(comfy, models_dir):
    return run_node(comfy.nodes["AsymKLoadModel"], model="tiny", dtype="fp32", attention="sdpa")[0]


def test_nodes_execute_end_to_end(comfy, loaded, speech):
    assert loaded.patcher.model.transformer is loaded.pipe.transformer  # ComfyUI manages its devices
    reference = run_node(comfy.nodes["AsymKReferenceEncode"], pipeline=loaded, image=comfy_image(), width=32,
                         height=32)[0]
    audio = comfy_audio(speech, seconds=1.0, sample_rate=22050)
    features, frames, fps = run_node(comfy.nodes["AsymKAudioEncode"], pipeline=loaded, audio=audio, fps=25.0).args
    assert frames == round(1.0 * 25) and fps == 25.0
    comfy.utils.updates.clear()
    latent = run_node(comfy.nodes["AsymKChunkLoopSampler"], pipeline=loaded, reference=reference,
                      audio_features=features, seed=3, steps=2)[0]
    plan_chunks = math.ceil(math.ceil(frames / 4) / loaded.pipe.config.chunk_frames)
    assert latent["samples"].shape[2] == plan_chunks * loaded.pipe.config.chunk_frames
    assert comfy.utils.updates[-1] == (plan_chunks * 2, plan_chunks * 2)  # per step, per chunk
    assert len(comfy.utils.updates) >= plan_chunks * 2
    images, out_fps = run_node(comfy.nodes["AsymKDecode"], pipeline=loaded, latent=latent).args
    assert images.shape == (frames, 32, 32, 3) and out_fps == 25.0
    again = run_node(comfy.nodes["AsymKChunkLoopSampler"], pipeline=loaded, reference=reference,
                     audio_features=features, seed=3, steps=2)[0]
    torch.testing.assert_close(again["samples"], latent["samples"])  # the seed makes it reproducible


def test_render_video_writes_mp4_with_audio(comfy, loaded, speech):
    from asymk_talker.asymk_core.video_io import probe_video

    reference = run_node(comfy.nodes["AsymKReferenceEncode"], pipeline=loaded, image=comfy_image(), width=32,
                         height=32, face_zoom=1.5)[0]
    seconds, fps = 1.3, 25.0
    features = run_node(comfy.nodes["AsymKAudioEncode"], pipeline=loaded, audio=comfy_audio(speech, seconds),
                        fps=fps)[0]
    output = run_node(comfy.nodes["AsymKRenderVideo"], pipeline=loaded, reference=reference, audio_features=features,
                      steps=1, filename_prefix="video/test")
    saved = output.ui.as_dict()["images"][0]
    assert saved["subfolder"] == "video" and saved["type"] == "output" and saved["filename"].endswith(".mp4")
    path = Path(comfy.folder_paths.get_output_directory()) / "video" / saved["filename"]
    assert Path(output[0].get_stream_source()) == path and path.is_file()
    info = probe_video(path)
    assert info["num_frames"] == round(seconds * fps) and info["fps"] == pytest.approx(fps)
    assert info["has_audio"] and (info["width"], info["height"]) == (32, 32)
    assert info["audio_duration_s"] == pytest.approx(info["num_frames"] / fps, abs=0.05)
    second = run_node(comfy.nodes["AsymKRenderVideo"], pipeline=loaded, reference=reference,
                      audio_features=features, steps=1, filename_prefix="video/test")
    assert second.ui.as_dict()["images"][0]["filename"] != saved["filename"]  # never overwrites


def test_render_video_is_interruptible_and_leaves_no_file(comfy, loaded, speech):
    reference = run_node(comfy.nodes["AsymKReferenceEncode"], pipeline=loaded, image=comfy_image(), width=32,
                         height=32)[0]
    features = run_node(comfy.nodes["AsymKAudioEncode"], pipeline=loaded, audio=comfy_audio(speech, 2.0))[0]
    comfy.mm.interrupt_current_processing(True)
    with pytest.raises(comfy.mm.InterruptProcessingException):
        run_node(comfy.nodes["AsymKRenderVideo"], pipeline=loaded, reference=reference, audio_features=features,
                 steps=1, filename_prefix="video/cancelled")
    out = Path(comfy.folder_paths.get_output_directory())
    assert not [p for p in out.rglob("*") if p.is_file()]


def photo_input():
    """A 301 x 517 photo (the astronaut, cropped and padded): uint8 [H, W, 3] and its ComfyUI IMAGE."""
    skimage_data = pytest.importorskip("skimage.data")
    pytest.importorskip("cv2")
    photo = np.pad(skimage_data.astronaut()[:, 100:401], ((5, 0), (0, 0), (0, 0)), mode="edge")
    return photo, torch.from_numpy(photo.astype(np.float32) / 255.0)[None]


def test_face_crop_and_paste_back_nodes(comfy, loaded, speech):
    from asymk_talker.asymk_core.face_crop import FaceCrop
    from asymk_talker.asymk_core.video_io import probe_video

    photo, image = photo_input()
    face, face_crop = run_node(comfy.nodes["AsymKFaceCrop"], image=image, width=32, height=32).args
    crop = FaceCrop.detect(photo, 32)
    assert face_crop.crop == crop
    np.testing.assert_array_equal(np.rint(face[0].numpy() * 255).astype(np.uint8), crop.crop(photo))
    reference = run_node(comfy.nodes["AsymKReferenceEncode"], pipeline=loaded, image=face, width=32, height=32)[0]
    features = run_node(comfy.nodes["AsymKAudioEncode"], pipeline=loaded, audio=comfy_audio(speech, 0.5))[0]
    latent = run_node(comfy.nodes["AsymKChunkLoopSampler"], pipeline=loaded, reference=reference,
                      audio_features=features, steps=1)[0]
    images = run_node(comfy.nodes["AsymKDecode"], pipeline=loaded, latent=latent)[0]
    pasted = run_node(comfy.nodes["AsymKPasteBack"], face_crop=face_crop, images=images, even_size=False)[0]
    assert pasted.shape == (images.shape[0], 517, 301, 3)
    x0, y0, x1, y1 = crop.inside
    outside = torch.ones(517, 301, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(pasted[:, outside], image[0, outside].expand(images.shape[0], -1, -1))  # bit-exact
    assert (pasted[:, y0:y1, x0:x1] - image[:, y0:y1, x0:x1]).abs().max() > 0.05
    # the default: odd sides one pixel more (H.264 needs even sides: Create Video -> Save Video)
    even = run_node(comfy.nodes["AsymKPasteBack"], face_crop=face_crop, images=images)[0]
    assert even.shape == (images.shape[0], 518, 302, 3)
    assert torch.equal(even[:, :517, :301], pasted)
    assert torch.equal(even[:, 517, :301], pasted[:, 516]) and torch.equal(even[:, :, 301], even[:, :, 300])
    output = run_node(comfy.nodes["AsymKRenderVideo"], pipeline=loaded, reference=reference, audio_features=features,
                      face_crop=face_crop, steps=1, filename_prefix="video/photo")
    saved = output.ui.as_dict()["images"][0]
    info = probe_video(Path(comfy.folder_paths.get_output_directory()) / "video" / saved["filename"])
    assert (info["width"], info["height"]) == (302, 518) and info["num_frames"] == images.shape[0]
    manual = run_node(comfy.nodes["AsymKFaceCrop"], image=torch.full((1, 80, 60, 3), 0.5), width=32, height=32,
                      face_box="10, 20, 30, 30")[1]
    assert manual.crop.box_width == 54


def test_face_crop_nodes_errors(comfy):
    with pytest.raises(ValueError, match="^`image`: no face"):
        comfy.nodes["AsymKFaceCrop"].execute(image=torch.full((1, 80, 60, 3), 0.5), width=32, height=32)
    with pytest.raises(TypeError, match="^`image`"):
        comfy.nodes["AsymKFaceCrop"].execute(image=np.zeros((32, 32, 3)), width=32, height=32)
    with pytest.raises(ValueError, match="^`face_box`"):
        comfy.nodes["AsymKFaceCrop"].execute(image=comfy_image(), width=32, height=32, face_box="1,2")
    face_crop = comfy.nodes["AsymKFaceCrop"].execute(image=comfy_image(), width=32, height=32,
                                                     face_box="10,10,30,30")[1]
    with pytest.raises(TypeError, match="^`face_crop`"):
        comfy.nodes["AsymKPasteBack"].execute(face_crop=comfy_image(), images=comfy_image(32, 32))
    with pytest.raises(ValueError, match="^`frame`"):
        comfy.nodes["AsymKPasteBack"].execute(face_crop=face_crop, images=comfy_image(32, 64))


def test_model_management_can_unload(comfy, loaded):
    loaded.ready()
    assert comfy.mm.current_loaded_models == [loaded.patcher]
    comfy.mm.unload_all_models()
    assert comfy.mm.current_loaded_models == []
    assert loaded.ready() is loaded.pipe  # loads again on the next use


def test_wrong_types_get_clear_errors(comfy, loaded, speech):
    from asymk_talker.asymk_core.errors import InputError

    nodes = comfy.nodes
    with pytest.raises(TypeError, match="pipeline") as error:
        nodes["AsymKReferenceEncode"].execute(pipeline="not a pipeline", image=comfy_image(), width=32, height=32)
    assert isinstance(error.value, InputError)
    with pytest.raises(TypeError, match="image"):
        nodes["AsymKReferenceEncode"].execute(pipeline=loaded, image=np.zeros((32, 32, 3)), width=32, height=32)
    with pytest.raises(ValueError, match="width"):
        nodes["AsymKReferenceEncode"].execute(pipeline=loaded, image=comfy_image(), width=36, height=32)
    with pytest.raises(TypeError, match="audio"):
        nodes["AsymKAudioEncode"].execute(pipeline=loaded, audio=torch.zeros(1, 1, 100), fps=25.0)
    with pytest.raises(TypeError, match="audio"):
        nodes["AsymKAudioEncode"].execute(pipeline=loaded, audio={"waveform": torch.zeros(100), "sample_rate": 16000})
    with pytest.raises(TypeError, match="reference"):
        nodes["AsymKChunkLoopSampler"].execute(pipeline=loaded, reference=comfy_image(), audio_features=None)
    with pytest.raises(ValueError, match="latent"):
        nodes["AsymKDecode"].execute(pipeline=loaded, latent={"samples": torch.zeros(1, 4, 3, 8, 8)})
    with pytest.raises(TypeError, match="latent"):
        nodes["AsymKDecode"].execute(pipeline=loaded, latent=torch.zeros(1))


# ------------------------------------------------------------------------ optional dependencies
def test_missing_optional_dependency_disables_only_what_needs_it(comfy, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # "import av" now raises ImportError
    nodes = {cls.GET_SCHEMA().node_id for cls in comfy.extension.node_list()}
    assert nodes == OUR_NODES - {"AsymKRenderVideo"}
    assert "av" in comfy.extension.disabled["AsymKRenderVideo"]


def test_missing_core_dependency_does_not_break_start_up(comfy, monkeypatch):
    import asymk_talker

    monkeypatch.setitem(sys.modules, "diffusers", None)
    _drop_node_modules()
    extension = asyncio.run(asymk_talker.comfy_entrypoint())  # must not raise
    assert asyncio.run(extension.get_node_list()) == []
    disabled = sys.modules["asymk_talker.nodes.extension"].disabled
    assert set(disabled) == OUR_NODES and all("diffusers" in why for why in disabled.values())


def test_package_import_never_imports_comfy():
    import subprocess

    code = ("import sys, asymk_talker, asymk_talker.nodes; from asymk_talker import AsymKPipeline; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_runs_from_a_clone_of_any_name_without_install(tmp_path):
    # ComfyUI users install only requirements.txt, so there is no `asymk-talker` command: the docs
    # tell them to run the folder itself, e.g. `python custom_nodes/ComfyUI-AsymK init ...`
    import subprocess

    clone = tmp_path / "ComfyUI-AsymK"
    clone.symlink_to(ROOT, target_is_directory=True)
    output = tmp_path / "models" / "asymk" / "tiny"
    result = subprocess.run([sys.executable, str(clone), "init", "--preset", "tiny", "--output", str(output)],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (output / "model_index.json").is_file()


# Loads the pack the way ComfyUI's load_custom_node does (the module is named by the folder's path,
# dots replaced), raises one of its errors from a node, and formats the type as ComfyUI's
# execution.full_type_name does for the error it shows on the node.
COMFY_STYLE_IMPORT = """
import importlib, importlib.util, os, sys
root = sys.argv[1]
name = root.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"),
                                              submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
errors = importlib.import_module(name + ".asymk_core.errors")
try:
    raise errors.input_error("pipeline", "expected an ASYMK_PIPELINE", "connect AsymK Load Model")
except Exception as ex:
    module_name = ex.__class__.__module__
    shown = ex.__class__.__qualname__ if module_name == "builtins" else module_name + "." + ex.__class__.__qualname__
    print(shown)
"""


def test_error_types_show_a_readable_name_in_comfyui(tmp_path):
    import pickle
    import subprocess

    from asymk_talker.asymk_core.errors import InvalidInputValue, input_error

    clone = tmp_path / "custom_nodes" / "asymk-talker"
    clone.parent.mkdir()
    clone.symlink_to(ROOT, target_is_directory=True)
    result = subprocess.run([sys.executable, "-c", COMFY_STYLE_IMPORT, str(clone)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "asymk_talker.InvalidInputValue"
    error = pickle.loads(pickle.dumps(input_error("audio", "is silent", "pass speech")))
    assert type(error) is InvalidInputValue and isinstance(error, ValueError) and "`audio`" in str(error)


BROKEN_TORCHAUDIO_SESSION = """
import asyncio, sys
fake_site, tests_dir, comfy_base, model_dir = sys.argv[1:5]
sys.path.insert(0, fake_site)
sys.path.insert(0, tests_dir)
import test_comfy_fake
test_comfy_fake.install(comfy_base)
import asymk_talker
extension = asyncio.run(asymk_talker.comfy_entrypoint())
nodes = {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}
print("nodes", sorted(nodes))
import os, torch
import folder_paths
target = os.path.join(folder_paths.models_dir, "asymk")
os.makedirs(target, exist_ok=True)
os.symlink(model_dir, os.path.join(target, "tiny"))
with torch.inference_mode():
    output = nodes["AsymKLoadModel"].execute(model="tiny")
    pipe = output.args[0]
print("loaded", type(output.args[0]).__name__)
"""


def test_broken_torchaudio_keeps_the_pack_working(tmp_path, tiny_model_dir):
    """A torchaudio whose import raises OSError (a build for another torch) is installed: the pack
    starts, logs what is wrong, and AsymK Load Model still loads a model."""
    import subprocess

    site = tmp_path / "site"
    (site / "torchaudio").mkdir(parents=True)
    (site / "torchaudio" / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')\n")
    result = subprocess.run([sys.executable, "-c", BROKEN_TORCHAUDIO_SESSION, str(site), str(ROOT / "tests"),
                             str(tmp_path / "ComfyUI"), str(tiny_model_dir)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nodes " + str(sorted(OUR_NODES)) in result.stdout
    assert "loaded" in result.stdout
    assert "AsymK-Talker: the installed torchaudio does not import (OSError: libtorchaudio.so" in result.stderr


TITLE_HEIGHT = 30  # LiteGraph draws a node's title bar above its `pos`


@pytest.mark.parametrize("name", ["asymk_talking_head.json", "asymk_long_form.json", "asymk_photo.json"])
def test_template_opens_with_every_node_on_screen(name):
    """With the saved view (screen = (canvas + offset) * scale), every node, title bar included, is
    inside a 1680 x 900 canvas area (a 1080p window minus ComfyUI's menus)."""
    workflow = json.loads((WORKFLOWS / name).read_text())
    view = workflow["extra"]["ds"]
    scale, (dx, dy) = view["scale"], view["offset"]
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        left, top = (x + dx) * scale, (y - TITLE_HEIGHT + dy) * scale
        right, bottom = (x + w + dx) * scale, (y + h + dy) * scale
        assert left >= 0 and top >= 0 and right <= 1680 and bottom <= 900, (node["type"], left, top, right, bottom)


@pytest.mark.parametrize("name", ["asymk_talking_head", "asymk_long_form", "asymk_photo"])
def test_template_thumbnail_is_a_real_jpeg(name):
    from PIL import Image

    path = WORKFLOWS / f"{name}.jpg"  # what ComfyUI's template gallery requests next to the .json
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size[0] >= 128 and image.size == image.size[::-1]
        pixels = np.asarray(image.convert("RGB"), np.float32)
    assert pixels.std() > 10  # a picture, not a flat placeholder


def test_talking_head_thumbnail_is_a_frame_of_the_shipped_models_output():
    """Rendering the documented frame again with the shipped default model gives the thumbnail
    (up to JPEG and resize rounding)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_template_thumbnails as thumbnails
    finally:
        sys.path.remove(str(ROOT / "tools"))
    from PIL import Image

    seconds, index = thumbnails.THUMBNAILS["asymk_talking_head"]
    frames = thumbnails.render_frames(seconds)
    expected = np.asarray(thumbnails.thumbnail(frames[index]), np.float32)
    shipped = np.asarray(Image.open(WORKFLOWS / "asymk_talking_head.jpg").convert("RGB"), np.float32)
    other = np.asarray(thumbnails.thumbnail(frames[0]), np.float32)
    assert np.abs(shipped - expected).mean() < 3.0, np.abs(shipped - expected).mean()
    assert np.abs(shipped - expected).mean() < np.abs(other - expected).mean()  # that frame, not any frame


def test_converted_flashhead_model_renders_in_comfyui(comfy, models_dir, speech, tmp_path):
    """A converted SoulX-FlashHead folder (tiny random weights): Render Video works, and so does the
    sampler + Decode path: its LATENT carries the re-encoded kernels, and Decode gives exactly the
    frames of a decoding render (window by window, colour-corrected)."""
    from flashhead_reference import (flashhead_state_dict, original_wan_vae, save_flashhead_folder, tiny_config,
                                     tiny_wav2vec2)

    from asymk_talker.asymk_core.video_io import probe_video
    from asymk_talker.pipelines.convert_flashhead import convert_flashhead

    config = tiny_config()
    folder = save_flashhead_folder(tmp_path / "Model_Pro", config, flashhead_state_dict(config))
    vae, _ = original_wan_vae(tmp_path)
    convert_flashhead(folder, vae, tiny_wav2vec2(tmp_path / "wav2vec2"), models_dir / "flashhead", audio_layers=2,
                      audio_dim=8)
    loaded = run_node(comfy.nodes["AsymKLoadModel"], model="flashhead", dtype="fp32", attention="sdpa")[0]
    reference = run_node(comfy.nodes["AsymKReferenceEncode"], pipeline=loaded, image=comfy_image(), width=32,
                         height=32)[0]
    features = run_node(comfy.nodes["AsymKAudioEncode"], pipeline=loaded, audio=comfy_audio(speech, 1.48),
                        fps=25.0)[0]
    output = run_node(comfy.nodes["AsymKRenderVideo"], pipeline=loaded, reference=reference, audio_features=features,
                      filename_prefix="video/flashhead")
    saved = output.ui.as_dict()["images"][0]
    info = probe_video(Path(comfy.folder_paths.get_output_directory()) / "video" / saved["filename"])
    assert info["num_frames"] == 37 and (info["width"], info["height"]) == (32, 32)

    latent = run_node(comfy.nodes["AsymKChunkLoopSampler"], pipeline=loaded, reference=reference,
                      audio_features=features, seed=5)[0]
    assert latent["asymk_kernel_source"] == "decoded" and latent["asymk_colour_correction"] == 1.0
    assert latent["asymk_kernels"].shape[2] == 2  # chunk 1's kernel: 2 re-encoded latent frames
    images, fps = run_node(comfy.nodes["AsymKDecode"], pipeline=loaded, latent=latent).args
    assert images.shape == (37, 32, 32, 3) and fps == 25.0

    from asymk_talker.nodes.common import prepare_session
    session = prepare_session(loaded, reference, features, 5, 0, 0, 0, 0.0, "auto")
    rendered = torch.cat([chunk.frames[0] for chunk in session.chunks(decode=True)], dim=0)
    torch.testing.assert_close(images, rendered, rtol=0, atol=1e-6)
    stale = dict(latent, asymk_kernels=latent["asymk_kernels"][:, :, :1])
    with pytest.raises(ValueError, match="kernels"):
        run_node(comfy.nodes["AsymKDecode"], pipeline=loaded, latent=stale)
