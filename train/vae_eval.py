"""Score a trained synthetic VAE the way the pipeline uses it: the ceiling it puts on every model.

Held-out clips (identities and utterances never seen in training) are encoded
(``asymk_core.vae.encode_video``) and decoded by the pipeline's own ``StreamingDecoder``, latent frame
by latent frame. The reconstructions are scored with the corpus metrics next to the ground-truth
renders: lip sync of the reconstruction (probe mouth opening vs the true track, Pearson r), identity
distance to the portrait, PSNR over all frames and per segment of the clip. No generator can sync
better than its VAE reconstructs the mouth, so ``sync_pearson`` here is the ceiling for the teacher
and the student. ``psnr_steady`` (frames from 2 s on) shows whether the causal decoder holds up past
the clip length it was trained on. ``latent_seam_ratio`` is the jump between latent frames, the
floor of every model's chunk seams. ``still`` streams one frame of each clip, repeated, and scores
its region colours from 2 s on: the colour the causal caches settle on, with no motion to blame.
``fidelity`` is the windowed absolute report of ``asymk_core.eval.fidelity`` (PSNR, per-region
colour error against the ground truth, identity distance next to the ground truth's, per window
from the first second on); ``--variety wide`` scores identities of the wide appearance
distribution::

    python -m asymk_talker.train.vae_eval runs/vae-synthetic/vae --clips 4 --seconds 60 --out report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..asymk_core.errors import input_error
from ..asymk_core.eval.fidelity import REGION_NAMES, fidelity_report, format_fidelity, region_masks, region_means
from ..asymk_core.eval.metrics import boundary_ratio, evaluate_frames, frame_differences
from ..asymk_core.eval.probe import load_probe
from ..asymk_core.synthetic.corpus import random_sample
from ..asymk_core.vae import StreamingDecoder, encode_video, temporal_factor
from .data import video_tensor

STEADY_FROM_S = 2.0  # frames from here on are past every training clip length of the recipe


def _frames_uint8(video: torch.Tensor) -> np.ndarray:
    """``[3, F, H, W]`` in [-1, 1] -> ``[F, H, W, 3]`` uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def latent_seam_ratio(frames: np.ndarray, temporal: int) -> float | None:
    """Frame difference across the boundaries of the causal VAE's latent frames / inside them
    (:func:`asymk_core.eval.metrics.boundary_ratio`). Encoder latent ``i >= 1`` covers frames
    ``r i - r + 1 .. r i``, so the pairs ``(r i, r i + 1)`` cross a boundary. The ground truth gives
    about 1; a decoder that moves within a latent frame less than between them gives more, and
    every chunk boundary is also such a boundary, which makes this the floor of a model's chunk seams."""
    differences = frame_differences(frames)
    return boundary_ratio(differences, np.arange(len(differences)) % temporal == 0)["ratio"]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 (F = 1 + 4k) -> the streamed reconstruction, same shape."""
    latents = encode_video(vae, video_tensor(frames))
    decoder = StreamingDecoder(vae)
    video = torch.cat([decoder.decode(latents[:, :, i : i + 1]) for i in range(latents.shape[2])], dim=2)
    return _frames_uint8(video[0])


STILL_FRAMES = 81  # 3.2 s at 25 fps: the causal caches settle within about a second


def still_region_errors(vae, frame: np.ndarray, labels: np.ndarray, fps: float = 25.0) -> dict:
    """The steady state's colours without motion: ``frame`` ``[H, W, 3]`` uint8 repeated
    :data:`STILL_FRAMES` times and streamed through the VAE. Per region (eroded renderer ``labels``
    ``[H, W]``), the worst channel's |mean colour - the frame's| in 8-bit levels over the first
    second (``first_second``) and from ``STEADY_FROM_S`` on (``steady``); ``worst`` is the largest
    steady one. A VAE whose causal cache drifts shows it here even though nothing moves."""
    still = np.repeat(np.asarray(frame)[None], STILL_FRAMES, axis=0)
    recon = reconstruct(vae, still)
    masks = region_masks(np.asarray(labels))
    got, want = region_means(recon, masks), region_means(still[:1], masks)[0]  # [N, R, 3], [R, 3]
    steady_from = int(STEADY_FROM_S * fps)
    out = {"first_second": {}, "steady": {}}
    for index, name in enumerate(REGION_NAMES):
        if np.isnan(want[index]).any():
            continue
        for key, span in (("first_second", slice(0, int(fps))), ("steady", slice(steady_from, None))):
            out[key][name] = float(np.abs(got[span, index].mean(axis=0) - want[index]).max())
    out["worst"] = max(out["steady"].values(), default=None)
    return out


def evaluate_vae(vae, *, clips: int = 4, seconds: float = 8.0, fps: float = 25.0, size: int = 64,
                 seed: int = 0, variety: str = "classic") -> dict:
    """Metrics of ``clips`` held-out clips of ``seconds`` each; ``{"clips": [...], "mean": {...}}``.

    Each clip row also has ``fidelity`` (the windowed report), ``region_error_worst`` (8-bit levels,
    worst region and window), ``psnr_worst_window``, ``latent_seam_ratio`` (and the ground truth's:
    :func:`latent_seam_ratio`), ``decode_ms_per_frame`` (encode + streamed decode, wall time per
    frame on this machine) and ``still`` (:func:`still_region_errors` of the clip's first frame).
    """
    if clips < 1:
        raise input_error("clips", f"got {clips}", "evaluate at least one clip")
    factor = temporal_factor(vae)
    num_frames = 1 + factor * max(1, int(round(seconds * fps)) // factor)
    steady_from = int(STEADY_FROM_S * fps)
    probe = load_probe()
    rng = np.random.default_rng([seed, 0xE7A1])
    rows = []
    for _ in range(clips):
        sample = random_sample(rng, (num_frames + 0.5) / fps, split="heldout", size=size, fps=fps, variety=variety,
                               regions=True)
        truth = sample.frames[:num_frames]
        tracks = {k: np.asarray(v)[:num_frames] for k, v in sample.tracks.items()}
        started = time.perf_counter()
        recon = reconstruct(vae, truth)
        elapsed = time.perf_counter() - started
        scored = evaluate_frames(recon, tracks, sample.portrait, fps=fps, probe=probe)
        truth_scored = evaluate_frames(truth, tracks, sample.portrait, fps=fps, probe=probe)
        per_frame = [_psnr(r, t) for r, t in zip(recon, truth)]
        masks = region_masks(sample.regions[:num_frames])
        still = still_region_errors(vae, truth[0], sample.regions[0], fps)
        fidelity = fidelity_report(fps, region_colours=region_means(recon, masks),
                                   gt_region_colours=region_means(truth, masks), psnr=np.asarray(per_frame),
                                   identity=np.asarray(scored["series"]["identity_distance"]),
                                   identity_gt=np.asarray(truth_scored["series"]["identity_distance"]))
        rows.append({
            "sync_pearson": scored["sync"]["pearson"],
            "sync_pearson_ground_truth": truth_scored["sync"]["pearson"],
            "identity_distance": scored["identity"]["mean"],
            "psnr": _psnr(recon, truth),
            "psnr_first_second": float(np.mean(per_frame[: int(fps)])),
            "psnr_steady": float(np.mean(per_frame[steady_from:])) if len(per_frame) > steady_from else None,
            "psnr_worst_window": fidelity["worst"]["psnr"],
            "region_error_worst": fidelity["worst"].get("region_error"),
            "identity_distance_ground_truth": truth_scored["identity"]["mean"],
            "latent_seam_ratio": latent_seam_ratio(recon, factor),
            "latent_seam_ratio_ground_truth": latent_seam_ratio(truth, factor),
            "decode_ms_per_frame": 1000.0 * elapsed / num_frames,
            "still_region_error_worst": still["worst"],
            "fidelity": fidelity,
            "still": still,
        })
    keys = [k for k in rows[0] if k not in ("fidelity", "still")]
    mean = {k: float(np.mean([r[k] for r in rows if r[k] is not None])) if any(r[k] is not None for r in rows)
            else None for k in keys}
    worst = {"region_error": max((r["region_error_worst"] for r in rows if r["region_error_worst"] is not None),
                                 default=None),
             "psnr_window": min(r["psnr_worst_window"] for r in rows),
             "still_region_error": max((r["still_region_error_worst"] for r in rows
                                        if r["still_region_error_worst"] is not None), default=None)}
    return {"clips": rows, "mean": mean, "worst": worst, "num_frames": num_frames, "fps": fps, "size": size,
            "steady_from_frame": steady_from, "variety": variety}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Score a trained VAE on held-out synthetic clips.")
    parser.add_argument("vae", help="AutoencoderKLWan folder (e.g. runs/vae-synthetic/vae)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variety", default="classic", choices=["classic", "wide"],
                        help="appearance distribution of the held-out identities")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    from diffusers import AutoencoderKLWan

    path = Path(args.vae)
    if not (path / "config.json").is_file():
        raise SystemExit(f"error: vae: {path} is not a VAE folder (no config.json); "
                         "pass the folder train/vae.py wrote, e.g. runs/vae-synthetic/vae")
    vae = AutoencoderKLWan.from_pretrained(str(path)).eval()
    report = evaluate_vae(vae, clips=args.clips, seconds=args.seconds, seed=args.seed, variety=args.variety)
    report["vae"] = str(path)
    for key, value in report["mean"].items():
        print(f"{key:32s} {value:.3f}" if value is not None else f"{key:32s} -")
    for key, value in report["worst"].items():
        print(f"worst {key:26s} {value:.3f}" if value is not None else f"worst {key:26s} -")
    for index, row in enumerate(report["clips"]):
        print(f"clip {index}:")
        for line in format_fidelity(row["fidelity"]):
            print("  " + line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
