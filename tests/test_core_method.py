"""TRE, KCLG, samplers, streaming decode and the transformer's conditioning contract (tiny preset)."""

from __future__ import annotations

import pytest
import torch

from asymk_talker.asymk_core.generation import SamplingSettings, generate_chunks
from asymk_talker.asymk_core.kclg import ChunkPlan, kclg_chunks, next_kernel
from asymk_talker.asymk_core.models.transformer import AsymKTransformer
from asymk_talker.asymk_core.sampling import ChunkConditions, sample_chunk_distilled, shifted_sigmas
from asymk_talker.asymk_core.tre import encode_reference
from asymk_talker.asymk_core.vae import StreamingDecoder, vae_from_preset


def test_tre_reference_latents_are_time_aligned_and_vary_over_time():
    vae = vae_from_preset("tiny").eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    reference = encode_reference(vae, image, window_frames=5)
    assert reference.shape == (1, 4, 5, 8, 8)
    steps = (reference[:, :, 1:] - reference[:, :, :-1]).abs().flatten(3).mean(-1)  # [1, C, 4]
    assert bool((steps.amax(dim=1) > 1e-4).all()), "every latent frame of the pseudo-video should differ"
    assert torch.equal(reference, encode_reference(vae, image, window_frames=5))  # deterministic


def test_streaming_decode_equals_one_shot_decode():
    vae = vae_from_preset("tiny").eval()
    latents = torch.randn(1, 4, 7, 8, 8)
    with torch.no_grad():
        full = vae.decode(latents).sample
    decoder = StreamingDecoder(vae)
    pieces = [decoder.decode(latents[:, :, a:b]) for a, b in ((0, 3), (3, 4), (4, 7))]
    streamed = torch.cat(pieces, dim=2)
    assert streamed.shape == full.shape == (1, 3, 25, 32, 32)
    assert torch.allclose(streamed, full, atol=1e-6)


@pytest.mark.parametrize("num_frames, chunk, kernel", [(37, 3, 2), (12, 3, 2), (5, 2, 3), (1, 4, 1)])
def test_chunk_plan_covers_exactly_the_requested_frames(num_frames, chunk, kernel):
    plan = ChunkPlan(num_frames, chunk, kernel, temporal_factor=4)
    ranges = [plan.video_range(k) for k in range(plan.num_chunks)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_frames
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert plan.num_chunks * chunk * 4 >= num_frames > (plan.num_chunks - 1) * chunk * 4


def test_chunk_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="chunk_frames"):
        ChunkPlan(10, 0, 2)
    with pytest.raises(ValueError, match="kernel_frames"):
        ChunkPlan(10, 2, True)


def test_kclg_kernel_is_last_frames_of_previous_chunk():
    torch.manual_seed(0)
    initial = torch.randn(1, 4, 2, 8, 8)
    chunks = list(kclg_chunks(lambda index, kernel: torch.randn(1, 4, 3, 8, 8), initial, num_chunks=4, kernel_frames=2))
    assert torch.equal(chunks[0].kernel, initial)
    for previous, current in zip(chunks, chunks[1:]):
        assert torch.equal(current.kernel, previous.latents[:, :, -2:])


def test_next_kernel_spans_chunks_when_kernel_is_longer_than_chunk():
    kernel = torch.arange(3.0).view(1, 1, 3, 1, 1)
    latents = torch.tensor([10.0, 11.0]).view(1, 1, 2, 1, 1)
    assert next_kernel(kernel, latents, 3).flatten().tolist() == [2.0, 10.0, 11.0]


def test_real_model_rollout_uses_its_own_kernels(tiny_components, random_audio_windows):
    components, _ = tiny_components
    plan = ChunkPlan(num_frames=30, chunk_frames=3, kernel_frames=2)
    audio = random_audio_windows(plan.num_frames)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    reference = encode_reference(components["vae"], image, plan.window_frames)
    chunks = list(generate_chunks(
        components["transformer"], components["vae"], components["scheduler"], reference, audio, plan,
        SamplingSettings("distilled", num_inference_steps=2), generator=torch.Generator().manual_seed(0), decode=False,
    ))
    assert len(chunks) == plan.num_chunks == 3
    assert torch.equal(chunks[0].kernel, reference[:, :, :2])
    for previous, current in zip(chunks, chunks[1:]):
        assert torch.equal(current.kernel, previous.latents[:, :, -2:])


