"""Parity with the SoulX-FlashHead reference code itself (runs only when FLASHHEAD_SRC points at a checkout).

``FLASHHEAD_SRC=/path/to/SoulX-FlashHead pytest tests/test_flashhead_parity.py``: their
``WanModelAudioProject`` is imported on the CPU (its multi-GPU dependencies replaced by stand-ins for
one process), built at FlashHead's width (dim 1536, 12 heads, 32 audio tokens, wav2vec2-base audio)
with one layer and a small FFN, random weights, saved with their ``save_pretrained``, converted by
our converter and run on the same inputs as ours.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch

SOURCE = os.environ.get("FLASHHEAD_SRC")
pytestmark = pytest.mark.skipif(not SOURCE, reason="set FLASHHEAD_SRC to a SoulX-FlashHead checkout")

FLASHHEAD_1_3B = dict(dim=1536, in_dim=32, ffn_dim=256, out_dim=16, text_dim=4096, freq_dim=256, eps=1e-6,
                      vae_stride=(4, 8, 8), patch_size=(1, 2, 2), num_heads=12, num_layers=1,
                      has_image_input=False)


def _stub_multi_gpu_modules() -> None:
    """Single-process stand-ins for xfuser (sequence parallelism), which the model imports at the top."""
    distributed = types.ModuleType("xfuser.core.distributed")
    distributed.get_sequence_parallel_rank = lambda: 0
    distributed.get_sequence_parallel_world_size = lambda: 1
    distributed.get_sp_group = lambda: None
    long_ctx = types.ModuleType("xfuser.core.long_ctx_attention")
    long_ctx.xFuserLongContextAttention = None
    core = types.ModuleType("xfuser.core")
    core.distributed, core.long_ctx_attention = distributed, long_ctx
    root = types.ModuleType("xfuser")
    root.core = core
    for name, module in (("xfuser", root), ("xfuser.core", core), ("xfuser.core.distributed", distributed),
                         ("xfuser.core.long_ctx_attention", long_ctx)):
        sys.modules.setdefault(name, module)


@pytest.fixture(scope="module")
def their_model_module():
    pytest.importorskip("einops")
    _stub_multi_gpu_modules()
    sys.path.insert(0, str(Path(SOURCE).resolve()))
    from flash_head.src.modules import flash_head_model

    return flash_head_model


@pytest.fixture(scope="module")
def converted(their_model_module, tmp_path_factory):
    from asymk_talker.asymk_core.models.flashhead import transformer_from_flashhead

    torch.manual_seed(0)
    theirs = their_model_module.WanModelAudioProject(**FLASHHEAD_1_3B).eval()
    with torch.no_grad():  # make every norm and bias matter
        for name, parameter in theirs.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    folder = tmp_path_factory.mktemp("fh") / "Model_Pro"
    theirs.save_pretrained(str(folder))
    ours, conversion = transformer_from_flashhead(folder)
    return theirs, ours.eval(), conversion


def test_every_key_of_their_model_is_converted(converted):
    theirs, ours, conversion = converted
    assert set(conversion.source_keys.values()) | set(conversion.unused) == set(theirs.state_dict())
    assert set(conversion.source_keys) == set(ours.state_dict())


@pytest.mark.parametrize("prefix,timestep", [(1, 1000.0), (2, 833.3333), (2, 625.0)])
def test_transformer_outputs_match(converted, prefix, timestep):
    theirs, ours, _ = converted
    g = torch.Generator().manual_seed(prefix)
    frames, height, width = 9, 8, 8
    x = torch.randn(1, 16, frames, height, width, generator=g)
    y = torch.randn(1, 16, frames, height, width, generator=g)
    context = torch.randn(1, 1 + 4 * (frames - 1), 5, 12, 768, generator=g)
    with torch.no_grad():
        expected = theirs(x=x, timestep=torch.tensor([timestep]), context=context, y=y)
        t = torch.tensor([[0.0] * prefix + [timestep] * (frames - prefix)])
        got = ours(x, t, y, context, kernel_frames=prefix).sample
    diff = (got - expected).abs().max().item()
    print(f"transformer parity (prefix {prefix}, t {timestep}): max abs diff {diff:.3e}, "
          f"output max {expected.abs().max().item():.3f}")
    assert diff <= 1e-4
