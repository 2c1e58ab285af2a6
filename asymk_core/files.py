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


def ffmpeg_path(path: str | os.PathLike) -> str:
    """A local file path as FFmpeg must be given it: absolute, so that a name such as ``pipe:1.mp4``
    or ``http:x.wav`` is read as a file in the current folder, never as an FFmpeg protocol."""
    return os.path.abspath(os.fspath(path))


def check_input_file(source, path: Path, argument: str, what: str) -> None:
    """Refuse what cannot be read as an input file, before anything opens it.

    ``source`` is what the user passed (``path`` after ``expanduser``); ``what`` names the kind of
    file (``"image"``, ``"audio"``). A URL is not fetched; a symlink loop and a missing path are
    named as such; anything that is not a regular file (a FIFO, a device, a socket) is
    refused, since opening a FIFO without a writer would wait forever. Folders are left to the
    caller, which says what it expected instead.
    """
    import errno
    import stat

    from .errors import input_error

    import re

    text = str(source)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise input_error(argument, f"{text!r} is a URL; URLs are not read",
                          f"download the {what} file first and pass its local path")
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise input_error(argument, f"{path} is a symlink loop (it points back to itself)",
                              "fix the link, or pass the real file") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise input_error(argument, f"{path} does not exist", f"check the path of the {what} file") from None
        raise input_error(argument, f"{path} cannot be read ({error.strerror})",
                          f"check the path and permissions of the {what} file") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # folders: the caller's own message
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise input_error(argument, f"{path} is {kind}, not a regular file",
                          f"save the {what} to a file and pass its path")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path, a symlink to it, or a hard link (same device and inode)."""
    try:
        first, second = os.stat(a), os.stat(b)  # follows symlinks
    except OSError:  # one of them does not exist (yet), or is a symlink loop: compare where they would resolve to
        try:
            return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): the input check says so
            return os.path.abspath(Path(a).expanduser()) == os.path.abspath(Path(b).expanduser())
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def check_output_is_not_an_input(output: str | os.PathLike, inputs: dict, argument: str) -> None:
    """Refuse an output that is one of the inputs (``{argument name: path}``), before anything is rendered.

    Writing the video would otherwise replace the user's source file (``--audio clip.mp4 --output
    clip.mp4``). Symlinks and hard links to an input count as the input.
    """
    from .errors import input_error

    for name, source in inputs.items():
        if source is None or not isinstance(source, (str, os.PathLike)):
            continue
        if same_file(Path(output).expanduser(), Path(source).expanduser()):
            raise input_error(argument, f"{output} is the same file as {name} {source}; writing the video would "
                              "replace it", f"choose an output name other than {name}")


def check_output_folder(path: str | os.PathLike, argument: str, force: bool = False) -> Path:
    """A folder to write into: refused when it is a file, or (without ``force``) a folder that is not empty."""
    from .errors import input_error

    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise input_error(argument, f"{folder} is a file, not a folder", "choose a new folder name (this writes a folder)")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise input_error(argument, f"{folder} exists and is not empty", "choose a new folder or pass --force")
    return folder
