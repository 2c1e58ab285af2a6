"""Block-causal kernel attention: kernel tokens see only kernel tokens, so a per-chunk cache is exact."""

from __future__ import annotations

import json

import pytest
import torch

from asymk_talker.asymk_core.models.kernel_attention import KernelCache
from asymk_talker.asymk_core.models.transformer import AsymKTransformer

TAU, N, SIZE = 3, 4, 8


def _models():
    torch.manual_seed(0)
    full = AsymKTransformer.from_preset("tiny")
    for block in full.blocks:  # make audio matter (it is zero-initialised)
        torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.1)
    causal = AsymKTransformer.from_preset("tiny", kernel_attention="block_causal")
    causal.load_state_dict(full.state_dict())
    return full.eval(), causal.eval()


def _inputs(seed: int, sigma: float, audio: bool = True):
    g = torch.Generator().manual_seed(seed)
    config = AsymKTransformer.from_preset("tiny").config
    window = torch.randn(2, config.latent_channels, TAU + N, SIZE, SIZE, generator=g)
    time = torch.cat([torch.zeros(2, TAU), torch.full((2, N), 1000.0 * sigma)], 1)
    features = torch.randn(2, N, 4, config.audio_window, config.audio_layers, config.audio_dim, generator=g)
    return window, time, (features if audio else None)


@torch.no_grad()
def test_cached_calls_equal_uncached_ones_across_steps_and_guidance_branches():
    _, causal = _models()
    window, time, audio = _inputs(0, 0.9)
    reference = torch.randn(2, window.shape[1], TAU + N, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    cache = KernelCache()
    first = causal(window, time, reference, audio, kernel_frames=TAU, kernel_cache=cache).sample
    assert cache.filled and len(cache.layers) == len(causal.blocks)
    torch.testing.assert_close(first, causal(window, time, reference, audio, kernel_frames=TAU).sample, rtol=0, atol=0)
    for seed, sigma, with_audio in ((1, 0.6, True), (1, 0.6, False), (2, 0.2, True)):
        noisy, t, a = _inputs(seed, sigma, with_audio)
        noisy[:, :, :TAU] = window[:, :, :TAU]  # same kernel, new noisy chunk
        cached = causal(noisy, t, reference, a, kernel_frames=TAU, kernel_cache=cache).sample
        uncached = causal(noisy, t, reference, a, kernel_frames=TAU).sample
        torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_kernel_tokens_ignore_the_chunk_only_under_block_causal_attention():
    full, causal = _models()
    window, time, audio = _inputs(0, 0.9)
    other = window.clone()
    other[:, :, TAU:] = torch.randn_like(other[:, :, TAU:])
    reference = torch.zeros_like(window)
    kernel_out = lambda m, w: m(w, time, reference, audio, kernel_frames=TAU).sample[:, :, :TAU]  # noqa: E731
    torch.testing.assert_close(kernel_out(causal, window), kernel_out(causal, other))
    assert (kernel_out(full, window) - kernel_out(full, other)).abs().max() > 1e-4


def test_config_flag_defaults_to_full_and_round_trips(tmp_path):
    assert AsymKTransformer.from_preset("tiny").config.kernel_attention == "full"
    model = AsymKTransformer.from_preset("tiny", kernel_attention="block_causal")
    model.save_pretrained(tmp_path / "m")
    assert AsymKTransformer.from_pretrained(tmp_path / "m").config.kernel_attention == "block_causal"
    config_path = tmp_path / "m" / "config.json"  # a folder saved before the flag existed loads as full
    config = json.loads(config_path.read_text())
    del config["kernel_attention"]
    config_path.write_text(json.dumps(config))
    assert AsymKTransformer.from_pretrained(tmp_path / "m").config.kernel_attention == "full"
    with pytest.raises(ValueError, match="kernel_attention"):
        AsymKTransformer.from_preset("tiny", kernel_attention="sparse")
    window, time, audio = _inputs(0, 0.5)
    with pytest.raises(ValueError, match="kernel_cache"):
        AsymKTransformer.from_preset("tiny")(window, time, window, audio, kernel_frames=TAU, kernel_cache=KernelCache())


def test_a_block_causal_pipeline_renders_the_same_with_and_without_the_cache(monkeypatch):
    """End to end: the pipeline's chunk loop uses one cache per chunk; frames equal uncached sampling."""
    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core import generation

    torch.manual_seed(0)
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    causal = AsymKTransformer.from_preset("tiny", kernel_attention="block_causal")
    causal.load_state_dict(pipe.transformer.state_dict())
    pipe.register_modules(transformer=causal.eval())
    pipe.set_progress_bar_config(disable=True)
    audio = torch.sin(torch.linspace(0, 900, 16000)).numpy() * 0.3
    image = torch.rand(32, 32, 3).numpy()
    kwargs = dict(image=image, audio=audio, sample_rate=16000, output_type="np", num_inference_steps=2,
                  sampler="teacher", guidance_scale=2.0)
    cached = pipe(generator=torch.Generator().manual_seed(3), **kwargs).frames
    monkeypatch.setattr(generation, "kernel_cache_for", lambda transformer: None)
    uncached = pipe(generator=torch.Generator().manual_seed(3), **kwargs).frames
    assert cached.shape == uncached.shape and abs(cached - uncached).max() < 1e-5


@torch.no_grad()
def test_the_chunk_denoiser_computes_the_kernel_tokens_before_asking_for_audio(monkeypatch):
    """A live source may wait for its audio: by then the kernel tokens are done, and every
    denoising call processes the chunk tokens only, with the output of uncached sampling."""
    from asymk_talker.asymk_core import generation
    from asymk_talker.asymk_core.generation import SamplingSettings, make_chunk_denoiser
    from asymk_talker.asymk_core.kclg import ChunkPlan

    _, causal = _models()
    config = causal.config
    plan = ChunkPlan(4 * N * 3, N, TAU, 4)
    reference = torch.randn(1, config.latent_channels, TAU + N, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    kernel = torch.randn(1, config.latent_channels, TAU, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    features = torch.randn(4 * N, config.audio_window, config.audio_layers, config.audio_dim,
                           generator=torch.Generator().manual_seed(7))
    events = []

    class Audio:
        def windows(self, start, count):
            events.append("audio")
            return features[:count]

    def record(module, args, kwargs):  # frames given, and whether the kernel tokens were already cached
        events.append((args[0].shape[2], kwargs["kernel_cache"].filled))

    handle = causal.register_forward_pre_hook(record, with_kwargs=True)
    settings = SamplingSettings(sampler="distilled", num_inference_steps=3)
    try:
        cached = make_chunk_denoiser(causal, None, reference, Audio(), plan, settings,
                                     torch.Generator().manual_seed(1))(1, kernel)
    finally:
        handle.remove()
    assert events == [(TAU, False), "audio"] + [(TAU + N, True)] * 3
    monkeypatch.setattr(generation, "kernel_cache_for", lambda transformer: None)
    expected = make_chunk_denoiser(causal, None, reference, Audio(), plan, settings,
                                   torch.Generator().manual_seed(1))(1, kernel)
    torch.testing.assert_close(cached, expected, rtol=1e-4, atol=1e-5)
