"""Garbage-collector pauses in real time: keep a full collection from freezing a live stream.

CPython's cycle collector walks every object it tracks in a full (generation-2) collection, which
it runs by itself whenever the long-lived objects have grown by a quarter. A loaded pipeline tracks
about 0.5 M objects and 0.8 M after ``torch.compile`` (FX graphs, guards, sympy expressions); a full
collection of them took 0.7 s and 1.2 s on the 2-core CPU while other work shared it, holding the
GIL all along: a live stream showed no frame for half a second, once in a while. :func:`freeze_long_lived`
collects once, then moves every object alive to the permanent generation (:func:`gc.freeze`), so
later collections walk only what was made since. Objects made before are still freed by reference
counting; only a reference cycle among them that dies later is never collected, which is why a
closed live session drops its own state (``LiveSession.close``).
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> int:
    """Collect, then exempt every object alive from later collections; the number now exempt.

    The first call pays one full collection (0.3-1.2 s here); later calls walk only the objects
    made since the previous one.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
