"""The live server's protocol, spoken by a real WebSocket client (aiohttp) to a real server."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import WSMsgType  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from asymk_talker import AsymKPipeline  # noqa: E402
from asymk_talker.cli.serve import check_host  # noqa: E402
from asymk_talker.server.app import LiveServer, ServerLimits  # noqa: E402
from asymk_talker.server.protocol import IMAGE, pack_audio, unpack_frame  # noqa: E402


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def serve(pipe, coroutine, **limits):
    """Run ``coroutine(client)`` against a fresh server on a free local port."""
    async def main():
        server = LiveServer(pipe, ServerLimits(**{"start_timeout": 10.0, **limits}))
        async with TestClient(TestServer(server.app())) as client:
            return await coroutine(client)
    return asyncio.run(main())


async def receive_json(ws, wanted: str, limit: int = 400):
    for _ in range(limit):
        message = await ws.receive(timeout=30)
        if message.type == WSMsgType.TEXT and json.loads(message.data)["type"] == wanted:
            return json.loads(message.data)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED):
            raise AssertionError(f"socket closed before {wanted!r}")
    raise AssertionError(f"no {wanted!r} message")


async def receive_frames(ws, count: int) -> list[dict]:
    frames = []
    while len(frames) < count:
        message = await ws.receive(timeout=30)
        if message.type == WSMsgType.BINARY:
            frames.append(unpack_frame(message.data))
        assert message.type in (WSMsgType.BINARY, WSMsgType.TEXT), message
    return frames


def test_page_and_portraits_are_served_and_names_never_reach_files(tiny_pipe):
    async def check(client):
        page = await client.get("/")
        assert page.status == 200 and "<canvas" in await page.text()
        listing = await (await client.get("/api/portraits")).json()
        assert "example" in listing["portraits"] and "cartoon" in listing["portraits"]
        png = await client.get("/api/portraits/cartoon")
        assert Image.open(io.BytesIO(await png.read())).size == (32, 32)
        for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "page.html"):
            assert (await client.get(f"/api/portraits/{name}")).status == 404
    serve(tiny_pipe, check)


def test_a_session_speaks_idles_interrupts_and_ends(tiny_pipe, speech):
    async def check(client):
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "portrait": "example"})
        ready = await receive_json(ws, "ready")
        assert ready["fps"] == 25 and ready["sample_rate"] == 16000 and ready["frame_width"] == 32
        idle = await receive_frames(ws, 6)
        assert not any(frame["speaking"] for frame in idle) and all(frame["latency_ms"] == -1 for frame in idle)
        assert [frame["index"] for frame in idle] == list(range(6))
        audio = speech(1.0, sample_rate=48000)
        for start in range(0, audio.size, 960):  # 20 ms blocks at 48 kHz, as the page sends them
            await ws.send_bytes(pack_audio(audio[start:start + 960], 48000))
        frames = await receive_frames(ws, 60)
        speaking = [frame for frame in frames if frame["speaking"]]
        assert speaking and all(frame["latency_ms"] > 0 for frame in speaking)
        assert all(frame["audio"].size == 640 for frame in frames)  # 16 kHz / 25 fps
        assert any(np.abs(frame["audio"]).max() > 1000 for frame in speaking)
        jpeg = Image.open(io.BytesIO(frames[0]["jpeg"]))
        assert jpeg.format == "JPEG" and jpeg.size == (32, 32)
        await ws.send_bytes(pack_audio(speech(3.0), 16000))
        await ws.send_json({"type": "interrupt"})
        after = await receive_frames(ws, 40)
        assert not any(frame["speaking"] for frame in after[24:])  # idle again within two chunks
        await ws.send_json({"type": "end"})
        await receive_json(ws, "ended")
        indices = [frame["index"] for frame in idle + frames + after]
        assert indices == list(range(len(indices)))
        await ws.close()
    serve(tiny_pipe, check)


@pytest.mark.parametrize("messages, expected", [
    ([{"type": "hello"}], "first message must be"),
    ([{"type": "start", "portrait": "../../etc/passwd"}], "unknown portrait"),
    ([{"type": "start", "portrait": "upload"}, bytes([IMAGE]) + b"not an image"], "not an image"),
    ([{"type": "start", "portrait": "upload"}, bytes([IMAGE]) + b"\x89PNG" + b"0" * 3000], "3.0 kB, over the 2.0 kB limit"),
])
def test_bad_start_gets_a_clear_message(tiny_pipe, messages, expected):
    async def check(client):
        ws = await client.ws_connect("/ws")
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_json(message)
        error = await receive_json(ws, "error")
        assert __import__("re").search(expected, error["message"]), error
    serve(tiny_pipe, check, max_upload_bytes=2000)


def test_bad_audio_messages_get_errors_and_the_session_goes_on(tiny_pipe, speech):
    async def check(client):
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "portrait": "cartoon"})
        await receive_json(ws, "ready")
        bad = [bytes([0x01]) + (7).to_bytes(4, "little") + b"\0\0", bytes([0x01]) + (16000).to_bytes(4, "little") + b"\0",
               b"\x09garbage", pack_audio(speech(2.5), 16000)]
        for message in bad:
            await ws.send_bytes(message)
        await ws.send_str("{not json")
        await ws.send_json({"type": "dance"})
        messages = [(await receive_json(ws, "error"))["message"] for _ in range(6)]
        assert any("sample rate" in m for m in messages) and any("odd byte" in m for m in messages)
        assert any("at most 2 s" in m for m in messages) and any("JSON" in m for m in messages)
        assert any("unknown message type" in m for m in messages)
        await ws.send_bytes(pack_audio(speech(0.5), 16000))  # still alive
        frames = await receive_frames(ws, 50)
        assert any(frame["speaking"] for frame in frames)
        await ws.close()
    serve(tiny_pipe, check, max_audio_seconds=2.0)


def test_sessions_are_bounded_and_freed_on_disconnect(tiny_pipe):
    async def check(client):
        first = await client.ws_connect("/ws")
        await first.send_json({"type": "start", "portrait": "example"})
        await receive_json(first, "ready")
        second = await client.ws_connect("/ws")
        busy = await receive_json(second, "busy")
        assert "busy" in busy["message"]
        await first.close()
        for _ in range(50):  # the first session is cleaned up on disconnect
            third = await client.ws_connect("/ws")
            await third.send_json({"type": "start", "portrait": "example"})
            message = json.loads((await third.receive(timeout=30)).data)
            if message["type"] == "ready":
                break
            await asyncio.sleep(0.2)
        assert message["type"] == "ready"
        await third.close()
    serve(tiny_pipe, check, max_sessions=1)


def test_a_silent_client_is_dropped_after_the_idle_timeout(tiny_pipe):
    async def check(client):
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "portrait": "example"})
        await receive_json(ws, "ready")
        error = await receive_json(ws, "error", limit=2000)
        assert "without a message" in error["message"]
    serve(tiny_pipe, check, idle_timeout=1.5)


@pytest.mark.parametrize("host, allowed", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                           ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_only_loopback_without_allow_remote(host, allowed):
    if allowed:
        check_host(host, allow_remote=False)
    else:
        with pytest.raises(ValueError, match="--allow-remote"):
            check_host(host, allow_remote=False)
        check_host(host, allow_remote=True)
