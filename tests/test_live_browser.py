"""End to end in a real headless Chromium: the page opens a live session with the fake microphone
playing a wav file, and frames arrive and are drawn (the counter grows, the canvas changes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from asymk_talker import AsymKPipeline  # noqa: E402
from asymk_talker.server.app import LiveServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_wav(path, samples: np.ndarray, rate: int = 48000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 32767).astype("<i2").tobytes())


class ServerThread:
    """The live server on its own event loop in a thread."""

    def __init__(self, pipe, port: int):
        self.port, self.loop = port, asyncio.new_event_loop()
        self.runner = web.AppRunner(LiveServer(pipe).app())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread.start()
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def devtools_page(port: int, deadline: float):
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                targets = await (await http.get(f"http://127.0.0.1:{port}/json")).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("Chromium's DevTools endpoint did not come up")


async def drive_page(debug_port: int, files: dict | None = None, start: str = "mic") -> dict:
    """Open the page, set ``files`` (input id -> path), press ``start``, wait for 25+ frames drawn."""
    deadline = time.monotonic() + 50
    url = await devtools_page(debug_port, deadline)
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as devtools:
        counter = iter(range(1, 10_000))

        async def call(method: str, **params):
            ident = next(counter)
            await devtools.send_json({"id": ident, "method": method, "params": params})
            while True:
                reply = json.loads((await devtools.receive(timeout=30)).data)
                if reply.get("id") == ident:
                    assert "error" not in reply, reply
                    return reply["result"]

        async def evaluate(expression: str):
            result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
            return result["result"].get("value")

        while await evaluate("document.querySelectorAll('#portraits button').length") in (None, 0):
            assert time.monotonic() < deadline, "the page did not load its portraits"
            await asyncio.sleep(0.2)
        errors = []
        for element, path in (files or {}).items():
            document = await call("DOM.getDocument")
            node = await call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector=f"#{element}")
            await call("DOM.setFileInputFiles", files=[str(path)], nodeId=node["nodeId"])
            await evaluate(f"document.getElementById('{element}').dispatchEvent(new Event('change'))")
            if element == "upload":  # a bad portrait: its message must reach the page
                await evaluate(f"document.getElementById('{start}').click()")
                while not (message := await evaluate("document.getElementById('error').textContent")):
                    assert time.monotonic() < deadline, "no error message for the bad upload"
                    await asyncio.sleep(0.2)
                errors.append(message)
                await evaluate("document.querySelector('#portraits button').click();"
                               "document.getElementById('upload').value = ''")
        await evaluate(f"document.getElementById('{start}').click()")
        canvas = ("(() => { const c = document.getElementById('video'); const d = c.getContext('2d')"
                  ".getImageData(0, 0, c.width, c.height).data; let h = 0; for (let i = 0; i < d.length; i++)"
                  " h = (h * 31 + d[i]) >>> 0; return h; })()")
        read = ("({shown: +document.getElementById('frames-shown').textContent,"
                " state: document.getElementById('state').textContent,"
                " latency: document.getElementById('latency').textContent,"
                " error: document.getElementById('error').textContent})")
        first = None
        while time.monotonic() < deadline:
            status = await evaluate(read)
            assert not status["error"], status
            if status["shown"] >= 10 and first is None:
                first = (status["shown"], await evaluate(canvas))
            if first and status["shown"] >= first[0] + 25 and status["latency"].endswith("ms"):
                return {"first": first, "last": (status["shown"], await evaluate(canvas)), "state": status["state"],
                        "latency": status["latency"], "errors": errors}
            await asyncio.sleep(0.25)
    raise AssertionError(f"frames did not keep arriving: {status}")


def run_browser(tmp_path, wav, pipe=None, **scenario) -> dict:
    if pipe is None:
        pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    port, debug_port = free_port(), free_port()
    with ServerThread(pipe, port):
        browser = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={debug_port}",
             f"--user-data-dir={tmp_path / 'profile'}", "--use-fake-ui-for-media-stream",
             "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
             "--autoplay-policy=no-user-gesture-required", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return asyncio.run(drive_page(debug_port, **scenario))
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()


def check_frames_were_drawn(result: dict) -> None:
    assert result["last"][0] > result["first"][0] + 20  # the frame counter grows
    assert result["last"][1] != result["first"][1]  # and the canvas shows new pixels
    assert result["latency"].endswith(" ms")  # speech came back as speaking frames, with its latency


def test_page_shows_live_frames_from_the_fake_microphone(tmp_path, speech):
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech(8.0, sample_rate=48000))
    result = run_browser(tmp_path, wav)
    check_frames_were_drawn(result)
    assert result["state"] == "live: listening to the microphone"


def test_page_reports_a_bad_portrait_then_streams_an_audio_file(tmp_path, speech):
    wav, not_an_image = tmp_path / "speech.wav", tmp_path / "portrait.png"
    write_wav(wav, speech(8.0, sample_rate=22050), rate=22050)
    not_an_image.write_text("this is not an image")
    result = run_browser(tmp_path, wav, files={"audio-file": wav, "upload": not_an_image}, start="stream-file")
    assert result["errors"] == ["`portrait`: the upload is not an image. Fix: upload a PNG, JPEG or WebP portrait."]
    check_frames_were_drawn(result)


def test_page_streams_a_converted_flashhead_folder(tmp_path, speech):
    """The page with a converted SoulX-FlashHead folder (tiny random weights in its key layout): its
    loop decodes whole windows and its wav2vec2 features follow each utterance."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from flashhead_reference import converted_tiny_folder

    model = converted_tiny_folder(tmp_path)
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech(8.0, sample_rate=48000))
    pipe = AsymKPipeline.from_pretrained(model)
    pipe.register_to_config(height=64, width=64)  # the folder's default is FlashHead's 512 x 512
    result = run_browser(tmp_path, wav, pipe=pipe)
    check_frames_were_drawn(result)
