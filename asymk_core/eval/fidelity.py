"""Absolute fidelity over time: does the video still look like the portrait, window by window?

Every number here is measured against something fixed (the ground-truth render or the portrait
itself), never against the video's own beginning, so a video that is wrong from second 4 on reads
as wrong from second 4 on.

Windows (:func:`time_windows`): 0-1 s, 1-4 s, 4-10 s, 10-60 s, then each further minute.

Per window:

* ``region_error`` — for each region of :data:`REGION_NAMES` (labels from the renderer, eroded by
  ``margin`` pixels so a head a pixel or two off does not count), the largest per-channel
  difference, in 8-bit levels, between the region's mean colour in the video and in the ground
  truth (both averaged over the window);
* ``portrait_error`` — the same for ``background`` and ``clothes`` against the portrait alone (any
  image: without renderer labels the regions are the top corners and the bottom centre, see
  :func:`portrait_regions`);
* ``psnr`` against the ground truth, and ``identity`` / ``identity_gt``: the identity distance of
  the video and of the ground truth to the portrait (means over the window).

A window is *flagged* when a colour error exceeds its threshold (:data:`THRESHOLDS`) or the PSNR is
below ``psnr_floor`` (when given) or the identity distance exceeds ``identity_limit`` (when given).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import input_error
from .probe import as_frames

REGION_NAMES = ("background", "clothes", "skin", "hair", "mouth")
"""Scored regions, with the codes of ``synthetic.avatar.REGIONS`` (0..4)."""
PORTRAIT_REGIONS = ("background", "clothes")
THRESHOLDS = {"region_error": 4.0, "portrait_error": 6.0}
"""Largest accepted colour error in 8-bit levels: against ground truth, and against the portrait."""
MARGINS = {"background": 3, "clothes": 3, "skin": 2, "hair": 3, "mouth": -2}
"""Erosion of each region mask in pixels, so a head a pixel or two off its ground-truth position
still measures the right colours. The mouth is too small to erode: its mask is *dilated* by 2 px
instead (lips, inner mouth and the skin around them), which a small shift does not change much."""


def time_windows(num_frames: int, fps: float, window_seconds: float | None = None) -> list[dict]:
    """The report windows that start before the video ends: ``[{"name", "start_s", "stop_s",
    "start", "stop"}]`` (frames ``[start, stop)``, the last window cut at the video's end).
    ``window_seconds`` replaces the standard windows by equal ones of that length."""
    seconds = num_frames / float(fps)
    if window_seconds:
        edges = list(np.arange(0.0, seconds, float(window_seconds))) + [seconds]
        return [{"name": f"{a:g}-{b:g} s", "start_s": float(a), "stop_s": float(b), "start": int(round(a * fps)),
                 "stop": min(int(round(b * fps)), num_frames)} for a, b in zip(edges[:-1], edges[1:])]
    edges = [0.0, 1.0, 4.0, 10.0, 60.0]
    while edges[-1] < seconds:
        edges.append(edges[-1] + 60.0)
    windows = []
    for a, b in zip(edges[:-1], edges[1:]):
        start, stop = int(round(a * fps)), min(int(round(b * fps)), num_frames)
        if start >= num_frames:
            break
        if windows and stop - start < fps:  # a last sliver (under a second) joins the window before
            windows[-1].update(stop=stop, stop_s=seconds)
            break
        name = f"{a:g}-{b:g} s" if b <= 60 else f"minute {int(b // 60)}"
        windows.append({"name": name, "start_s": a, "stop_s": min(b, seconds), "start": start, "stop": stop})
    return windows


def _eroded(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` eroded by ``margin`` px (dilated by ``-margin`` when negative; unchanged if erosion empties it)."""
    if margin < 0:
        return ndimage.binary_dilation(mask, iterations=-margin)
    if margin == 0 or not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, iterations=margin, border_value=1)
    return eroded if eroded.any() else mask


