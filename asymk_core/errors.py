"""One shape for every input error: which argument, what is wrong, how to fix it.

Errors built here are ``ValueError``/``TypeError`` subclasses that also derive from
:class:`InputError`, so front ends (CLI, ComfyUI) can tell a user's mistake from a bug.
"""

from __future__ import annotations


class InputError(Exception):
    """Marker base class for errors caused by user input."""


class InvalidInputValue(InputError, ValueError):
    pass


class InvalidInputType(InputError, TypeError):
    pass


# The names front ends show. ComfyUI prints an exception's type as ``type(e).__module__ + "." +
# qualname``, and it imports a custom-node pack under its folder's path, so without this the type read
# "/.../custom_nodes/asymk-talker.asymk_core.errors.InvalidInputValue". ``asymk_talker`` exports the
# three classes, so the name is also where pickle finds them.
for _cls in (InputError, InvalidInputValue, InvalidInputType):
    _cls.__module__ = "asymk_talker"
del _cls


def input_error(argument: str, problem: str, fix: str, *, kind: type[Exception] = ValueError) -> Exception:
    """Build an exception whose message names the argument, the problem and the fix.

    ``raise input_error("audio", "the file is empty", "pass a speech recording of at least 0.1 s")``
    gives ``ValueError: `audio`: the file is empty. Fix: pass a speech recording of at least 0.1 s.``
    """
    cls = InvalidInputType if issubclass(kind, TypeError) else InvalidInputValue
    return cls(f"`{argument}`: {problem}. Fix: {fix}.")


def error_argument(error: BaseException) -> str | None:
    """The argument an :func:`input_error` names (``fps`` for ``"`fps`: ..."``), or ``None``."""
    text = str(error)
    if not text.startswith("`"):
        return None
    end = text.find("`: ", 1)
    return text[1:end] if end > 0 else None


def rename_argument(error: BaseException, argument: str) -> BaseException:
    """The same error (same type, same message) naming ``argument`` instead, e.g. a front end's flag."""
    old = error_argument(error)
    if old is None or old == argument:
        return error
    renamed = type(error)(f"`{argument}`" + str(error)[len(old) + 2:])
    renamed.__cause__ = error.__cause__
    return renamed
