"""File-system helpers shared by everything that writes files for other processes to read."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-and-restore
    os.umask(mask)
    return mask


def apply_umask_to_weights(folder: str | os.PathLike) -> None:
    """Give the weight files under ``folder`` the mode a plain ``open()`` would: ``0o666 & ~umask``.

    safetensors writes its files with mode 0600 whatever the umask, so a model saved by one user
    could not be read by a service (e.g. ComfyUI) running as another. Symlinks are left alone.
    """
    mode = 0o666 & ~current_umask()
    for path in Path(folder).rglob("*"):
        if path.suffix in WEIGHT_SUFFIXES and path.is_file() and not path.is_symlink():
            os.chmod(path, mode)
