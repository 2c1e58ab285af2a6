#!/usr/bin/env python
"""End-to-end check of the AsymK node pack in a real ComfyUI checkout (not part of the pytest suite).

    python tools/comfyui_smoke.py --comfyui /path/to/ComfyUI [--python /path/to/comfy/python]

What it does, on CPU, with a tiny random-weight model:

1. checks that this repository is in ``ComfyUI/custom_nodes/`` (``--link NAME`` adds a symlink), makes
   ``models/asymk/asymk-smoke-tiny`` (the ``tiny`` preset) unless ``--model`` names an installed one, and
   copies the example portrait and speech into ``ComfyUI/input/`` as ``asymk_portrait.png`` /
   ``asymk_speech.wav``, and the photo (``--photo``, default the example portrait, in which OpenCV's
   Haar cascade finds the face) as ``asymk_photo.png`` (the names the shipped workflows use);
2. starts ComfyUI (``main.py --cpu --listen 127.0.0.1 --port PORT``; or uses ``--url`` of a running
   one), checks the start-up log (the pack imported, no node disabled) and ``/object_info`` (every
   AsymK node, Face Crop and Paste Back included, and no other in the category; their output types;
   the model in the loader's list);
3. checks that ComfyUI offers the UI workflows under Templates (every ``workflows/*.json``), then
   queues each workflow of ``workflows/`` and ``workflows/api/`` through ``POST /prompt`` (UI-format
   files are converted to the API format with ``/object_info``; the converted UI graph must equal the
   shipped API file), follows the websocket messages, and checks each mp4 written:
   ``round(duration x fps)`` frames and an audio stream as long as the video (within one AAC frame);
   a workflow with AsymK Face Crop must give a video of the photo's size (odd sides one pixel more):
   the photo workflow, and the long-form one with a Face Crop wired into Render Video's ``face_crop``
   (``asymk_long_form_face_crop``: the paste-back while streaming);
4. cancels a long streaming render (``POST /interrupt``) after its first progress message and checks
   that the run ends as interrupted and leaves no file behind.

Exit status 0 when every check passed. The server it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
EXAMPLES = ROOT / "assets" / "examples"
SMOKE_MODEL = "asymk-smoke-tiny"
OUTPUT_PREFIX = "asymk_smoke"
NODE_OUTPUTS = {
    "AsymKLoadModel": ["ASYMK_PIPELINE"],
    "AsymKReferenceEncode": ["ASYMK_REFERENCE"],
    "AsymKAudioEncode": ["ASYMK_AUDIO", "INT", "FLOAT"],
    "AsymKChunkLoopSampler": ["LATENT"],
    "AsymKDecode": ["IMAGE", "FLOAT"],
    "AsymKRenderVideo": ["VIDEO"],
    "AsymKFaceCrop": ["IMAGE", "ASYMK_FACE_CROP"],
    "AsymKPasteBack": ["IMAGE"],
}
CATEGORY = "AsymK-Talker"
IMAGES = {"AsymKFaceCrop": "asymk_photo.png"}  # a workflow with this node loads this image
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
AAC_FRAME = 1024  # samples per AAC frame: the audio may end up to one frame after the video


class CheckFailed(Exception):
    pass


class Report:
    def __init__(self):
        self.failures: list[str] = []

    def ok(self, message: str) -> None:
        print(f"  ok    {message}", flush=True)

    def fail(self, message: str) -> None:
        print(f"  FAIL  {message}", flush=True)
        self.failures.append(message)

    def check(self, condition: bool, message: str) -> bool:
        (self.ok if condition else self.fail)(message)
        return bool(condition)


# ----------------------------------------------------------------------------------- HTTP + ws
class Client:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.load(response)

    def post(self, path: str, body: dict):
        request = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data = response.read()
                return json.loads(data) if data else {}
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise CheckFailed(f"POST {path} -> HTTP {error.code}: {text[:2000]}") from None

    def wait_until_up(self, timeout: float, server: subprocess.Popen | None) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if server is not None and server.poll() is not None:
                raise CheckFailed(f"ComfyUI exited during start-up (exit status {server.returncode})")
            try:
                self.get("/system_stats")
                return
            except (OSError, ValueError):
                time.sleep(1.0)
        raise CheckFailed(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s")


class WebSocket:
    """A minimal websocket reader (RFC 6455, text frames) for ComfyUI's ``/ws`` messages."""

    def __init__(self, url: str, client_id: str):
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        if b" 101 " not in status:
            raise CheckFailed(f"websocket upgrade refused: {status!r}")
        while self.stream.readline() not in (b"\r\n", b""):
            pass
        self.sock.settimeout(None)
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        if data is None or len(data) < n:
            raise EOFError
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _read(self) -> None:
        pieces: list[bytes] = []
        kind = 0
        try:
            while True:
                first, second = self._exact(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._exact(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._exact(8))[0]
                mask = self._exact(4) if second & 0x80 else None
                payload = self._exact(length)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                opcode = first & 0x0F
                if opcode == 0x8:  # close
                    return
                if opcode == 0x9:  # ping
                    self._send(0xA, payload[:125])
                    continue
                if opcode in (0x1, 0x2):  # a new text / binary message; 0x0 continues one
                    kind, pieces = opcode, []
                pieces.append(payload)
                if first & 0x80 and kind == 0x1:  # binary messages (previews) are ignored
                    with self.lock:
                        self.messages.append(json.loads(b"".join(pieces)))
        except (EOFError, OSError, ValueError):
            return

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------- workflow format
def _is_widget(spec) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """A UI-format workflow (what the front end saves) -> the API format ``POST /prompt`` takes.

    Linked inputs come from ``links``; widget values are matched, in order, to the node's widget
    inputs as ``/object_info`` lists them (plus the front end's extra "control after generate"
    value after a seed). Trailing UI-only values (upload buttons, previews) are ignored.
    """
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4):  # muted / bypassed
            raise CheckFailed(f"node {node['id']} ({node['type']}) is muted or bypassed")
        info = object_info.get(node["type"])
        if info is None:
            raise CheckFailed(f"node type {node['type']!r} is not known to this ComfyUI")
        inputs: dict = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, source, source_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(source), source_slot]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order", {})
        names = order.get("required", list(info["input"].get("required", {}))) + \
            order.get("optional", list(info["input"].get("optional", {})))
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            raise CheckFailed(f"node {node['id']}: dict widgets_values are not supported here")
        for name in names:
            spec = specs[name]
            if not _is_widget(spec):
                continue
            if not values:
                break
            value = values.pop(0)
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            control = options.get("control_after_generate")
            if control is None:  # as the front end: an INT named seed gets the control by default
                control = spec[0] == "INT" and name in ("seed", "noise_seed")
            if control and values:
                values.pop(0)
            inputs.setdefault(name, value)  # a linked widget input keeps its link
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def load_prompt(path: Path, object_info: dict) -> tuple[dict, bool]:
    data = json.loads(path.read_text())
    if "nodes" in data and "links" in data:
        return ui_to_api(data, object_info), True
    return {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in data.items()}, False


