"""The Python environment the package runs in: optional packages that are installed but broken.

transformers imports ``torchaudio`` whenever it is installed, so a torchaudio build that does not
match the installed torch (``pip install torchaudio`` next to a newer torch, whose import raises
``OSError`` while loading its library) breaks every model load, deep inside diffusers' imports,
although AsymK never needs torchaudio. :func:`hide_broken_torchaudio` detects that once, at
start-up, and makes the package look absent to everyone (transformers' availability check uses
``importlib.util.find_spec``, which answers ``None`` for a ``None`` entry in ``sys.modules``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

BROKEN_TORCHAUDIO_FIX = ("AsymK does not need torchaudio and now treats it as absent; ComfyUI's own audio nodes need a "
                         "torchaudio built for your torch: reinstall the matching version "
                         "(`pip install torchaudio==<your torch version>`, from the same index as torch) "
                         "or uninstall it (`pip uninstall torchaudio`)")


_hidden_because: str | None = None


def hide_broken_torchaudio() -> str | None:
    """If ``torchaudio`` is installed but its import fails, mark it absent in ``sys.modules`` and
    return why (``"OSError: ..."``, again on later calls); ``None`` when it imports or is absent."""
    global _hidden_because
    if "torchaudio" in sys.modules:  # imported fine already, or already hidden
        return _hidden_because if sys.modules["torchaudio"] is None else None
    try:
        if importlib.util.find_spec("torchaudio") is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        importlib.import_module("torchaudio")
        return None
    except Exception as error:  # OSError from a mismatched build, ImportError, RuntimeError, ...
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio"] = None  # `import torchaudio` -> ImportError; find_spec -> None
        first_line = str(error).splitlines()[0] if str(error) else ""
        _hidden_because = f"{type(error).__name__}: {first_line}"
        return _hidden_because