class CountingTransformer(torch.nn.Module):
    """Wraps a transformer, recording each call's timesteps."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.timesteps = inner, []

    def forward(self, hidden_states, timestep, *args, **kwargs):
        self.timesteps.append(timestep.clone())
        return self.inner(hidden_states, timestep, *args, **kwargs)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_distilled_sampler_calls_transformer_once_per_step_with_clean_kernel_time(steps):
    counting = CountingTransformer(AsymKTransformer.from_preset("tiny").eval())
    conditions = ChunkConditions(torch.randn(1, 4, 2, 8, 8), torch.randn(1, 4, 5, 8, 8), torch.randn(1, 3, 4, 5, 1, 80))
    with torch.no_grad():
        out = sample_chunk_distilled(counting, torch.randn(1, 4, 3, 8, 8), conditions, shifted_sigmas(steps, 3.0),
                                     torch.Generator().manual_seed(0))
    assert out.shape == (1, 4, 3, 8, 8)
    assert len(counting.timesteps) == steps
    for timestep in counting.timesteps:
        assert timestep.shape == (1, 5)
        assert torch.all(timestep[:, :2] == 0) and torch.all(timestep[:, 2:] > 0)


def test_shifted_sigmas_start_at_one_and_decrease():
    sigmas = shifted_sigmas(4, 3.0)
    assert sigmas[0] == pytest.approx(1.0) and all(a > b > 0 for a, b in zip(sigmas, sigmas[1:]))
    with pytest.raises(ValueError, match="num_inference_steps"):
        shifted_sigmas(0, 3.0)


def _perturbed_audio_model(num_layers: int) -> AsymKTransformer:
    torch.manual_seed(0)
    model = AsymKTransformer.from_preset("tiny", num_layers=num_layers).eval()
    for block in model.blocks:  # give the zero-initialised audio output a real effect
        torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.5)
    return model


def test_fresh_model_ignores_audio_but_audio_attention_is_frame_local():
    torch.manual_seed(0)
    window = torch.randn(1, 4, 5, 8, 8)
    reference = torch.randn(1, 4, 5, 8, 8)
    timestep = torch.tensor([[0.0, 0.0, 700.0, 700.0, 700.0]])
    audio = torch.randn(1, 3, 4, 5, 1, 80)
    fresh = AsymKTransformer.from_preset("tiny").eval()
    with torch.no_grad():
        assert torch.equal(fresh(window, timestep, reference, audio, 2).sample,
                           fresh(window, timestep, reference, None, 2).sample)
    model = _perturbed_audio_model(num_layers=1)
    changed = audio.clone()
    changed[:, 1] += 3.0  # audio of the second chunk frame (window frame 3)
    with torch.no_grad():
        base, other = model(window, timestep, reference, audio, 2).sample, model(window, timestep, reference, changed, 2).sample
    difference = (base - other).abs().flatten(3).amax(-1).amax(1)[0]  # per window frame
    assert difference[3] > 1e-3
    assert torch.all(difference[[0, 1, 2, 4]] == 0)


def test_transformer_save_load_round_trip(tmp_path):
    model = AsymKTransformer.from_preset("tiny").eval()
    model.save_pretrained(tmp_path / "t")
    loaded = AsymKTransformer.from_pretrained(tmp_path / "t").eval()
    inputs = (torch.randn(1, 4, 4, 8, 8), torch.tensor([[0.0, 500, 500, 500]]), torch.randn(1, 4, 4, 8, 8),
              torch.randn(1, 3, 4, 5, 1, 80), 1)
    with torch.no_grad():
        assert torch.equal(model(*inputs).sample, loaded(*inputs).sample)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="`preset`"):
        AsymKTransformer.from_preset("huge")
