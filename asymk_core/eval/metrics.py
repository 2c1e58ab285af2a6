"""Exact metrics for videos of the synthetic avatar, on arrays.

Inputs are frames uint8 [N, H, W, 3] (or float in [0, 1]; any size, the probe resizes to its
own), the ground-truth tracks of the clip (``mouth_open`` [N] from :mod:`..synthetic.speech`), the
reference portrait, and chunk boundaries (frame indices where a new chunk starts).

* sync — Pearson r and mean absolute error between the probe's mouth opening and the audio-
  determined ground truth, and the audio-visual offset in frames (±5 searched; positive = the video
  lags the audio) with its correlation;
* identity drift — 1 - cosine between each frame's identity embedding and the portrait's, averaged
  per 10 s and per minute, and its slope per minute (least-squares line over time);
* boundary jump — mean absolute frame difference across chunk boundaries divided by the mean
  absolute frame difference between other consecutive frames (1 = seamless);
* visual quality — per-frame PSNR (dB) and L1 (0..1 scale) against ground-truth renders;
* fidelity — the windowed absolute report of :mod:`.fidelity` (colour of each region against the
  ground truth and against the portrait, PSNR and identity per window, with flags).
"""

from __future__ import annotations

import numpy as np

from ..errors import input_error
from .fidelity import fidelity_report, region_masks, region_means
from .fidelity import portrait_regions as portrait_masks
from .probe import as_frames, load_probe


