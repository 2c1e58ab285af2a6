"""transformer_from_wan on a tiny random WanTransformer3DModel saved in diffusers format (offline)."""

from __future__ import annotations

import pytest
import torch

from asymk_talker.asymk_core.models.wan_init import transformer_from_wan

TINY_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                text_dim=24, freq_dim=32, ffn_dim=64, num_layers=2)
AUDIO = dict(audio_dim=80, audio_layers=1, audio_hidden_dim=64, audio_tokens_per_frame=2)


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan = WanTransformer3DModel(**TINY_WAN)
    folder = tmp_path_factory.mktemp("wan") / "transformer"
    wan.save_pretrained(str(folder))
    return folder, {k: v.clone() for k, v in wan.state_dict().items()}


def test_from_wan_round_trip(wan_folder):
    folder, wan_state = wan_folder
    model, report = transformer_from_wan(folder, return_report=True, **AUDIO)
    assert model.config.latent_channels == 4 and model.config.num_layers == 2
    assert model.config.num_attention_heads == 2 and model.config.ffn_dim == 64
    ours = model.state_dict()
    for name in report.initialized:
        if name in report.partial:
            continue
        expected = wan_state[name].reshape(ours[name].shape)
        assert torch.equal(ours[name], expected), name
    for name in ("blocks.0.attn1.to_q.weight", "blocks.1.ffn.net.2.weight", "condition_embedder.time_proj.weight",
                 "proj_out.weight", "scale_shift_table", "blocks.0.scale_shift_table"):
        assert name in report.initialized
    assert set(report.reshaped) == {"scale_shift_table", "blocks.0.scale_shift_table", "blocks.1.scale_shift_table"}
    # patch embedding: Wan's channels copied into the first C, the rest zero
    weight = ours["patch_embedding.weight"]
    assert torch.equal(weight[:, :4], wan_state["patch_embedding.weight"])
    assert torch.count_nonzero(weight[:, 4:]) == 0
    assert torch.equal(ours["patch_embedding.bias"], wan_state["patch_embedding.bias"])
    # the report names the new modules and the unused Wan weights
    new_modules = report.modules(report.new)
    assert "audio_projection" in new_modules
    assert "blocks.*.audio_attn" in new_modules and "blocks.*.norm_audio" in new_modules
    unused = report.modules(report.unused)
    assert "blocks.*.attn2" in unused and "condition_embedder" in unused and "blocks.*.norm2" in unused
    assert any(k.startswith("condition_embedder.text_embedder") for k in report.unused)
    assert torch.count_nonzero(ours["blocks.0.audio_attn.to_out.0.weight"]) == 0
    assert "audio_projection" in report.summary()
    assert model.wan_init_report is report


def test_from_wan_matches_wan_on_video_channels(wan_folder):
    """Without audio and with zero reference, our blocks compute what Wan's do up to the text cross-attention:
    checked through the patch embedding, which must equal Wan's on the first C channels."""
    folder, wan_state = wan_folder
    model = transformer_from_wan(folder, **AUDIO)
    x = torch.randn(1, 4, 2, 8, 8)
    full = torch.cat([x, torch.randn(1, 4, 2, 8, 8), torch.ones(1, 1, 2, 8, 8)], dim=1)
    ours = model.patch_embedding(full)
    wan = torch.nn.functional.conv3d(x, wan_state["patch_embedding.weight"], wan_state["patch_embedding.bias"],
                                     stride=(1, 2, 2))
    assert torch.allclose(ours, wan, atol=1e-6)
    out = model(x, torch.tensor([[0.0, 500.0]]), torch.zeros_like(x), None, kernel_frames=1).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_from_wan_options_and_errors(wan_folder, tmp_path):
    folder, wan_state = wan_folder
    # audio cross-attention from Wan's text cross-attention; output projection stays zero
    model, report = transformer_from_wan(folder.parent, audio_attn_init="attn2", return_report=True, **AUDIO)
    assert torch.equal(model.state_dict()["blocks.1.audio_attn.to_k.weight"], wan_state["blocks.1.attn2.to_k.weight"])
    assert torch.equal(model.state_dict()["blocks.0.norm_audio.weight"], wan_state["blocks.0.norm2.weight"])
    assert torch.count_nonzero(model.state_dict()["blocks.0.audio_attn.to_out.0.weight"]) == 0
    # a shallower model takes the first blocks; the rest is reported unused
    shallow, report = transformer_from_wan(folder, num_layers=1, return_report=True, **AUDIO)
    assert any(k.startswith("blocks.1.") for k in report.unused)
    # shape conflicts and wrong folders are clear errors
    with pytest.raises(ValueError, match="do not fit"):
        transformer_from_wan(folder, ffn_dim=32, **AUDIO)
    with pytest.raises(ValueError, match="config.json"):
        transformer_from_wan(tmp_path, **AUDIO)


def test_build_pipeline_from_pretrained_parts(wan_folder, tmp_path):
    from asymk_talker.pipelines.from_parts import build_pipeline_from_pretrained_parts
    from asymk_talker.asymk_core.vae import vae_from_preset
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    folder, _ = wan_folder
    vae_dir = tmp_path / "vae"
    vae_from_preset("tiny").save_pretrained(str(vae_dir))
    out = tmp_path / "pipe"
    build_pipeline_from_pretrained_parts(out, vae=vae_dir, audio_encoder="log-mel", wan=folder, preset="tiny",
                                         height=32, width=32, chunk_frames=3, kernel_frames=2)
    assert (out / "wan_init_report.json").is_file()
    pipe = AsymKPipeline.from_pretrained(out)
    assert pipe.transformer.config.latent_channels == 4 and pipe.config.height == 32
