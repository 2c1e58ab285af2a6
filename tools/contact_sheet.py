"""Contact sheet: the portrait next to a video's frames at chosen times, as one PNG to look at.

    python tools/contact_sheet.py VIDEO.mp4 --portrait PORTRAIT.png --times 0 1 4 10 60 --out sheet.png

Several videos (one row each) can be compared: pass ``VIDEO`` more than once. Frames are scaled up
(nearest neighbour) so 64 px renders are readable; each tile is captioned with its time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from asymk_talker.asymk_core.video_io import read_video


def contact_sheet(videos: list[np.ndarray], fps: float, portrait: np.ndarray | None, times: list[float],
                  scale: int = 3, labels: list[str] | None = None) -> Image.Image:
    """``videos``: uint8 ``[N, H, W, 3]`` each -> one image, a row per video: portrait, then a frame per time."""
    h, w = videos[0].shape[1:3]
    tile_h, tile_w, caption = h * scale, w * scale, 14
    columns = len(times) + (portrait is not None)
    sheet = Image.new("RGB", (columns * tile_w, len(videos) * (tile_h + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, video in enumerate(videos):
        y = row * (tile_h + caption)
        tiles = [("portrait", portrait)] if portrait is not None else []
        tiles += [(f"{t:g} s", video[min(int(round(t * fps)), len(video) - 1)]) for t in times]
        for column, (name, frame) in enumerate(tiles):
            image = Image.fromarray(np.asarray(frame)).convert("RGB").resize((tile_w, tile_h), Image.Resampling.NEAREST)
            sheet.paste(image, (column * tile_w, y + caption))
            text = name if not labels or column else f"{labels[row]}: {name}"
            draw.text((column * tile_w + 2, y + 1), text, fill=(0, 0, 0))
    return sheet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="mp4 files (one row each)")
    parser.add_argument("--portrait", help="the input portrait, shown first in each row")
    parser.add_argument("--times", type=float, nargs="+", default=[0, 1, 4, 10, 60], help="seconds")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    decoded = [read_video(path) for path in args.videos]
    portrait = None
    if args.portrait:
        size = decoded[0][0].shape[1:3][::-1]
        portrait = np.asarray(Image.open(args.portrait).convert("RGB").resize(size, Image.Resampling.BILINEAR))
    sheet = contact_sheet([d[0] for d in decoded], decoded[0][1], portrait, args.times, args.scale,
                          [Path(p).stem for p in args.videos])
    sheet.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
