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


def generator_seed(seed: int) -> int:
    """The value passed to ``torch.Generator.manual_seed`` for a seed in ``0..2**64 - 1``."""
    seed = int(seed)
    if 0 <= seed < 2**32:
        return seed
    return int(np.random.SeedSequence(seed % 2**64).generate_state(1, np.uint32)[0])


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from all bits of ``seed``."""
    return torch.Generator(device=device).manual_seed(generator_seed(seed))
