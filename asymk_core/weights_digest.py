"""Digests of model weights, for renders that resume: every byte counts, and a file is hashed once.

A resumed render must use exactly the weights it started with. :func:`component_digest` hashes
every file of the folder a component was loaded from (sha256 over all bytes, read in blocks) and
keeps each file's hash in a small JSON cache, keyed by the file's resolved path, size, mtime,
ctime and inode, so a multi-GB model is read once and later runs only ``stat`` its files. An edit
changes the size, mtime or ctime (ctime cannot be set back by a user process, so even an edit that
restores the mtime is seen); a file modified within :data:`SETTLED_SECONDS` of being hashed is not
cached, since a change in the same timestamp tick could go unseen ("racy git").

The cache lives under huggingface_hub's folder for libraries' files
(:func:`huggingface_hub.cached_assets_path`: ``~/.cache/huggingface/assets/asymk-talker/`` by
default, moved by ``HF_HOME`` / ``HF_ASSETS_CACHE`` like the models themselves), not next to the
render state: that folder is deleted when each render completes, so every render would read the
whole model again. Without a writable cache the digest is still computed, just not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path

import torch

CACHE_FORMAT = 1
BLOCK_BYTES = 1 << 20
SETTLED_SECONDS = 2.0


def cache_file() -> Path | None:
    """The JSON cache of file digests, or ``None`` when no cache folder can be made."""
    from huggingface_hub import cached_assets_path

    try:
        return cached_assets_path("asymk-talker", namespace="weights", subfolder="sha256") / "files.json"
    except OSError:  # e.g. a read-only home of a service account
        return None


def hash_file(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB blocks (``hashlib.file_digest`` needs Python 3.11)."""
    hasher = hashlib.sha256()
    buffer = bytearray(BLOCK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
    return hasher.hexdigest()


def _file_key(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _load_cache(path: Path | None) -> dict:
    try:
        record = json.loads(path.read_text())
        return dict(record["files"]) if record.get("format") == CACHE_FORMAT else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # none yet, or unreadable: start afresh
        return {}


def _save_cache(path: Path, files: dict) -> None:
    """Write the cache atomically, dropping entries of files that are gone; a failure only loses the cache."""
    kept = {name: entry for name, entry in files.items() if os.path.exists(name)}
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_text(json.dumps({"format": CACHE_FORMAT, "files": kept}))
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)


def _cached_file_digest(path: Path, files: dict) -> tuple[str, bool]:
    """``(sha256, whether files was updated)`` for one file, from ``files`` when its key still matches."""
    name = str(path.resolve())
    before = os.stat(name)
    entry = files.get(name)
    if entry is not None and entry[:4] == _file_key(before):
        return entry[4], False
    digest = hash_file(Path(name))
    after = os.stat(name)
    settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > SETTLED_SECONDS * 1e9
    if _file_key(after) != _file_key(before) or not settled:  # changing now: do not trust a cached hash later
        return digest, False
    files[name] = _file_key(after) + [digest]
    return digest, True


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 over every regular file under ``folder`` (relative name, size and content hash each);
    names starting with ``.`` are skipped. Each file's hash comes from the cache while it is unchanged."""
    folder = Path(folder)
    cache = cache_file()
    files = _load_cache(cache) if cache is not None else {}
    hasher, changed = hashlib.sha256(), False
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        digest, updated = _cached_file_digest(path, files)
        changed |= updated
        hasher.update(f"{relative}\0{path.stat().st_size}\0{digest}\n".encode())
    if changed and cache is not None:
        _save_cache(cache, files)
    return hasher.hexdigest()


def tensors_digest(module: torch.nn.Module) -> str:
    """sha256 over every tensor of ``module``'s state dict (name, dtype, shape and all bytes)."""
    hasher = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
        hasher.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return hasher.hexdigest()


def component_digest(component) -> str:
    """The digest of one pipeline component: of the files of the folder it was loaded from
    (``_source_folder``, set by :func:`asymk_core.model_folder.load_pipeline_components`), else of its
    tensors in memory (e.g. a component made in Python), else of its config (a scheduler). Weights
    changed in memory after loading from a folder are not seen: the digest is of what was loaded."""
    if component is None:
        return "none"
    source = getattr(component, "_source_folder", None)
    if source is not None and Path(source).is_dir():
        return "files:" + folder_digest(source)
    if isinstance(component, torch.nn.Module):
        return "tensors:" + tensors_digest(component)
    config = getattr(component, "config", None)
    if config is None and hasattr(component, "to_dict"):
        config = component.to_dict()
    return "config:" + hashlib.sha256(json.dumps(dict(config or {}), sort_keys=True, default=str).encode()).hexdigest()
