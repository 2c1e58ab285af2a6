"""Seeds: every bit of a 64-bit seed reaches the noise.

``torch.Generator().manual_seed`` on the CPU seeds a Mersenne Twister from the low 32 bits only,
so seeds 0, 2**32 and 2**63 used to give the same video. :func:`generator_seed` keeps seeds below
2**32 as they are (videos made with them do not change) and mixes larger seeds down to 32 bits
with numpy's ``SeedSequence``, which uses all their bits: two different seeds then collide only by
chance (one in 2**32), never systematically.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_SEED = 2**64 - 1


def check_seed(seed, argument: str = "seed") -> int:
    """``seed`` as an int in ``0..2**64 - 1``, or a one-line error naming ``argument``."""
    from .errors import input_error

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise input_error(argument, f"expected an integer, got {type(seed).__name__}",
                          f"pass an integer in 0..{MAX_SEED}", kind=TypeError)
    if not 0 <= int(seed) <= MAX_SEED:
        raise input_error(argument, f"{seed} is outside 0..2**64 - 1", f"pass an integer in 0..{MAX_SEED}")
    return int(seed)


def generator_seed(seed: int) -> int:
    """The value passed to ``torch.Generator.manual_seed`` for a seed in ``0..2**64 - 1``."""
    seed = check_seed(seed)
    if 0 <= seed < 2**32:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from all bits of ``seed``."""
    return torch.Generator(device=device).manual_seed(generator_seed(seed))
