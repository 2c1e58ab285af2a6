"""SoulX-FlashHead -> AsymK conversion on tiny random weights in FlashHead's layout (offline, seconds).

Checks: every key mapped, refusals (missing / unknown key, wrong shape), the Wan2.1 VAE single file,
the written folder loads with ``AsymKPipeline.from_pretrained``, the CLI, and numerical parity of the
converted transformer with FlashHead's forward re-implemented in plain torch (``flashhead_reference``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flashhead_reference import (  # noqa: E402
    flashhead_state_dict, original_wan_vae, reference_forward, save_flashhead_folder, tiny_config, tiny_wav2vec2,
)

from asymk_talker.asymk_core.models.flashhead import (  # noqa: E402
    UNUSED_PREFIXES, flashhead_transformer_config, transformer_from_flashhead,
)
from asymk_talker.asymk_core.models.transformer import AsymKTransformer  # noqa: E402

AUDIO = dict(audio_layers=2, audio_dim=8)


@pytest.fixture(scope="module")
def flashhead(tmp_path_factory):
    config = tiny_config()
    state = flashhead_state_dict(config)
    folder = save_flashhead_folder(tmp_path_factory.mktemp("fh") / "Model_Pro", config, state)
    return folder, config, state


def test_every_key_is_mapped_and_the_options_are_flashheads(flashhead):
    folder, config, state = flashhead
    model, conversion = transformer_from_flashhead(folder, **AUDIO)
    used = set(conversion.source_keys.values())
    assert used | set(conversion.unused) == set(state)
    assert conversion.unused and all(k.startswith(UNUSED_PREFIXES) for k in conversion.unused)
    assert set(conversion.source_keys) == set(model.state_dict())
    assert conversion.source_keys["blocks.1.attn1.to_q.weight"] == "blocks.1.self_attn.q.weight"
    assert conversion.source_keys["blocks.0.audio_attn.to_out.0.bias"] == "blocks.0.cross_attn.o.bias"
    assert conversion.source_keys["blocks.0.norm_audio.weight"] == "blocks.0.norm3.weight"
    assert conversion.source_keys["blocks.0.ffn.net.0.proj.weight"] == "blocks.0.ffn.0.weight"
    assert conversion.source_keys["audio_projection.proj_rest.weight"] == "audio_proj.proj1_vf.weight"
    assert conversion.source_keys["proj_out.weight"] == "head.head.weight"
    ours = model.state_dict()
    assert torch.equal(ours["blocks.0.scale_shift_table"].flatten(), state["blocks.0.modulation"].flatten())
    assert torch.equal(ours["condition_embedder.time_proj.weight"], state["time_projection.1.weight"])
    c = model.config
    assert (c.kernel_timestep, c.mask_channel, c.audio_projector, c.kernel_attention) == \
        ("shared", False, "flashhead", "full")
    assert (c.num_attention_heads, c.attention_head_dim, c.audio_tokens_per_frame, c.audio_hidden_dim) == (2, 24, 3, 16)
    assert model.patch_embedding.in_channels == 8  # 4 noisy + 4 reference, no mask channel


@pytest.mark.parametrize("chunk_frames,timestep", [(0, 1000.0), (1, 937.5), (2, 625.0)])
def test_converted_transformer_matches_flashheads_forward(flashhead, chunk_frames, timestep):
    """Window of 1 + 2 latent frames (prefix first), one timestep for all frames, audio per video frame."""
    folder, config, state = flashhead
    model, _ = transformer_from_flashhead(folder, **AUDIO)
    g = torch.Generator().manual_seed(chunk_frames)
    frames, kernel = 3, [1, 2, 1][chunk_frames]
    x = torch.randn(1, 4, frames, 8, 6, generator=g)
    y = torch.randn(1, 4, frames, 8, 6, generator=g)
    context = torch.randn(1, 1 + 4 * (frames - 1), 5, 2, 8, generator=g)
    expected = reference_forward(state, config, x, timestep, context, y)
    # Our sampler passes kernel frames t = 0; kernel_timestep="shared" gives them the chunk's time.
    t = torch.tensor([[0.0] * kernel + [timestep] * (frames - kernel)])
    with torch.no_grad():
        ours = model(x, t, y, context, kernel_frames=kernel).sample
    assert ours.shape == expected.shape == x.shape
    diff = (ours - expected).abs().max().item()
    print(f"max abs diff {diff:.2e} (output scale {expected.abs().max().item():.2f})")
    assert diff <= 1e-4, diff


def test_refusals_name_the_argument_and_write_nothing(flashhead, tmp_path):
    from asymk_talker.pipelines.convert_flashhead import convert_flashhead

    _, config, state = flashhead
    vae, _ = original_wan_vae(tmp_path)
    wav = tiny_wav2vec2(tmp_path / "wav2vec2")
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "blocks.1.cross_attn.k.bias"}, "missing"),
        "unknown": ({**state, "blocks.0.self_attn.extra.weight": torch.zeros(2)}, "no place"),
        "shape": ({**state, "blocks.0.ffn.0.weight": torch.zeros(32, 48)}, "shape"),
    }
    for name, (broken, message) in cases.items():
        folder = save_flashhead_folder(tmp_path / name, config, broken)
        out = tmp_path / f"out-{name}"
        with pytest.raises(ValueError, match=message) as info:
            convert_flashhead(folder, vae, wav, out, **AUDIO)
        assert str(info.value).startswith("`transformer`:") and "\n" not in str(info.value)
        assert not out.exists() and not list(tmp_path.glob(f".out-{name}.*"))
    with pytest.raises(ValueError, match="config.json"):
        flashhead_transformer_config({"dim": 48}, state)
    with pytest.raises(ValueError, match="audio projector"):
        flashhead_transformer_config(config, state, audio_layers=3, audio_dim=8)
    with pytest.raises(ValueError, match="`vae`"):
        convert_flashhead(flashhead[0], tmp_path / "nope.pth", wav, tmp_path / "o", **AUDIO)


def test_wan_vae_single_file_round_trip(tmp_path):
    from asymk_talker.asymk_core.models.wan_vae_file import vae_from_wan_file

    path, ours = original_wan_vae(tmp_path)
    vae = vae_from_wan_file(path)
    assert vae.config.base_dim == 8 and vae.config.z_dim == 4
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in ours.items())
    state = torch.load(str(path), weights_only=True)
    del state["decoder.head.2.bias"]
    torch.save(state, str(tmp_path / "broken.pth"))
    with pytest.raises(ValueError, match="not a Wan2.1 VAE"):
        vae_from_wan_file(tmp_path / "broken.pth")


def test_converted_folder_loads_and_cli(flashhead, tmp_path):
    from asymk_talker.cli.main import main
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    folder, _, _ = flashhead
    vae, _ = original_wan_vae(tmp_path)
    wav = tiny_wav2vec2(tmp_path / "wav2vec2")
    from asymk_talker.pipelines.convert_flashhead import convert_flashhead

    out = convert_flashhead(folder, vae, wav, tmp_path / "model", **AUDIO)
    assert (out / "model_index.json").is_file() and (out / "conversion_report.json").is_file()
    assert list((out / "transformer").glob("*.safetensors"))
    pipe = AsymKPipeline.from_pretrained(out)
    direct, _ = transformer_from_flashhead(folder, **AUDIO)
    assert all(torch.equal(pipe.transformer.state_dict()[k], v) for k, v in direct.state_dict().items())
    assert pipe.config.sampler == "distilled" and pipe.config.num_inference_steps == 4
    assert (pipe.config.kernel_frames, pipe.config.chunk_frames, pipe.config.first_kernel_frames) == (2, 7, 1)
    assert pipe.config.kernel_source == "decoded" and pipe.config.window_noise and pipe.config.colour_correction == 1.0
    assert pipe.scheduler.config.shift == 5.0 and pipe.transformer.config.audio_projector == "flashhead"

    # The command refuses partial inputs with one line naming its flag, and converts the real thing.
    code = main(["convert", "flashhead", "--transformer", str(tmp_path / "absent"), "--vae", str(vae),
                 "--wav2vec2", str(wav), "--output", str(tmp_path / "cli")])
    assert code == 2 and not (tmp_path / "cli").exists()
    code = main(["convert", "flashhead", "--transformer", str(folder), "--vae", str(vae), "--wav2vec2", str(wav),
                 "--output", str(out)])
    assert code == 2  # not empty, no --force


def test_cli_error_names_the_flag(tmp_path, capsys):
    from asymk_talker.cli.main import main

    code = main(["convert", "flashhead", "--transformer", str(tmp_path), "--vae", str(tmp_path / "v.pth"),
                 "--wav2vec2", str(tmp_path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "`--transformer`" in err and "config.json" in err


def test_transformer_options_defaults_and_combinations():
    base = dict(latent_channels=4, num_attention_heads=2, attention_head_dim=24, ffn_dim=32, num_layers=1,
                audio_dim=8, audio_layers=2, audio_hidden_dim=16, audio_tokens_per_frame=3)
    default = AsymKTransformer(**base)
    assert default.patch_embedding.in_channels == 9 and default.config.kernel_timestep == "zero"
    no_mask = AsymKTransformer(**base, mask_channel=False)
    assert no_mask.patch_embedding.in_channels == 8
    for bad in (dict(kernel_timestep="half"), dict(audio_projector="mlp"),
                dict(kernel_attention="block_causal", kernel_timestep="shared"),
                dict(kernel_attention="block_causal", audio_projector="flashhead")):
        with pytest.raises(ValueError, match="kernel_timestep|audio_projector|kernel_attention"):
            AsymKTransformer(**base, **bad)
    # "shared": whatever the kernel frames carry, they get the chunk's time.
    torch.manual_seed(0)
    shared = AsymKTransformer(**base, kernel_timestep="shared").eval()
    x, ref = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 4, 4)
    audio = torch.randn(1, 2, 4, 5, 2, 8)
    with torch.no_grad():
        a = shared(x, torch.tensor([[0.0, 500.0, 500.0]]), ref, audio, kernel_frames=1).sample
        b = shared(x, torch.tensor([[500.0, 500.0, 500.0]]), ref, audio, kernel_frames=1).sample
    assert torch.equal(a, b)
    # the FlashHead projector needs audio for the whole window
    fh = AsymKTransformer(**base, audio_projector="flashhead", mask_channel=False).eval()
    with pytest.raises(ValueError, match="audio_features"):
        fh(x, torch.tensor([[0.0, 500.0, 500.0]]), ref, torch.randn(1, 5, 5, 2, 8), kernel_frames=1)
