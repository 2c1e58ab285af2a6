"""Evaluation report: results as JSON plus a PNG plot (drawn with PIL) of drift and sync over time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def write_report(results: dict, out_dir, name: str = "eval") -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.json`` and ``<out_dir>/<name>.png``.

    ``results``: ``{"summary": {...}, "clips": [per-clip dicts from evaluate_frames, each with a
    "name"], ...}``. Per-frame ``series`` go to the plot and are dropped from the JSON except for
    the bucketed values. Both files are written via temp + rename. Returns their paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = results.get("clips", [])
    slim = dict(results)
    slim["clips"] = [{k: v for k, v in c.items() if k != "series"} for c in clips]
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(slim), indent=2) + "\n")
    os.replace(tmp, json_path)
    image = plot_results(clips, title=results.get("title", name))
    tmp = png_path.with_name(png_path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, png_path)
    return json_path, png_path


def plot_results(clips: list[dict], title: str = "", width: int = 900, panel_height: int = 260):
    """A PIL image with two panels over time (s): identity distance (1 - cos, smoothed over 1 s)
    and sync (windowed Pearson r of predicted vs true mouth opening), one line per clip."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, 2 * panel_height + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black")
    drift, sync = [], []
    for i, clip in enumerate(clips):
        s = clip.get("series")
        if not s:
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        t = np.asarray(s["time_s"])
        d = np.asarray(s["identity_distance"])
        k = max(1, int(round(clip.get("fps", 25))))
        smooth = np.convolve(d, np.ones(k), mode="same") / np.convolve(np.ones_like(d), np.ones(k), mode="same")
        drift.append((t, smooth, colour, clip.get("name", str(i))))
        w = s["sync_window_s"]
        r = np.asarray(s["sync_pearson_windows"])
        sync.append(((np.arange(len(r)) + 0.5) * w, r, colour, clip.get("name", str(i))))
    t_max = max([c.get("seconds", 0.0) for c in clips] + [1e-3])
    _panel(draw, (0, 30, width, 30 + panel_height), drift, "identity distance to the portrait (1 - cos)", None, t_max)
    _panel(draw, (0, 30 + panel_height, width, 30 + 2 * panel_height), sync,
           "sync: Pearson r of mouth opening per window", (-0.2, 1.0), t_max)
    return image


def _panel(draw, box, series, title, y_range, t_max):
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 60, x1 - 150, y0 + 22, y1 - 30
    draw.text((left, y0 + 4), title, fill="black")
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    if not series:
        draw.text((left + 10, top + 10), "no data", fill="gray")
        return
    if y_range is None:
        lo = min(float(np.min(s[1])) for s in series if len(s[1]))
        hi = max(float(np.max(s[1])) for s in series if len(s[1]))
        lo, hi = min(lo, 0.0), max(hi, lo + 1e-3) * 1.1
    else:
        lo, hi = y_range

    def xy(t, v):
        return (left + (right - left) * t / t_max, bottom - (bottom - top) * (np.clip(v, lo, hi) - lo) / (hi - lo))

    for frac in np.linspace(0, 1, 5):
        v = lo + frac * (hi - lo)
        _, y = xy(0, v)
        draw.line((left, y, right, y), fill=(230, 230, 230))
        draw.text((x0 + 4, y - 6), f"{v:.3g}", fill="black")
        t = frac * t_max
        x, _ = xy(t, lo)
        draw.text((x - 8, bottom + 6), f"{t:.0f}s" if t_max >= 5 else f"{t:.1f}s", fill="black")
    for j, (t, v, colour, label) in enumerate(series):
        if len(t) >= 2:
            draw.line([xy(a, b) for a, b in zip(t, v)], fill=colour, width=2)
        elif len(t) == 1:
            x, y = xy(t[0], v[0])
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        if j < 12:
            draw.line((right + 10, top + 8 + 14 * j, right + 30, top + 8 + 14 * j), fill=colour, width=3)
            draw.text((right + 34, top + 2 + 14 * j), str(label)[:16], fill="black")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