def region_masks(labels: np.ndarray, names=REGION_NAMES) -> np.ndarray:
    """``labels`` uint8 ``[..., H, W]`` (``avatar.REGIONS`` codes) -> bool ``[..., R, H, W]`` eroded by :data:`MARGINS`."""
    from ..synthetic.avatar import REGIONS

    labels = np.asarray(labels)
    flat = labels.reshape(-1, *labels.shape[-2:])
    masks = np.stack([[_eroded(plane == REGIONS[name], MARGINS[name]) for name in names] for plane in flat])
    return masks.reshape(*labels.shape[:-2], len(names), *labels.shape[-2:])


def portrait_regions(portrait: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Masks bool ``[2, H, W]`` of :data:`PORTRAIT_REGIONS` for a portrait ``[H, W, 3]``.

    With renderer ``labels`` ``[H, W]`` they are the eroded background and clothes (eroded 3 px more,
    so head sway stays outside). Without (any user image), the background is the two top corner
    squares (a fifth of the width each) and the clothes the bottom twelfth of the central 40 %:
    where a head-and-shoulders portrait has them.
    """
    h, w = np.asarray(portrait).shape[:2]
    if labels is not None:
        from ..synthetic.avatar import REGIONS

        return np.stack([_eroded(np.asarray(labels) == REGIONS[name], MARGINS[name] + 3) for name in PORTRAIT_REGIONS])
    masks = np.zeros((2, h, w), bool)
    side = max(1, w // 5)
    masks[0, :side, :side] = masks[0, :side, w - side:] = True
    masks[1, h - max(1, h // 12):, int(0.3 * w):int(0.7 * w) + 1] = True
    return masks


def region_means(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean colour (0..255) of each region in each frame: ``frames`` ``[N, H, W, 3]`` (uint8, or float
    in [0, 1]), ``masks`` bool
    ``[N, R, H, W]`` or ``[R, H, W]`` (the same for every frame) -> float ``[N, R, 3]`` (NaN where a
    mask is empty)."""
    f = as_frames(frames, "frames").astype(np.float32)
    m = np.asarray(masks, bool)
    if m.ndim == 3:
        m = np.broadcast_to(m, (len(f), *m.shape))
    if m.shape[0] != len(f) or m.shape[-2:] != f.shape[1:3]:
        raise input_error("masks", f"shape {m.shape} does not fit frames {f.shape}", "pass masks [N, R, H, W] or [R, H, W]")
    weights = m.astype(np.float32)
    counts = weights.sum(axis=(2, 3))  # [N, R]
    sums = np.einsum("nrhw,nhwc->nrc", weights, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[..., None]


def _window_error(a: np.ndarray, b: np.ndarray) -> float | None:
    """Largest per-channel |mean(a) - mean(b)| of per-frame colours ``[n, 3]`` (NaN frames skipped)."""
    a, b = a[~np.isnan(a).any(1)], b[~np.isnan(b).any(1)]
    if not len(a) or not len(b):
        return None
    return float(np.abs(a.mean(0) - b.mean(0)).max())


def fidelity_report(fps: float, *, region_colours: np.ndarray | None = None,
                    gt_region_colours: np.ndarray | None = None, portrait_colours: np.ndarray | None = None,
                    portrait_reference: np.ndarray | None = None, psnr: np.ndarray | None = None,
                    identity: np.ndarray | None = None, identity_gt: np.ndarray | None = None,
                    psnr_floor: float | None = None, identity_limit: float | None = None,
                    window_seconds: float | None = None) -> dict:
    """The windowed report from per-frame measurements (any may be omitted).

    ``region_colours`` / ``gt_region_colours`` ``[N, 5, 3]`` (:func:`region_means` of the video and
    of the ground truth with the ground truth's masks); ``portrait_colours`` ``[N, 2, 3]`` (the video
    in :func:`portrait_regions`) and ``portrait_reference`` ``[2, 3]`` (the portrait in the same
    masks); ``psnr`` ``[N]`` dB; ``identity`` / ``identity_gt`` ``[N]`` distances to the portrait;
    ``window_seconds``: equal windows instead of the standard ones.
    Returns ``{"windows": [...], "worst": {...}, "flagged": [window names], "passed": bool,
    "thresholds": {...}}``.
    """
    lengths = [len(x) for x in (region_colours, portrait_colours, psnr, identity) if x is not None]
    if not lengths:
        raise input_error("fidelity_report", "nothing to report", "pass region colours, portrait colours or psnr")
    n = min(lengths)
    windows = []
    for window in time_windows(n, fps, window_seconds):
        sl = slice(window["start"], window["stop"])
        row = {"window": window["name"], "start_s": window["start_s"], "stop_s": window["stop_s"]}
        flags = []
        if region_colours is not None and gt_region_colours is not None:
            errors = {name: _window_error(region_colours[sl, i], gt_region_colours[sl, i])
                      for i, name in enumerate(REGION_NAMES)}
            row["region_error"] = errors
            flags += [f"{name} colour {e:.1f} > {THRESHOLDS['region_error']:g}" for name, e in errors.items()
                      if e is not None and e > THRESHOLDS["region_error"]]
        if portrait_colours is not None and portrait_reference is not None:
            reference = np.asarray(portrait_reference, np.float64)
            errors = {name: _window_error(portrait_colours[sl, i], reference[i][None])
                      for i, name in enumerate(PORTRAIT_REGIONS)}
            row["portrait_error"] = errors
            flags += [f"{name} vs portrait {e:.1f} > {THRESHOLDS['portrait_error']:g}" for name, e in errors.items()
                      if e is not None and e > THRESHOLDS["portrait_error"]]
        if psnr is not None:
            row["psnr"] = float(np.mean(psnr[sl]))
            if psnr_floor is not None and row["psnr"] < psnr_floor:
                flags.append(f"psnr {row['psnr']:.1f} < {psnr_floor:.1f} dB")
        if identity is not None:
            row["identity"] = float(np.mean(identity[sl]))
            if identity_limit is not None and row["identity"] > identity_limit:
                flags.append(f"identity {row['identity']:.3f} > {identity_limit:.3f}")
        if identity_gt is not None:
            row["identity_gt"] = float(np.mean(identity_gt[sl]))
        row["flags"] = flags
        windows.append(row)
    worst = {}
    for key in ("region_error", "portrait_error"):
        values = [e for w in windows for e in w.get(key, {}).values() if e is not None]
        if values:
            worst[key] = max(values)
    if psnr is not None:
        worst["psnr"] = min(w["psnr"] for w in windows)
    if identity is not None:
        worst["identity"] = max(w["identity"] for w in windows)
    flagged = [w["window"] for w in windows if w["flags"]]
    return {"windows": windows, "worst": worst, "flagged": flagged, "passed": not flagged,
            "thresholds": {**THRESHOLDS, "psnr_floor": psnr_floor, "identity_limit": identity_limit}}


def format_fidelity(report: dict) -> list[str]:
    """Human-readable lines, one per window: worst colour errors, PSNR, identity, and the flags."""
    lines = []
    for w in report["windows"]:
        parts = [f"{w['window']:>10}"]
        if "region_error" in w:
            values = [v for v in w["region_error"].values() if v is not None]
            worst = max(w["region_error"], key=lambda k: -1 if w["region_error"][k] is None else w["region_error"][k])
            parts.append(f"colour vs truth {max(values):5.1f} ({worst})" if values else "colour vs truth   n/a")
        if "portrait_error" in w:
            values = [v for v in w["portrait_error"].values() if v is not None]
            parts.append(f"vs portrait {max(values):5.1f}" if values else "vs portrait   n/a")
        if "psnr" in w:
            parts.append(f"psnr {w['psnr']:5.1f} dB")
        if "identity" in w:
            parts.append(f"identity {w['identity']:.3f}" + (f" (truth {w['identity_gt']:.3f})" if "identity_gt" in w else ""))
        parts.append("FLAG: " + "; ".join(w["flags"]) if w["flags"] else "ok")
        lines.append("  ".join(parts))
    return lines