def prepare(prompt: dict, model: str, name: str, audio: str = "asymk_speech.wav") -> dict:
    prompt = json.loads(json.dumps(prompt))
    kinds = {node["class_type"] for node in prompt.values()}
    image = next((IMAGES[kind] for kind in IMAGES if kind in kinds), "asymk_portrait.png")
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "AsymKLoadModel":
            inputs["model"] = model
        elif kind == "LoadImage":
            inputs["image"] = image
        elif kind == "LoadAudio":
            inputs["audio"] = audio
        elif kind in ("SaveVideo", "AsymKRenderVideo"):
            inputs["filename_prefix"] = f"{OUTPUT_PREFIX}/{name}"
    return prompt


def with_face_crop(prompt: dict) -> dict:
    """The long-form prompt with an AsymK Face Crop between its Load Image and Reference Encode, and
    the crop's ``face_crop`` into AsymK Render Video (which then pastes each frame into the photo)."""
    prompt = json.loads(json.dumps(prompt))
    encode = next(k for k, v in prompt.items() if v["class_type"] == "AsymKReferenceEncode")
    render = next(k for k, v in prompt.items() if v["class_type"] == "AsymKRenderVideo")
    inputs = prompt[encode]["inputs"]
    crop = str(max(int(k) for k in prompt) + 1)
    prompt[crop] = {"class_type": "AsymKFaceCrop",
                    "inputs": {"image": inputs["image"], "width": inputs["width"], "height": inputs["height"],
                               "padding": 1.8, "face_box": "auto"}}
    inputs["image"] = [crop, 0]
    prompt[render]["inputs"]["face_crop"] = [crop, 1]
    return prompt


