"""The live server: an aiohttp app serving the page, the built-in portraits and one WebSocket per client.

Each client gets its own :class:`asymk_core.live.LiveSession` on the shared pipeline (the model
weights are shared, every session's state is its own). A thread per session reads the paced frames,
encodes them as JPEG and hands them to the event loop, which sends them with their audio. The
number of sessions, the upload size and the audio message size are bounded; a session ends when
its client disconnects or sends nothing for ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image

from ..asymk_core.errors import InputError
from ..asymk_core.seeds import seeded_generator
from .portraits import builtin_portraits, decode_upload
from .protocol import AUDIO, IMAGE, ProtocolError, pack_frame, unpack_audio

logger = logging.getLogger("asymk_talker.server")
PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class ServerLimits:
    """``max_sessions`` at once; uploads up to ``max_upload_bytes``; audio messages up to
    ``max_audio_seconds``; a silent client is dropped after ``idle_timeout`` s; ``start_timeout``:
    seconds a new client has to send its start message."""

    max_sessions: int = 2
    max_upload_bytes: int = 8_000_000
    max_audio_seconds: float = 2.0
    idle_timeout: float = 300.0
    start_timeout: float = 30.0


class LiveServer:
    """Serves ``pipe`` live. ``app()`` is the aiohttp application; ``seed`` seeds every session."""

    def __init__(self, pipe, limits: ServerLimits = ServerLimits(), seed: int = 0, realtime: bool = True):
        self.pipe, self.limits, self.seed, self.realtime = pipe, limits, seed, realtime
        self.portraits = builtin_portraits(int(pipe.config.height))
        self.active = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_upload_bytes + 1024)
        app.add_routes([web.get("/", self.page), web.get("/api/portraits", self.portrait_list),
                        web.get("/api/portraits/{name}", self.portrait_png), web.get("/ws", self.websocket)])
        return app

    # -------------------------------------------------------------------------------- http
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def portrait_list(self, request: web.Request) -> web.Response:
        return web.json_response({"portraits": list(self.portraits), "max_upload_bytes": self.limits.max_upload_bytes})

    async def portrait_png(self, request: web.Request) -> web.Response:
        data = self.portraits.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound(text="no such portrait")
        return web.Response(body=data, content_type="image/png")

    # ---------------------------------------------------------------------------- websocket
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        # Messages up to twice the upload limit are read, so an upload over it gets a message rather
        # than a closed socket; larger ones close it with code 1009, which the page explains.
        ws = web.WebSocketResponse(max_msg_size=2 * self.limits.max_upload_bytes + 65536, heartbeat=30)
        await ws.prepare(request)
        if self.active >= self.limits.max_sessions:
            await ws.send_json({"type": "busy", "message": f"busy: {self.active} live sessions are running (the "
                                f"limit); try again when one ends"})
            await ws.close()
            return ws
        self.active += 1
        try:
            await ClientSession(self, ws).run()
        finally:
            self.active -= 1
        return ws


class ClientSession:
    """One client: its start handshake, its live session, the frame pump and the message loop."""

    def __init__(self, server: LiveServer, ws: web.WebSocketResponse):
        self.server, self.ws, self.limits = server, ws, server.limits
        self.live = None
        self.outbox: asyncio.Queue = asyncio.Queue(maxsize=256)
        self.latencies: deque[float] = deque(maxlen=500)
        self.sent, self.dropped = 0, 0

    async def error(self, message: str) -> None:
        if not self.ws.closed:
            await self.ws.send_json({"type": "error", "message": message})

    async def run(self) -> None:
        try:
            image = await self.handshake()
        except (ProtocolError, InputError, asyncio.TimeoutError) as problem:
            text = "no start message arrived in time" if isinstance(problem, asyncio.TimeoutError) else str(problem)
            await self.error(text)
            await self.ws.close()
            return
        if image is None:
            return
        loop = asyncio.get_running_loop()
        self.live = await loop.run_in_executor(None, self.open_live, image)
        live = self.live
        await self.ws.send_json({"type": "ready", "fps": live.fps, "width": image.width, "height": image.height,
                                 "frame_width": int(self.server.pipe.config.width),
                                 "frame_height": int(self.server.pipe.config.height), "sample_rate": 16000,
                                 "chunk_seconds": live.chunk_seconds, "latency_seconds": live.latency_seconds})
        pump = threading.Thread(target=self.pump, args=(loop,), name="asymk-live-pump", daemon=True)
        pump.start()
        sender = asyncio.create_task(self.send_frames())
        stats = asyncio.create_task(self.send_stats())
        try:
            await self.receive()
        finally:
            live.close()
            await loop.run_in_executor(None, pump.join, 10)
            stats.cancel()
            await self.outbox.put(None)
            await sender
            if not self.ws.closed:
                await self.ws.close()

    async def handshake(self):
        """Wait for ``start``; returns the portrait (PIL), or ``None`` if the client left."""
        message = await self.ws.receive(timeout=self.limits.start_timeout)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        start = parse_text(message)
        if start.get("type") != "start":
            raise ProtocolError('the first message must be {"type": "start", "portrait": ...}')
        name = start.get("portrait")
        if name == "upload":
            upload = await self.ws.receive(timeout=self.limits.start_timeout)
            if upload.type != WSMsgType.BINARY or not upload.data or upload.data[0] != IMAGE:
                raise ProtocolError("expected the uploaded portrait as an image message")
            return decode_upload(bytes(upload.data[1:]), self.limits.max_upload_bytes)
        if name not in self.server.portraits:
            raise ProtocolError(f"unknown portrait {name!r}: pick one of {sorted(self.server.portraits)} or upload one")
        return Image.open(io.BytesIO(self.server.portraits[name])).convert("RGB")

    def open_live(self, image):
        return self.server.pipe.live(image, generator=seeded_generator(self.server.seed), realtime=self.server.realtime)

    async def receive(self) -> None:
        while True:
            try:
                message = await self.ws.receive(timeout=self.limits.idle_timeout)
            except asyncio.TimeoutError:
                await self.error(f"closed after {self.limits.idle_timeout:g} s without a message")
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            try:
                self.handle(message)
            except (ProtocolError, InputError) as problem:
                await self.error(str(problem))
            except RuntimeError as problem:  # the session was closed under us
                await self.error(str(problem))
                return

    def handle(self, message) -> None:
        if message.type == WSMsgType.BINARY:
            data = message.data
            if not data or data[0] != AUDIO:
                raise ProtocolError("unexpected binary message: audio messages start with byte 0x01")
            samples, rate = unpack_audio(data)
            if samples.size > self.limits.max_audio_seconds * rate:
                raise ProtocolError(f"an audio message holds {samples.size / rate:.1f} s: send at most "
                                    f"{self.limits.max_audio_seconds:g} s per message")
            self.live.push(samples, rate)
            return
        command = parse_text(message).get("type")
        if command == "interrupt":
            self.live.interrupt()
        elif command == "end":
            self.live.end()
        else:
            raise ProtocolError(f"unknown message type {command!r}: use interrupt or end")

    # ---------------------------------------------------------------------------- frames out
    def pump(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: paced frames -> JPEG frame messages on the event loop's outbox."""
        def post(message, latency: float = -1.0) -> bool:
            try:
                loop.call_soon_threadsafe(self.offer, message, latency)
                return True
            except RuntimeError:  # the server shut down under this session
                self.live.close()
                return False

        try:
            for frame in self.live.frames():
                buffer = io.BytesIO()
                Image.fromarray(frame.to_uint8()).save(buffer, format="JPEG", quality=92)
                latency = -1.0 if frame.pushed_at is None else (time.monotonic() - frame.pushed_at) * 1000.0
                if not post(pack_frame(frame.index, frame.pts, frame.speaking, latency, buffer.getvalue(),
                                       frame.audio), latency):
                    return
            post(json.dumps({"type": "ended"}))
        except Exception as problem:  # shown on the page; the server keeps running
            logger.exception("live session failed")
            post(json.dumps({"type": "error", "message": f"generation failed: {problem}"}))

    def offer(self, message, latency: float) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:  # the client reads too slowly: drop rather than grow
            self.dropped += 1
            return
        if latency >= 0:
            self.latencies.append(latency)

    async def send_frames(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None or self.ws.closed:
                return
            try:
                if isinstance(message, str):
                    await self.ws.send_str(message)
                else:
                    await self.ws.send_bytes(message)
                    self.sent += 1
            except ConnectionError:
                return

    async def send_stats(self) -> None:
        while not self.ws.closed:
            await asyncio.sleep(1.0)
            latencies = np.array(self.latencies) if self.latencies else None
            stats = dict(self.live.stats)
            await self.ws.send_json({
                "type": "stats", "frames_sent": self.sent, "dropped_frames": self.dropped + stats["dropped_frames"],
                "late_frames": stats["late_frames"], "stalls": stats["stalls"],
                "latency_p50_ms": None if latencies is None else float(np.percentile(latencies, 50)),
                "latency_p95_ms": None if latencies is None else float(np.percentile(latencies, 95)),
                "chunk_seconds": stats["chunk_seconds"],
            })


def parse_text(message) -> dict:
    if message.type != WSMsgType.TEXT:
        raise ProtocolError("expected a JSON text message")
    try:
        value = json.loads(message.data)
    except ValueError:
        raise ProtocolError("a text message is not valid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("a text message must be a JSON object with a type")
    return value