def pearson(a, b) -> float:
    """Pearson correlation of two equal-length vectors; 0.0 when either is constant."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def sync_metrics(predicted_open, true_open, *, max_offset: int = 5) -> dict:
    """Sync of predicted vs true mouth opening ([N] each, same frame timing).

    Returns ``pearson`` and ``mae`` at offset 0, ``offset`` (frames, positive = video late:
    ``predicted[t]`` matches ``true[t - offset]``), ``pearson_at_offset`` and the correlation at
    every tried offset (``by_offset``, keys ``-max_offset..max_offset``).
    """
    p = np.asarray(predicted_open, np.float64).reshape(-1)
    t = np.asarray(true_open, np.float64).reshape(-1)
    if len(p) != len(t):
        raise input_error("predicted_open", f"has {len(p)} frames but the ground truth has {len(t)}",
                          "pass equal lengths")
    by_offset = {}
    for d in range(-max_offset, max_offset + 1):
        if len(p) - abs(d) < 3:
            continue
        by_offset[d] = pearson(p[d:], t[:len(t) - d]) if d >= 0 else pearson(p[:d], t[-d:])
    best = max(by_offset, key=lambda d: (by_offset[d], -abs(d))) if by_offset else 0
    return {"pearson": pearson(p, t), "mae": float(np.abs(p - t).mean()), "offset": int(best),
            "pearson_at_offset": float(by_offset.get(best, 0.0)),
            "by_offset": {str(k): v for k, v in by_offset.items()}}


def rolling_pearson(predicted, true, window: int) -> np.ndarray:
    """Pearson r in consecutive non-overlapping windows of ``window`` frames: [ceil(N / window)]."""
    p, t = np.asarray(predicted), np.asarray(true)
    return np.array([pearson(p[i:i + window], t[i:i + window]) for i in range(0, len(p), window)])


def identity_drift(embeddings, reference_embedding, fps: float) -> dict:
    """Identity distance over time. ``embeddings`` [N, D] unit vectors, ``reference_embedding`` [D].

    Returns ``mean``, ``per_frame`` [N] (1 - cos), ``per_10s`` and ``per_minute`` bucket means,
    ``slope_per_minute`` (distance change per minute from a linear fit) and ``last_minus_first``
    (mean of the last 10 % of frames minus mean of the first 10 %).
    """
    e = np.asarray(embeddings, np.float64)
    r = np.asarray(reference_embedding, np.float64).reshape(-1)
    dist = 1.0 - (e @ r) / (np.linalg.norm(e, axis=1) * np.linalg.norm(r) + 1e-12)
    n = len(dist)
    minutes = np.arange(n) / float(fps) / 60.0
    slope = float(np.polyfit(minutes, dist, 1)[0]) if n >= 2 else 0.0
    tenth = max(1, n // 10)

    def buckets(seconds):
        size = max(1, int(round(seconds * fps)))
        return [float(dist[i:i + size].mean()) for i in range(0, n, size)]

    return {"mean": float(dist.mean()), "slope_per_minute": slope, "per_10s": buckets(10), "per_minute": buckets(60),
            "last_minus_first": float(dist[-tenth:].mean() - dist[:tenth].mean()), "per_frame": dist.astype(np.float32)}


def frame_differences(frames) -> np.ndarray:
    """Mean absolute difference of consecutive frames (uint8 ``[N, H, W, 3]``), on a 0..1 scale:
    ``[N - 1]``, entry ``t - 1`` = ``|f[t] - f[t-1]|``."""
    f = np.asarray(frames, np.float32) / 255.0
    return np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3)) if len(f) > 1 else np.zeros(0, np.float32)


def boundary_ratio(differences, across_boundary) -> dict:
    """``ratio`` = mean of ``differences`` where ``across_boundary`` / mean elsewhere (both ``[N - 1]``
    as from :func:`frame_differences`); None without pairs of either kind."""
    diffs = np.asarray(differences, np.float64)
    mask = np.asarray(across_boundary, bool)
    if not mask.any() or mask.all():
        return {"ratio": None, "across": None, "inside": None, "num_boundaries": int(mask.sum())}
    across, inside = float(diffs[mask].mean()), float(diffs[~mask].mean())
    return {"ratio": across / max(inside, 1e-8), "across": across, "inside": inside, "num_boundaries": int(mask.sum())}


def boundary_jump(frames, boundaries) -> dict:
    """Seam visibility at chunk boundaries. ``boundaries``: frame indices where a chunk starts
    (0 and indices >= N are ignored). ``ratio`` = mean |f[b] - f[b-1]| over boundaries / the same
    over all other consecutive pairs (None without boundaries or without other pairs)."""
    f = as_frames(frames, "frames")
    n = len(f)
    if n < 2:
        return {"ratio": None, "across": None, "inside": None, "num_boundaries": 0}
    b = sorted({int(x) for x in np.asarray(boundaries if boundaries is not None else [], dtype=np.int64).reshape(-1)
                if 0 < int(x) < n})
    mask = np.zeros(n - 1, bool)
    mask[np.array(b, dtype=np.int64) - 1] = True
    return boundary_ratio(frame_differences(f), mask)


def visual_quality(frames, reference_frames) -> dict:
    """Per-frame PSNR (dB, capped at 100) and L1 (mean abs difference, 0..1) vs reference frames.
    Frames of another size are resized (bilinear) to the reference size first."""
    f = as_frames(frames, "frames")
    ref = as_frames(reference_frames, "reference_frames")
    n = min(len(f), len(ref))
    f, ref = f[:n], ref[:n]
    if f.shape[1:3] != ref.shape[1:3]:
        f = _resize(f, ref.shape[1:3])
    err = f.astype(np.float32) / 255.0 - ref.astype(np.float32) / 255.0
    mse = (err ** 2).mean(axis=(1, 2, 3))
    psnr = np.minimum(10 * np.log10(1.0 / np.maximum(mse, 1e-10)), 100.0)
    l1 = np.abs(err).mean(axis=(1, 2, 3))
    return {"psnr": float(psnr.mean()), "l1": float(l1.mean()), "per_frame_psnr": psnr.astype(np.float32),
            "per_frame_l1": l1.astype(np.float32)}


def _resize(frames: np.ndarray, size) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def evaluate_frames(frames, gt_tracks: dict, reference_image, chunk_boundaries=None, *, fps: float = 25.0,
                    gt_frames=None, probe=None, max_offset: int = 5, gt_regions=None, portrait_regions=None,
                    psnr_floor: float | None = None, identity_limit: float | None = None) -> dict:
    """All metrics for one video.

    ``frames`` [N, H, W, 3] (uint8 or float in [0, 1]); ``gt_tracks`` with ``mouth_open`` [N]
    (and optionally ``mouth_width``); ``reference_image`` [H, W, 3] (the portrait the video was made
    from); ``chunk_boundaries`` frame indices; ``gt_frames`` optional ground-truth renders for
    visual quality; ``probe`` defaults to the shipped one. If the video and the track differ in
    length, both are cut to the shorter (``num_frames`` reports it). Returns a JSON-ready dict with
    per-frame ``series`` for plotting.
    """
    probe = probe or load_probe()
    frames = as_frames(frames, "frames")
    true_open = np.asarray(gt_tracks["mouth_open"], np.float32).reshape(-1)
    n = min(len(frames), len(true_open))
    if n < 2:
        raise input_error("frames", f"has {len(frames)} frames for a {len(true_open)}-frame track",
                          "pass a video of at least 2 frames")
    frames = frames[:n]
    pred = probe.predict(frames)
    ref_emb = probe.predict(as_frames(reference_image, "reference_image"))["embedding"][0]
    sync = sync_metrics(pred["mouth_open"], true_open[:n], max_offset=max_offset)
    if "mouth_width" in gt_tracks:
        sync["width_pearson"] = pearson(pred["mouth_width"], np.asarray(gt_tracks["mouth_width"])[:n])
    drift = identity_drift(pred["embedding"], ref_emb, fps)
    window = max(3, int(round(2 * fps)))
    result = {
        "num_frames": int(n), "fps": float(fps), "seconds": n / float(fps),
        "sync": sync,
        "identity": {k: v for k, v in drift.items() if k != "per_frame"},
        "boundary": boundary_jump(frames, chunk_boundaries),
        "series": {
            "time_s": (np.arange(n) / float(fps)).tolist(),
            "identity_distance": drift["per_frame"].tolist(),
            "mouth_open_pred": pred["mouth_open"].tolist(),
            "mouth_open_true": true_open[:n].tolist(),
            "sync_window_s": window / float(fps),
            "sync_pearson_windows": rolling_pearson(pred["mouth_open"], true_open[:n], window).tolist(),
        },
    }
    fidelity_inputs = {"identity": drift["per_frame"]}
    if gt_frames is not None:
        quality = visual_quality(frames, gt_frames)
        result["quality"] = {"psnr": quality["psnr"], "l1": quality["l1"]}
        result["series"]["psnr"] = quality["per_frame_psnr"].tolist()
        fidelity_inputs["psnr"] = quality["per_frame_psnr"]
        if gt_regions is not None:
            truth = as_frames(gt_frames, "gt_frames")[:n]
            masks = region_masks(np.asarray(gt_regions)[:n])
            if truth.shape[1:3] == frames.shape[1:3] == masks.shape[-2:]:
                fidelity_inputs.update(region_colours=region_means(frames, masks),
                                       gt_region_colours=region_means(truth, masks))
    portrait = as_frames(reference_image, "reference_image")[0]
    if portrait.shape[:2] == frames.shape[1:3]:
        masks = portrait_masks(portrait, portrait_regions)
        fidelity_inputs.update(portrait_colours=region_means(frames, masks),
                               portrait_reference=region_means(portrait[None], masks)[0])
    result["fidelity"] = fidelity_report(fps, psnr_floor=psnr_floor, identity_limit=identity_limit, **fidelity_inputs)
    return result


def summarize(results: list[dict]) -> dict:
    """Mean of the headline numbers over clips (None entries skipped)."""
    keys = {"sync_pearson": ("sync", "pearson"), "sync_mae": ("sync", "mae"), "sync_offset": ("sync", "offset"),
            "identity_distance": ("identity", "mean"), "identity_slope_per_minute": ("identity", "slope_per_minute"),
            "boundary_ratio": ("boundary", "ratio"), "psnr": ("quality", "psnr"), "l1": ("quality", "l1"),
            "region_error_worst": ("fidelity_worst", "region_error"),
            "portrait_error_worst": ("fidelity_worst", "portrait_error"),
            "psnr_worst_window": ("fidelity_worst", "psnr")}
    results = [dict(r, fidelity_worst=r.get("fidelity", {}).get("worst", {})) for r in results]
    out = {"clips": len(results)}
    for name, (a, b) in keys.items():
        values = [r[a][b] for r in results if a in r and r[a].get(b) is not None]
        if values:
            out[name] = float(np.mean(values))
    out["fidelity_flagged_clips"] = sum(1 for r in results if r.get("fidelity", {}).get("flagged"))
    return out