# --------------------------------------------------------------------------------------- media
def audio_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


def probe(path: Path) -> dict:
    """Frames counted by decoding, the stream's frame rate, and the decoded audio length."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        fps = float(video.average_rate or video.guessed_rate)
        width, height = video.codec_context.width, video.codec_context.height
        frames = sum(1 for _ in container.decode(video))
    result = dict(frames=frames, fps=fps, width=width, height=height, audio_s=None, audio_rate=None)
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            result.update(audio_s=samples / stream.rate, audio_rate=stream.rate)
    return result


def write_long_speech(source: Path, target: Path, seconds: float) -> None:
    """The example speech repeated to ``seconds`` (a long render to cancel)."""
    with wave.open(str(source), "rb") as wav:
        params, frames = wav.getparams(), wav.readframes(wav.getnframes())
    want = int(seconds * params.framerate) * params.sampwidth * params.nchannels
    data = (frames * (want // len(frames) + 1))[:want]
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(data)


# ----------------------------------------------------------------------------------- set-up
def import_package():
    """``asymk_talker`` (installed, or this folder imported under that name)."""
    try:
        import asymk_talker
    except ImportError:
        spec = importlib.util.spec_from_file_location("asymk_talker", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        asymk_talker = importlib.util.module_from_spec(spec)
        sys.modules["asymk_talker"] = asymk_talker
        spec.loader.exec_module(asymk_talker)
    return asymk_talker


def pack_folder(custom_nodes: Path, link: str | None) -> Path:
    for entry in sorted(custom_nodes.iterdir()):
        if entry.is_dir() and entry.resolve() == ROOT:
            return entry
    if link is None:
        raise CheckFailed(f"this repository is not in {custom_nodes}: clone it there, or pass --link NAME "
                          "to add a symlink")
    entry = custom_nodes / link
    entry.symlink_to(ROOT, target_is_directory=True)
    return entry


def make_model(models: Path) -> None:
    folder = models / SMOKE_MODEL
    if (folder / "model_index.json").is_file():
        return
    import_package()
    pipeline_cls = importlib.import_module("asymk_talker.pipelines.pipeline_asymk").AsymKPipeline
    pipeline_cls.from_preset("tiny").save_pretrained(folder)


def start_server(args, log_path: Path) -> subprocess.Popen:
    command = [args.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(args.port),
               *args.comfy_arg]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    print(f"starting: {' '.join(command)} (log: {log_path})", flush=True)
    log = open(log_path, "w")
    return subprocess.Popen(command, cwd=args.comfyui, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ------------------------------------------------------------------------------------- checks
def check_log(report: Report, log_text: str, folder: Path) -> None:
    lines = log_text.splitlines()
    ours = [line for line in lines if line.rstrip().endswith(str(folder)) and "seconds" in line]
    report.check(bool(ours) and "IMPORT FAILED" not in ours[0],
                 f"start-up log lists the pack: {ours[0].strip() if ours else 'missing'}")
    disabled = [line for line in lines if "AsymK-Talker:" in line]
    report.check(not disabled, "no AsymK node disabled at start-up" + (f": {disabled}" if disabled else ""))


def check_object_info(report: Report, info: dict, model: str) -> None:
    ours = sorted(k for k, v in info.items() if v.get("category") == CATEGORY)
    report.check(ours == sorted(NODE_OUTPUTS), f"the {CATEGORY} category has {len(ours)} nodes: {ours}")
    for node_id, outputs in NODE_OUTPUTS.items():
        entry = info.get(node_id)
        if not report.check(entry is not None, f"/object_info lists {node_id}"):
            continue
        report.check(entry["output"] == outputs, f"{node_id} outputs {entry['output']}")
        report.check(entry["category"] == CATEGORY, f"{node_id} category {entry['category']!r}")
    loader = info.get("AsymKLoadModel")
    if loader:
        spec = loader["input"]["required"]["model"]
        options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
        report.check(model in options, f"model {model!r} is in the loader's list {options}")
    render = info.get("AsymKRenderVideo")
    if render:
        report.check(render["output_node"] is True, "AsymK Render Video is an output node")


def run_prompt(client: Client, client_id: str, prompt: dict, timeout: float) -> tuple[str, dict]:
    answer = client.post("/prompt", {"prompt": prompt, "client_id": client_id})
    if answer.get("node_errors"):
        raise CheckFailed(f"prompt rejected: {answer['node_errors']}")
    prompt_id = answer["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = client.get(f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            status = history[prompt_id]["status"]
            if status.get("status_str") in ("success", "error"):
                return prompt_id, history[prompt_id]
        time.sleep(0.5)
    raise CheckFailed(f"prompt {prompt_id} did not finish within {timeout:.0f} s")


def videos_of(entry: dict) -> list[dict]:
    found = []
    for node_id, output in entry.get("outputs", {}).items():
        for key in ("images", "videos", "gifs"):
            for item in output.get(key, []):
                if isinstance(item, dict) and str(item.get("filename", "")).endswith(".mp4"):
                    found.append({**item, "node": node_id})
    return found


def check_workflow(report: Report, client: Client, ws: WebSocket, client_id: str, output_dir: Path, name: str,
                   prompt: dict, speech_seconds: float, timeout: float, photo_size=None) -> None:
    fps = next((float(n["inputs"]["fps"]) for n in prompt.values() if n["class_type"] == "AsymKAudioEncode"), 25.0)
    started = time.time()
    prompt_id, entry = run_prompt(client, client_id, prompt, timeout)
    status = entry["status"]
    if not report.check(status.get("status_str") == "success",
                        f"{name}: ran ({status.get('status_str')}, {time.time() - started:.1f} s)"):
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                print(f"        {data.get('node_type')}: {data.get('exception_type')}: "
                      f"{data.get('exception_message')}", flush=True)
        return
    time.sleep(0.5)  # let the last websocket messages arrive
    messages = [m for m in ws.snapshot() if m.get("data", {}).get("prompt_id") == prompt_id]
    asymk_nodes = {k for k, v in prompt.items() if v["class_type"] in ("AsymKChunkLoopSampler", "AsymKRenderVideo")}
    for node_id in sorted(asymk_nodes):
        values = [(m["data"]["value"], m["data"]["max"]) for m in messages
                  if m["type"] == "progress" and str(m["data"].get("node")) == node_id]
        report.check(bool(values) and values[-1][0] == values[-1][1] and
                     all(a[0] <= b[0] for a, b in zip(values, values[1:])),
                     f"{name}: {len(values)} progress messages from node {node_id} "
                     f"({prompt[node_id]['class_type']}), last {values[-1] if values else None}")
    videos = videos_of(entry)
    if not report.check(len(videos) == 1, f"{name}: one mp4 in the history outputs ({videos})"):
        return
    video = videos[0]
    path = output_dir / video["subfolder"] / video["filename"]
    if not report.check(path.is_file(), f"{name}: {path} exists"):
        return
    info = probe(path)
    expected = round(speech_seconds * fps)
    report.check(info["frames"] == expected and abs(info["fps"] - fps) < 1e-3,
                 f"{name}: {info['frames']} frames at {info['fps']:g} fps (expected round({speech_seconds:g} s x "
                 f"{fps:g}) = {expected}), {info['width']}x{info['height']}")
    if photo_size is not None and any(n["class_type"] == "AsymKFaceCrop" for n in prompt.values()):
        want = tuple(side + side % 2 for side in photo_size)
        report.check((info["width"], info["height"]) == want,
                     f"{name}: the video has the photo's size {want[0]}x{want[1]} (photo "
                     f"{photo_size[0]}x{photo_size[1]})")
    if info["audio_s"] is None:
        report.fail(f"{name}: the mp4 has no audio stream")
        return
    video_s = info["frames"] / info["fps"]
    tolerance = AAC_FRAME / info["audio_rate"] + 0.5 / fps
    report.check(abs(info["audio_s"] - video_s) <= tolerance,
                 f"{name}: audio {info['audio_s']:.3f} s at {info['audio_rate']} Hz vs video {video_s:.3f} s "
                 f"(tolerance {tolerance:.3f} s)")


def check_cancel(report: Report, client: Client, ws: WebSocket, client_id: str, output_dir: Path, prompt: dict,
                 timeout: float) -> None:
    name = "cancel"
    render = next((k for k, v in prompt.items() if v["class_type"] == "AsymKRenderVideo"), None)
    if render is None:
        report.fail("cancel: no AsymK Render Video node in the long-form workflow")
        return
    prompt[render]["inputs"]["steps"] = 8  # a render of several seconds at least
    answer = client.post("/prompt", {"prompt": prompt, "client_id": client_id})
    prompt_id = answer["prompt_id"]
    deadline = time.time() + timeout
    seen = False
    while time.time() < deadline and not seen:
        seen = any(m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id and
                   str(m["data"].get("node")) == render for m in ws.snapshot())
        time.sleep(0.05)
    if not report.check(seen, "cancel: the render reported progress before the interrupt"):
        return
    client.post("/interrupt", {})
    entry = None
    while time.time() < deadline:
        history = client.get(f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("status_str") in ("success", "error"):
            entry = history[prompt_id]
            break
        time.sleep(0.3)
    if not report.check(entry is not None, "cancel: the prompt ended after POST /interrupt"):
        return
    kinds = [kind for kind, _ in entry["status"].get("messages", [])]
    report.check("execution_interrupted" in kinds, f"cancel: ended as interrupted ({kinds[-1] if kinds else None})")
    leftovers = [p for p in (output_dir / OUTPUT_PREFIX).glob(f"{name}*")]
    report.check(not leftovers, f"cancel: no file left behind ({[p.name for p in leftovers]})")


# ---------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", required=True, type=Path, help="the ComfyUI checkout (with main.py)")
    parser.add_argument("--python", default=sys.executable, help="ComfyUI's Python (default: this one)")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--url", help="use a ComfyUI that is already running at this address instead of "
                                      "starting one (its start-up log is then not checked)")
    parser.add_argument("--model", help=f"an installed model name (default: make models/asymk/{SMOKE_MODEL})")
    parser.add_argument("--link", metavar="NAME", help="symlink this repository as custom_nodes/NAME if absent")
    parser.add_argument("--comfy-arg", action="append", default=[], help="an extra main.py argument (repeatable)")
    parser.add_argument("--speech", type=Path, default=EXAMPLES / "speech.wav",
                        help="the speech to use (any length, rate and channel count; default: the example)")
    parser.add_argument("--photo", type=Path, default=EXAMPLES / "portrait.png",
                        help="the photo for the photo workflow, with a frontal face (default: the example portrait)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per workflow")
    args = parser.parse_args(argv)

    comfyui = args.comfyui.resolve()
    args.comfyui = comfyui
    if not (comfyui / "main.py").is_file():
        parser.error(f"{comfyui} has no main.py")
    report = Report()
    server = None
    ws = None
    try:
        print("set-up", flush=True)
        folder = pack_folder(comfyui / "custom_nodes", args.link)
        report.ok(f"pack folder {folder}")
        model = args.model or SMOKE_MODEL
        if args.model is None:
            make_model(comfyui / "models" / "asymk")
            report.ok(f"model folder models/asymk/{SMOKE_MODEL}")
        inputs, output_dir = comfyui / "input", comfyui / "output"
        inputs.mkdir(exist_ok=True)
        shutil.copyfile(EXAMPLES / "portrait.png", inputs / "asymk_portrait.png")
        from PIL import Image

        with Image.open(args.photo) as photo:  # as a PNG, whatever the photo's format
            photo_size = photo.size
            photo.convert("RGB").save(inputs / "asymk_photo.png")
        speech = f"asymk_speech{args.speech.suffix.lower()}"
        shutil.copyfile(args.speech, inputs / speech)
        write_long_speech(EXAMPLES / "speech.wav", inputs / "asymk_smoke_long.wav", 60.0)
        speech_seconds = audio_seconds(inputs / speech)

        print("start-up", flush=True)
        url = args.url or f"http://127.0.0.1:{args.port}"
        client = Client(url)
        log_path = comfyui / "user" / "asymk_smoke.log"
        if args.url is None:
            log_path.parent.mkdir(exist_ok=True)
            server = start_server(args, log_path)
        client.wait_until_up(300.0, server)
        report.ok(f"ComfyUI answers on {url} ({client.get('/system_stats')['system'].get('comfyui_version')})")
        if server is not None:
            time.sleep(1.0)
            check_log(report, log_path.read_text(errors="replace"), folder)
        object_info = client.get("/object_info")
        check_object_info(report, object_info, model)

        print("workflows", flush=True)
        client_id = uuid.uuid4().hex
        ws = WebSocket(url, client_id)
        prompts = {}
        templates = client.get("/api/workflow_templates").get(folder.name, [])
        ui_files = sorted(path.stem for path in WORKFLOWS.glob("*.json"))
        report.check(sorted(templates) == ui_files,
                     f"Templates > Extensions > {folder.name} offers {sorted(templates)}")
        for path in sorted([*WORKFLOWS.glob("*.json"), *WORKFLOWS.glob("api/*.json")]):
            prompt, from_ui = load_prompt(path, object_info)
            prompts[path.stem] = prompt
            if path.parent == WORKFLOWS and not from_ui:  # the front end would open an empty canvas
                report.fail(f"{path.name} is in API format but ComfyUI offers it as a template")
            report.ok(f"{path.name}: {'UI format, converted' if from_ui else 'API format'} ({len(prompt)} nodes)")
        if "asymk_long_form" in prompts:
            prompts["asymk_long_form_face_crop"] = with_face_crop(prompts["asymk_long_form"])
        if "asymk_talking_head" in prompts and "asymk_talking_head_api" in prompts:
            report.check(prompts["asymk_talking_head"] == prompts["asymk_talking_head_api"],
                         "the UI workflow converts to exactly the shipped API workflow")
        for name, prompt in prompts.items():
            # "Unload models" + "Free model and node cache": every run loads the model again and
            # recomputes every node (the shipped graphs share nodes, which ComfyUI would reuse)
            client.post("/free", {"unload_models": True, "free_memory": True})
            time.sleep(1.5)  # the queue worker applies it when it wakes, before the next prompt
            check_workflow(report, client, ws, client_id, output_dir, name, prepare(prompt, model, name, speech),
                           speech_seconds, args.timeout, photo_size)

        print("cancel", flush=True)
        long_form = prompts.get("asymk_long_form")
        if long_form is None:
            report.fail("cancel: workflows/asymk_long_form.json is missing")
        else:
            check_cancel(report, client, ws, client_id, output_dir,
                         prepare(long_form, model, "cancel", audio="asymk_smoke_long.wav"), args.timeout)
    except CheckFailed as error:
        report.fail(str(error))
    finally:
        if ws is not None:
            ws.close()
        if server is not None:
            stop_server(server)
            print(f"ComfyUI stopped (log: {log_path})", flush=True)
    print(f"{'FAILED' if report.failures else 'passed'}: {len(report.failures)} failed check(s)", flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
