"""The ``asymk-talker`` command without installing the package.

``python -m asymk_talker init ...`` when the package is installed, or ``python path/to/this/folder
init ...`` from a checkout of any folder name (such as a ComfyUI custom-node clone into which only
``requirements.txt`` was installed): the folder is then imported as the package ``asymk_talker``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def _package_cli():
    if __package__:  # python -m asymk_talker
        return importlib.import_module(f"{__package__}.cli.main")
    root = Path(__file__).resolve().parent
    # run as a folder: its sub-folders (nodes, tests, train, ...) must not become top-level modules
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]
    if "asymk_talker" not in sys.modules:
        spec = importlib.util.spec_from_file_location("asymk_talker", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["asymk_talker"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("asymk_talker.cli.main")


if __name__ == "__main__":
    sys.exit(_package_cli().main())
