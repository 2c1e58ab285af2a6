"""Evaluate a talking-head model on synthetic clips whose ground truth is exact.

For each clip the model gets the identity's neutral portrait and the clip's speech; its video is
scored by :func:`..eval.metrics.evaluate_frames` against the clip's tracks and renders. Pass
``model="ground-truth"`` to score the ground-truth renders themselves (the ceiling; no model).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import input_error
from ..synthetic.corpus import ClipSpec, split_seed
from ..synthetic.speech import derive_seed

GROUND_TRUTH = "ground-truth"
EVAL_SPLITS = ("heldout", "heldout_identity", "heldout_utterance", "train")


def evaluation_clips(split: str, identities: int, seconds: float, *, size: int = 64, fps: float = 25.0,
                     seed: int = 0) -> list[ClipSpec]:
    """One clip per identity. ``heldout``/``heldout_identity``: unseen identity and utterance (odd
    seeds); ``heldout_utterance``: a training-pool identity with an unseen utterance; ``train``:
    training-pool identity and a train-seed utterance."""
    if split not in EVAL_SPLITS:
        raise input_error("split", f"got {split!r}", f"use one of {', '.join(EVAL_SPLITS)}")
    if not isinstance(identities, int) or identities < 1:
        raise input_error("identities", f"got {identities!r}", "pass a positive number of identities")
    clips = []
    for i in range(identities):
        if split in ("heldout", "heldout_identity"):
            ident = split_seed("identity", "eval", seed, i, heldout=True)
        else:
            ident = split_seed("identity", "pool", seed * 1000 + i)
        utt = split_seed("utterance", "eval", seed, i, heldout=split != "train")
        clips.append(ClipSpec(identity=f"eval{i:03d}", identity_seed=ident, utterance=f"utt{seed:03d}",
                              utterance_seed=utt,
                              motion_seed=derive_seed("motion", ident, utt), split=split, seconds=float(seconds),
                              fps=float(fps), size=int(size)))
    return clips


def generate_with_pipeline(pipe, portrait: np.ndarray, audio: np.ndarray, *, sample_rate: int = 16000, seed: int = 0,
                           **kwargs) -> tuple[np.ndarray, list[int]]:
    """Run ``pipe.stream`` on a portrait (uint8 [H, W, 3]) and audio (float32 [T]); returns
    (frames uint8 [N, H, W, 3], chunk start frame indices)."""
    from PIL import Image

    from ..seeds import seeded_generator

    generator = seeded_generator(seed)  # every bit of the seed counts; outside 0..2**64 - 1: refused
    frames, starts = [], []
    for chunk in pipe.stream(Image.fromarray(portrait), audio, sample_rate=sample_rate, generator=generator, **kwargs):
        starts.append(int(chunk.start_frame))
        frames.append(np.clip(np.round(np.asarray(chunk.frames, np.float32) * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(frames), starts


def evaluate_model(model, *, split: str = "heldout", seconds: float = 10.0, identities: int = 4, seed: int = 0,
                   out_dir=None, probe=None, num_inference_steps: int | None = None, name: str | None = None,
                   progress: bool = True, chunk_starts: list[list[int]] | None = None) -> dict:
    """Score a model (a loaded ``AsymKPipeline``, or ``"ground-truth"``); ``name`` labels it in the
    report (default: the class name). Each clip's result holds its ``chunk_starts`` (frame indices);
    ``chunk_starts`` (ground truth only): a model's, per clip, so the truth's frame changes are
    measured at the same seams (without it the truth has no seams and no boundary ratio).

    Frame size and fps come from the pipeline config (64 px / 25 fps for ground truth). Returns
    ``{"model", "split", "summary", "clips": [...]}``; with ``out_dir`` also writes ``eval.json``
    and ``eval.png`` there (:func:`.report.write_report`).
    """
    from tqdm.auto import tqdm

    from .metrics import evaluate_frames, summarize

    pipe = None
    size, fps = 64, 25.0
    if isinstance(model, str) and model == GROUND_TRUTH:
        name = GROUND_TRUTH
    else:
        if isinstance(model, str) or hasattr(model, "__fspath__"):
            raise input_error("model", f"got the path {str(model)!r}",
                              "pass a loaded pipeline: AsymKPipeline.from_pretrained(path)", kind=TypeError)
        pipe, name = model, name or type(model).__name__
        pipe.set_progress_bar_config(disable=True)
        size, fps = int(pipe.config.height), float(pipe.config.fps)
        if int(pipe.config.width) != size:
            raise input_error("model", f"generates {pipe.config.width}x{size} frames",
                              "evaluate a model with square frames (the avatar renders are square)")
    results = []
    for clip in tqdm(evaluation_clips(split, identities, seconds, size=size, fps=fps, seed=seed), desc="eval",
                     unit="clip", disable=not progress):
        sample = clip.sample(regions=True)
        started = time.perf_counter()
        if pipe is None:
            frames, starts = sample.frames, [0] if chunk_starts is None else list(chunk_starts[len(results)])
        else:
            frames, starts = generate_with_pipeline(pipe, sample.portrait, sample.audio, seed=seed,
                                                    num_inference_steps=num_inference_steps)
        elapsed = time.perf_counter() - started
        r = evaluate_frames(frames, sample.tracks, sample.portrait, starts, fps=fps, gt_frames=sample.frames,
                            probe=probe, gt_regions=sample.regions, portrait_regions=sample.portrait_regions)
        r.update(name=f"{clip.identity}/{clip.utterance}", identity_seed=clip.identity_seed,
                 utterance_seed=clip.utterance_seed, generation_fps=len(frames) / max(elapsed, 1e-9),
                 chunk_starts=[int(start) for start in starts])
        results.append(r)
    out = {"title": f"{name} on {split} ({identities} x {seconds:g} s)", "model": name, "split": split,
           "seconds": seconds, "identities": identities, "seed": seed, "summary": summarize(results), "clips": results}
    if out_dir is not None:
        from .report import write_report

        write_report(out, out_dir)
    return out
