"""Transformer time per chunk: full kernel attention vs block-causal attention with the kernel cache.

Same weights, the distilled sampler's call pattern (``--steps`` transformer calls per chunk, one
guidance branch) on a ``[kernel | chunk]`` window of the model's latent size. Full attention runs
every call over ``tau + n`` frames; block-causal runs the first call over ``tau + n`` and the rest
over ``n`` (4 steps, tau = 3, n = 4: 19 instead of 28 frame-passes). ``after_audio`` times what is
left once a chunk's audio is known when the kernel tokens were computed before
(:func:`asymk_core.sampling.fill_kernel_cache`, as the chunk denoiser does): ``steps`` calls over
``n`` frames, the part on a live session's latency path::

    python benchmarks/kernel_attention.py --preset synthetic --steps 4 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch


@torch.no_grad()
def chunk_time(model, window, time_steps, reference, audio, kernel_frames: int, steps: int, cached: bool,
               prefilled: bool = False) -> float:
    """Seconds for one chunk's ``steps`` transformer calls (``prefilled``: after the kernel-only call, untimed)."""
    from asymk_talker.asymk_core.models.kernel_attention import KernelCache
    from asymk_talker.asymk_core.sampling import ChunkConditions, fill_kernel_cache

    cache = KernelCache() if cached else None
    if prefilled:
        fill_kernel_cache(model, ChunkConditions(window[:, :, :kernel_frames], reference, None, cache))
    started = time.perf_counter()
    for _ in range(steps):
        kwargs = {"kernel_cache": cache} if cached else {}
        model(window, time_steps, reference, audio, kernel_frames=kernel_frames, **kwargs)
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--kernel-frames", type=int, default=3)
    parser.add_argument("--chunk-frames", type=int, default=4)
    parser.add_argument("--latent-size", type=int, default=16, help="latent height = width (64 px / 4)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    from asymk_talker.asymk_core.models.transformer import AsymKTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    full = AsymKTransformer.from_preset(args.preset).eval()
    causal = AsymKTransformer.from_preset(args.preset, kernel_attention="block_causal").eval()
    causal.load_state_dict(full.state_dict())
    c, tau, n, s = full.config.latent_channels, args.kernel_frames, args.chunk_frames, args.latent_size
    window, reference = torch.randn(1, c, tau + n, s, s), torch.randn(1, c, tau + n, s, s)
    time_steps = torch.cat([torch.zeros(1, tau), torch.full((1, n), 500.0)], 1)
    cfg = full.config
    audio = torch.randn(1, n, 4, cfg.audio_window, cfg.audio_layers, cfg.audio_dim)
    results = {}
    variants = (("full", full, False, False), ("block_causal_cached", causal, True, False),
                ("block_causal_after_audio", causal, True, True))
    for name, model, cached, prefilled in variants:
        chunk_time(model, window, time_steps, reference, audio, tau, args.steps, cached, prefilled)  # warm-up
        times = sorted(chunk_time(model, window, time_steps, reference, audio, tau, args.steps, cached, prefilled)
                       for _ in range(args.repeats))
        results[name] = {"median_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0]}
    results["speedup_median"] = results["full"]["median_ms"] / results["block_causal_cached"]["median_ms"]
    results["speedup_after_audio"] = results["full"]["median_ms"] / results["block_causal_after_audio"]["median_ms"]
    results["frame_passes"] = {"full": args.steps * (tau + n), "block_causal_cached": tau + n + (args.steps - 1) * n,
                               "block_causal_after_audio": args.steps * n}
    results["settings"] = {"preset": args.preset, "steps": args.steps, "kernel_frames": tau, "chunk_frames": n,
                           "latent_size": s, "threads": torch.get_num_threads()}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
