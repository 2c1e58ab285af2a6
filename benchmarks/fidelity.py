"""Identity-fidelity benchmark: does a model keep the portrait's colours over a long video?

For each subject — held-out generator identities (``classic`` and ``wide`` appearance) and cartoons
drawn with PIL outside the renderer (:mod:`asymk_core.eval.cartoons`) — one video of ``--seconds``
of held-out synthetic speech is generated with ``pipe.stream`` and scored chunk by chunk (frames are
dropped once scored, except those of the contact sheet):

* every subject: background and clothes colour against the portrait, per 5 s window and per
  standard window (:mod:`asymk_core.eval.fidelity`);
* generator identities also: per-region colour error and PSNR against the ground-truth render.

Writes ``fidelity.json`` and ``sheet.png`` (portrait, then frames at 0, 1, 4, 10 and 60 s, and the
last frame of a longer video; one row per subject) to ``--out`` and prints one line per subject::

    python benchmarks/fidelity.py --model models/asymk-synthetic --seconds 60 --identities 2 --cartoons 3 \\
        --out benchmarks/results/fidelity
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHEET_TIMES = (0.0, 1.0, 4.0, 10.0, 60.0)
PORTRAIT_WINDOW_S = 5.0


def sheet_times(seconds: float) -> tuple[float, ...]:
    """Contact-sheet times (s): :data:`SHEET_TIMES`, then the end of a video longer than the last."""
    return SHEET_TIMES + ((float(seconds),) if seconds > SHEET_TIMES[-1] else ())


def subjects(identities: int, cartoons: int, seconds: float, size: int, fps: float):
    """``(name, portrait uint8 [H, W, 3], speech float32 16 kHz, ground-truth Sample or None)`` per subject."""
    from asymk_talker.asymk_core.eval.cartoons import draw_cartoon
    from asymk_talker.asymk_core.synthetic.corpus import make_sample, split_seed
    from asymk_talker.asymk_core.synthetic.speech import synthesize_speech, voice_for_seed

    for variety in ("classic", "wide"):
        for i in range(identities):
            identity = split_seed("identity", "fidelity", variety, i, heldout=True)
            utterance = split_seed("utterance", "fidelity", i, heldout=True)
            sample = make_sample(identity, utterance, seconds, size=size, fps=fps, variety=variety, regions=True)
            yield f"{variety}{i}", sample.portrait, sample.audio, sample
    for i in range(cartoons):
        utterance = split_seed("utterance", "fidelity-cartoon", i, heldout=True)
        audio, _ = synthesize_speech(utterance, seconds, voice=voice_for_seed(utterance))
        yield f"cartoon{i}", draw_cartoon(i, size).image, audio, None


def score_subject(pipe, portrait, audio, sample, fps: float, seed: int = 0, times=SHEET_TIMES) -> dict:
    """Generate and score one subject; returns the report dict plus ``sheet_frames``."""
    import torch
    from PIL import Image

    from asymk_talker.asymk_core.eval.fidelity import (
        fidelity_report, portrait_regions, region_masks, region_means,
    )

    masks = portrait_regions(portrait, None if sample is None else sample.portrait_regions)
    reference = region_means(portrait[None], masks)[0]
    portrait_colours, gen_colours, gt_colours, psnr = [], [], [], []
    sheet = {}
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for chunk in pipe.stream(Image.fromarray(portrait), audio, sample_rate=16000, generator=generator):
        frames = np.clip(np.round(np.asarray(chunk.frames, np.float32) * 255.0), 0, 255).astype(np.uint8)
        start = int(chunk.start_frame)
        portrait_colours.append(region_means(frames, masks))
        if sample is not None:
            truth = sample.frames[start:start + len(frames)]
            gt_masks = region_masks(sample.regions[start:start + len(frames)])
            gen_colours.append(region_means(frames, gt_masks))
            gt_colours.append(region_means(truth, gt_masks))
            mse = ((frames.astype(np.float32) - truth) ** 2).mean(axis=(1, 2, 3)) / 255.0**2
            psnr.append(10 * np.log10(1.0 / np.maximum(mse, 1e-10)))
        total = int(chunk.num_frames)
        for t in times:  # a time at the very end (60 s of a 60 s video) shows the last frame
            index = min(int(round(t * fps)), total - 1)
            if t <= total / fps and start <= index < start + len(frames):
                sheet[t] = frames[index - start]
    elapsed = time.perf_counter() - started
    inputs = {"portrait_colours": np.concatenate(portrait_colours), "portrait_reference": reference}
    if sample is not None:
        inputs.update(region_colours=np.concatenate(gen_colours), gt_region_colours=np.concatenate(gt_colours),
                      psnr=np.concatenate(psnr))
    num_frames = len(inputs["portrait_colours"])
    return {"num_frames": num_frames, "generation_fps": num_frames / max(elapsed, 1e-9),
            "standard": fidelity_report(fps, **inputs),
            "per_5s": fidelity_report(fps, window_seconds=PORTRAIT_WINDOW_S, **{
                k: v for k, v in inputs.items() if k.startswith("portrait")}),
            "sheet_frames": sheet}


def write_sheet(path: Path, rows: list[tuple[str, np.ndarray, dict]], scale: int = 3, times=SHEET_TIMES) -> None:
    from PIL import Image, ImageDraw

    size = rows[0][1].shape[0] * scale
    columns = 1 + len(times)
    sheet = Image.new("RGB", (columns * size, len(rows) * (size + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (name, portrait, frames) in enumerate(rows):
        y = r * (size + 14)
        tiles = [(f"{name}: portrait", portrait)] + [(f"{t:g} s", frames.get(t)) for t in times]
        for c, (label, image) in enumerate(tiles):
            if image is None:
                continue
            sheet.paste(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST), (c * size, y + 14))
            draw.text((c * size + 2, y + 1), label, fill=(0, 0, 0))
    sheet.save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--identities", type=int, default=2, help="held-out generator identities per variety")
    parser.add_argument("--cartoons", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/fidelity")
    args = parser.parse_args(argv)
    from asymk_talker.asymk_core.eval.fidelity import format_fidelity
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(args.model) if args.model else AsymKPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    size, fps = int(pipe.config.height), float(pipe.config.fps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, rows, times = {}, [], sheet_times(args.seconds)
    for name, portrait, audio, sample in subjects(args.identities, args.cartoons, args.seconds, size, fps):
        scored = score_subject(pipe, portrait, audio, sample, fps, times=times)
        rows.append((name, portrait, scored.pop("sheet_frames")))
        results[name] = scored
        worst = scored["standard"]["worst"]
        print(f"{name}: portrait error worst {worst.get('portrait_error', float('nan')):.1f}, "
              f"per 5 s worst {scored['per_5s']['worst'].get('portrait_error', float('nan')):.1f}"
              + (f", vs truth worst {worst['region_error']:.1f}, psnr worst {worst['psnr']:.1f} dB"
                 if "region_error" in worst else "") + f", {scored['generation_fps']:.1f} FPS")
        for line in format_fidelity(scored["standard"]):
            print("   " + line)
    summary = {"model": args.model or "models/asymk-synthetic (shipped)", "seconds": args.seconds, "fps": fps,
               "subjects": results}
    (out / "fidelity.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    write_sheet(out / "sheet.png", rows, times=times)
    print(f"wrote {out}/fidelity.json and {out}/sheet.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
