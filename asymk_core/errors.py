"""One shape for every input error: which argument, what is wrong, how to fix it."""

from __future__ import annotations


def input_error(argument: str, problem: str, fix: str, *, kind: type[Exception] = ValueError) -> Exception:
    """Build an exception whose message names the argument, the problem and the fix.

    >>> raise input_error("audio", "the file is empty", "pass a speech recording of at least 0.1 s")
    """
    return kind(f"`{argument}`: {problem}. Fix: {fix}.")
