"""``asymk-talker serve``: the live avatar in a browser (WebSocket server and its page).

Binds to 127.0.0.1; another address needs ``--allow-remote`` (anyone who can reach it can use the
model). See docs/live.md.
"""

from __future__ import annotations

import ipaddress

from ..asymk_core.choices import DTYPES, resolve_device_dtype
from ..asymk_core.errors import input_error


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="live avatar in the browser: microphone or audio file in, video out")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--allow-remote", action="store_true", help="allow binding to an address other machines reach")
    parser.add_argument("--max-sessions", type=int, default=2, help="live sessions at once (more get 'busy')")
    parser.add_argument("--max-upload-mb", type=float, default=8.0, help="largest portrait upload (MB)")
    parser.add_argument("--idle-timeout", type=float, default=300.0, help="drop a client silent for this many seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of every session's noise")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer before serving (about a minute; lower latency on CPU)")
    parser.set_defaults(func=run)


def check_host(host: str, allow_remote: bool) -> None:
    """Only loopback addresses without ``--allow-remote``."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise input_error("--host", f"{host} can be reached from other machines",
                          "bind to 127.0.0.1, or add --allow-remote if everyone who can reach it may use the model")


def run(args) -> int:
    try:
        from ..server.app import LiveServer, ServerLimits
    except ModuleNotFoundError as error:
        if error.name != "aiohttp":
            raise
        raise input_error("serve", "the live server needs aiohttp", 'pip install "aiohttp>=3.9" (or the [live] extra)')

    check_host(args.host, args.allow_remote)
    for flag, value, low, high in (("--port", args.port, 1, 65535), ("--max-sessions", args.max_sessions, 1, 64)):
        if not low <= value <= high:
            raise input_error(flag, f"{value} is out of range", f"pass an integer in {low}..{high}")
    for flag, value, low, high in (("--max-upload-mb", args.max_upload_mb, 0.01, 100.0),
                                   ("--idle-timeout", args.idle_timeout, 1.0, 86400.0)):
        if not low <= value <= high:
            raise input_error(flag, f"{value:g} is out of range", f"pass a number in [{low:g}, {high:g}]")
    import torch
    from aiohttp import web

    from ..asymk_core.gc_pauses import freeze_long_lived
    from ..asymk_core.openmp import release_idle_team
    from .main import load_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    pipe = load_pipeline(args.model, dtype, device)
    pipe.set_progress_bar_config(disable=True)
    if args.compile:
        print("asymk-talker serve: compiling the transformer (about a minute)...", flush=True)
        try:
            pipe.compile_transformer()
        except RuntimeError as error:
            raise input_error("--compile", str(error).removeprefix("compile: "), "drop --compile") from None
    limits = ServerLimits(max_sessions=args.max_sessions, max_upload_bytes=int(args.max_upload_mb * 1e6),
                          idle_timeout=args.idle_timeout)
    server = LiveServer(pipe, limits, seed=args.seed)
    release_idle_team()  # loading ran here; the sessions' workers generate (asymk_core.openmp)
    freeze_long_lived()  # the model's objects: no session's start pays a full collection (asymk_core.gc_pauses)
    print(f"asymk-talker serve: open http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0
