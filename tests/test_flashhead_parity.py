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


def _stub_pipeline_only_modules() -> None:
    """Stand-ins for what their pipeline module imports but this test never runs (face crop, loudness),
    and torchvision's centre crop (the portrait already has the target size, so it is the identity)."""
    import importlib.util

    def center_crop(image, size):
        height, width = image.shape[-2:]
        target_h, target_w = size
        top, left = int(round((height - target_h) / 2.0)), int(round((width - target_w) / 2.0))
        return image[..., top: top + target_h, left: left + target_w]

    if importlib.util.find_spec("torchvision") is None:
        functional = types.ModuleType("torchvision.transforms.functional")
        functional.center_crop = center_crop
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional
        root = types.ModuleType("torchvision")
        root.transforms = transforms
        sys.modules.update({"torchvision": root, "torchvision.transforms": transforms,
                            "torchvision.transforms.functional": functional})
    for name in ("pyloudnorm", "mediapipe"):
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)


def _return_encoder_hidden_states(audio_encoder) -> None:
    """Their wav2vec2 wrapper reads ``encoder(...).hidden_states``, which transformers >= 5 no longer
    fills (their code pins 4.57): give the encoder back that output, read with forward hooks."""
    from transformers.modeling_outputs import BaseModelOutput

    from asymk_talker.asymk_core.audio_flashhead import encoder_layer_outputs

    class HiddenStatesEncoder(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.inner = encoder

        def forward(self, hidden_states, *args, **kwargs):
            layers = encoder_layer_outputs(self.inner, hidden_states)
            return BaseModelOutput(last_hidden_state=layers[-1], hidden_states=(None, *layers))

    audio_encoder.encoder = HiddenStatesEncoder(audio_encoder.encoder)


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


# ------------------------------------------------------------------------------------- the loop
@pytest.fixture(scope="module")
def both_pipelines(their_model_module, converted, tmp_path_factory):
    """Their FlashHeadPipeline and our converted pipeline on the same random weights (64 x 64 px)."""
    import numpy as np
    import PIL.Image
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    _stub_pipeline_only_modules()
    from flash_head.src.pipeline import flash_head_pipeline as their_pipeline
    from flash_head.wan.modules import vae as their_vae

    from asymk_talker.pipelines.convert_flashhead import convert_flashhead
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    root = tmp_path_factory.mktemp("fh-loop")
    theirs_model, _, _ = converted
    theirs_model.save_pretrained(str(root / "ckpt" / "Model_Pro"))
    torch.manual_seed(1)
    vae = their_vae.WanVAE_(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                            temperal_downsample=[False, True, True])
    (root / "ckpt" / "VAE_Wan").mkdir()
    vae_file = root / "ckpt" / "VAE_Wan" / "Wan2.1_VAE.pth"
    torch.save(vae.state_dict(), str(vae_file))
    torch.manual_seed(2)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(str(root / "wav2vec2"))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(root / "wav2vec2"))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    image.save(root / "girl.png")

    their_pipeline.COMPILE_MODEL = their_pipeline.COMPILE_VAE = False
    torch.cuda.synchronize = lambda *args, **kwargs: None  # their loop times itself with CUDA syncs
    theirs = their_pipeline.FlashHeadPipeline(str(root / "ckpt"), "pro", str(root / "wav2vec2"), device="cpu",
                                              param_dtype=torch.float32)
    _return_encoder_hidden_states(theirs.audio_encoder)
    ours_dir = convert_flashhead(root / "ckpt" / "Model_Pro", vae_file, root / "wav2vec2", root / "asymk")
    ours = AsymKPipeline.from_pretrained(ours_dir)
    return theirs, ours, root / "girl.png"


@pytest.mark.parametrize("colour", [0.0, 1.0])
def test_two_chunks_of_the_loop_match(both_pipelines, colour):
    """61 frames = chunk 0 (33 frames: 1 reference latent + 8 new) + chunk 1 (28 frames: 2 re-encoded + 7 new)."""
    import numpy as np

    theirs, ours, image = both_pipelines
    speech = np.random.default_rng(3).standard_normal(61 * 640).astype(np.float32) * 0.1
    theirs.prepare_params(str(image), (64, 64), 33, 5, 4, seed=7, shift=5.0, color_correction_strength=colour)
    embedding = theirs.preprocess_audio(speech, sr=16000, fps=25)  # [61, 12, 768]
    index = (torch.arange(61)[:, None] + torch.arange(-2, 3)[None]).clamp(0, 60)
    context = embedding[index][None]
    decoded = []
    original_decode = theirs.vae.decode
    theirs.vae.decode = lambda zs: decoded.append(zs.clone()) or original_decode(zs)
    their_frames = []
    for chunk in range(2):
        video = theirs.generate(context[:, chunk * 28: chunk * 28 + 33])  # [3, 33, H, W] in [-1, 1]
        frames = ((video + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)
        their_frames.append(frames if chunk == 0 else frames[5:])
    theirs.vae.decode = original_decode
    their_frames = torch.cat(their_frames)

    pipe = ours if colour == 1.0 else type(ours).from_pretrained(ours.transformer._source_folder.parent,
                                                                  colour_correction=colour)
    session = pipe.prepare(str(image), speech, sample_rate=16000, generator=torch.Generator().manual_seed(7),
                           height=64, width=64)
    chunks = list(session.chunks())
    assert [c.frames.shape[1] for c in chunks] == [33, 28]
    for their_window, chunk in zip(decoded, chunks):
        window = torch.cat([chunk.chunk.kernel, chunk.chunk.latents], dim=2)[0]
        diff = (window - their_window).abs().max().item()
        print(f"colour {colour}: chunk {chunk.chunk.index} window latents [kernel | chunk] max abs diff {diff:.3e} "
              f"(max {their_window.abs().max().item():.2f})")
        assert diff <= 1e-3
    our_frames = torch.cat([c.frames[0] for c in chunks])
    diff = (our_frames - their_frames).abs().max().item()
    print(f"colour {colour}: frames [61, 64, 64, 3] in [0, 1] max abs diff {diff:.3e}")
    assert diff <= 1e-3
