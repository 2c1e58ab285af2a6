"""Live mode at 1x real time: speech pushed as it would arrive, frames read as they are due.

A feeder thread pushes 20 ms blocks of speech at real-time pace from a schedule of utterances (the
bundled example speech, cut to 2-4 s) separated by 1-3 s without audio (idle); every fourth
utterance is interrupted halfway (the feeder stops and calls ``interrupt()``). The main thread reads
``live.frames()``. Measured: time from an utterance's first sample to its first shown frame,
audio-to-frame latency (p50/p95, each speaking frame's show time minus the push time of its first
sample), interrupt-to-silence and interrupt-to-idle-face times, dropped/duplicated frames and stalls
(``gaps``: when in the run two shown frames were more than two frame periods apart; ``slow``: the
speaking frames shown more than a chunk later than expected), the garbage collector's pauses
(``collector``), and the A/V offset at the end (audio handed out with the frames vs the frames'
duration, and the show clock vs the media clock). Each utterance's first-frame time comes with its
start in the run (``at_s``)::

    python benchmarks/live.py --minutes 10 --out benchmarks/results/live
"""

from __future__ import annotations

import argparse
import gc
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch


def utterance_schedule(speech: np.ndarray, minutes: float, seed: int = 0) -> list[tuple[float, np.ndarray, bool]]:
    """``(start_s, samples, interrupted)`` per utterance over ``minutes``."""
    rng = np.random.default_rng(seed)
    schedule, at, count = [], 1.0, 0
    while at < minutes * 60 - 5:
        length = rng.uniform(2.0, 4.0)
        offset = rng.uniform(0, max(0.0, speech.size / 16000 - length))
        samples = speech[int(offset * 16000): int((offset + length) * 16000)]
        count += 1
        schedule.append((at, samples, count % 4 == 0))
        at += samples.size / 16000 + rng.uniform(1.0, 3.0)
    return schedule


def feed(live, schedule, started: float, firsts: list, interrupts: list, stop: threading.Event,
         block_s: float = 0.02) -> None:
    """Push each utterance in ``block_s`` blocks at real-time pace (interrupted ones stop halfway);
    ``firsts`` gets the clock time of each utterance's first push (taken as it starts), ``interrupts``
    of each interrupt."""
    block = int(16000 * block_s)
    for start_s, samples, interrupted in schedule:
        stop_at = samples.size // 2 if interrupted else samples.size
        for offset in range(0, stop_at, block):
            due = started + start_s + offset / 16000
            while time.monotonic() < due:
                if stop.wait(min(0.005, max(0.0, due - time.monotonic()))):
                    return
            if offset == 0:  # taken before the push, so the first sample's frame counts (it is stamped inside)
                firsts.append(time.monotonic())
            live.push(samples[offset: min(offset + block, stop_at)], 16000)
        if interrupted:
            live.interrupt()
            interrupts.append(time.monotonic())


def first_frame_delays(firsts: list[float], pushed_at: np.ndarray, speaking: np.ndarray,
                       shown: np.ndarray) -> list[tuple[float, float]]:
    """``(first push, delay)`` per utterance that was shown, ``delay`` being the time (s) from its
    first push to the first speaking frame whose own first sample was pushed at or after it.
    ``firsts``: clock times of the utterances' first pushes, taken as each push starts;
    ``pushed_at``, ``speaking``, ``shown``: per shown frame (``pushed_at`` NaN for idle frames)."""
    delays = []
    for pushed in firsts:
        after = np.nonzero(speaking & (pushed_at >= pushed))[0]
        if after.size:
            delays.append((pushed, float(shown[after[0]] - pushed)))
    return delays


class CollectorPauses:
    """Times every garbage collection while installed (``gc.callbacks``): ``(clock start, generation,
    seconds)`` per collection, to tell the collector's pauses from other stalls."""

    def __init__(self):
        self.pauses: list[tuple[float, int, float]] = []
        self._started: float | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.monotonic()
        elif self._started is not None:
            self.pauses.append((self._started, info["generation"], time.monotonic() - self._started))

    def __enter__(self) -> "CollectorPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)

    def summary(self, started: float) -> dict:
        """From ``started`` on: count and longest pause per generation, and the pauses over 20 ms with
        their time in the run; before it (``before_start``): the longest full collection (the
        session's own, before it exempts what is alive)."""
        run = [(at, g, seconds) for at, g, seconds in self.pauses if at >= started]
        out = {"before_start": {"generation_2_max_s": round(max(
            (seconds for at, g, seconds in self.pauses if at < started and g == 2), default=0.0), 4)}}
        for generation in (0, 1, 2):
            times = [seconds for _, g, seconds in run if g == generation]
            out[f"generation_{generation}"] = {"count": len(times), "max_s": round(max(times, default=0.0), 4)}
        out["over_20ms"] = [{"at_s": round(at - started, 2), "generation": g, "s": round(seconds, 3)}
                            for at, g, seconds in run if seconds > 0.02][:20]
        return out


def run(pipe, image, speech, minutes: float, seed: int, unfreeze: bool = False) -> dict:
    schedule = utterance_schedule(speech, minutes, seed)
    records, firsts, interrupts, stop = [], [], [], threading.Event()
    with CollectorPauses() as pauses, pipe.live(image, generator=torch.Generator().manual_seed(seed)) as live:
        if unfreeze:  # measure the stream as it was before sessions exempted the model from collection
            gc.unfreeze()
        frames = live.frames(timeout=30)
        records.append((next(frames), time.monotonic()))  # the stream is up: start the clock of the speech
        started = time.monotonic()
        feeder = threading.Thread(target=feed, args=(live, schedule, started, firsts, interrupts, stop), daemon=True)
        feeder.start()
        end = started + minutes * 60
        for frame in frames:
            now = time.monotonic()
            records.append((frame, now))
            if now >= end:
                break
        stop.set()
        feeder.join()
        stats, t0, chunk_s, lead_s = dict(live.stats), live.t0, live.chunk_seconds, live.lead_seconds
        expected_latency = live.latency_seconds
    indices = np.array([frame.index for frame, _ in records])
    shown = np.array([when for _, when in records])
    speaking = np.array([frame.speaking for frame, _ in records])
    timed = [(frame, when, when - frame.pushed_at) for frame, when in records if frame.speaking and frame.pushed_at]
    latencies = np.array([latency for _, _, latency in timed])
    # speaking frames more than a chunk later than expected: when in the run, which frame, how late
    slow = [{"at_s": round(when - started, 2), "index": frame.index, "latency_s": round(latency, 3)}
            for frame, when, latency in timed if latency > expected_latency + chunk_s]
    pushed_at = np.array([np.nan if frame.pushed_at is None else frame.pushed_at for frame, _ in records])
    first = first_frame_delays(firsts, pushed_at, speaking, shown)
    first_frames, first_at = [delay for _, delay in first], [pushed - started for pushed, _ in first]
    silent = np.array([not frame.audio.any() for frame, _ in records])
    to_idle, to_silence = [], []
    for when in interrupts:
        after = np.nonzero((shown > when) & ~speaking)[0]
        if after.size:
            to_idle.append(shown[after[0]] - when)
        after = np.nonzero((shown > when) & silent)[0]
        if after.size:
            to_silence.append(shown[after[0]] - when)
    fps = pipe.config.fps if hasattr(pipe.config, "fps") else 25.0
    gaps = np.diff(shown)  # time between consecutive shown frames: more than 2 frame periods is a stall
    gap_after = np.nonzero(gaps > 2.0 / fps)[0]
    audio_out = sum(frame.audio.size for frame, _ in records) / 16000
    media = len(records) / fps
    return {
        "minutes": minutes, "frames": len(records), "fps": float(fps), "chunk_s": chunk_s, "lead_s": lead_s,
        "expected_latency_s": expected_latency, "generation_per_chunk_s": stats["chunk_seconds"],
        "utterances": len(schedule), "interrupts": len(interrupts),
        "first_frame_s": {"median": float(np.median(first_frames)), "p95": float(np.percentile(first_frames, 95)),
                          "max": float(np.max(first_frames)), "each": [round(float(x), 3) for x in first_frames],
                          "at_s": [round(float(x), 2) for x in first_at]},
        "latency_s": {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
                      "max": float(latencies.max()), "slow_frames": len(slow), "slow": slow[:20]},
        "interrupt_to_idle_s": {"median": float(np.median(to_idle)), "max": float(np.max(to_idle)),
                                "each": [round(float(x), 3) for x in to_idle]} if to_idle else None,
        "interrupt_to_silence_s": {"median": float(np.median(to_silence)), "max": float(np.max(to_silence))}
        if to_silence else None,
        "dropped_frames": int(np.sum(np.diff(indices) - 1)) + stats["dropped_frames"],
        "duplicated_frames": int(np.sum(np.diff(indices) == 0)),
        "late_frames": stats["late_frames"], "stalls": stats["stalls"],
        "gaps": [{"at_s": round(float(shown[i] - started), 2), "s": round(float(gap), 3)}
                 for i, gap in zip(gap_after + 1, gaps[gap_after])],
        "collector": pauses.summary(started),
        "av_offset_ms": 1000 * (audio_out - media),
        "show_clock_offset_ms": 1000 * ((shown[-1] - t0) - records[-1][0].pts),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--image", default=None, help="portrait (default: the bundled example)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--chunk-frames", type=int, default=None, help="latent frames per chunk (default: the model's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer first")
    parser.add_argument("--unfreeze", action="store_true",
                        help="put the model's objects back under garbage collection once the session has "
                             "started (what a stream was like before sessions exempted them)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json")
    args = parser.parse_args(argv)

    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core.audio import load_audio
    from asymk_talker.asymk_core.model_folder import PACKAGE_ROOT

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = AsymKPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.chunk_frames:
        pipe.register_to_config(chunk_frames=args.chunk_frames)
    if args.compile:
        pipe.compile_transformer()
    examples = PACKAGE_ROOT / "assets" / "examples"
    speech = load_audio(examples / "speech.wav")
    result = run(pipe, args.image or str(examples / "portrait.png"), speech, args.minutes, args.seed, args.unfreeze)
    result.update(model=str(args.model or "models/asymk-synthetic"), chunk_frames=int(pipe.config.chunk_frames),
                  threads=torch.get_num_threads(), compiled=bool(args.compile),
                  unfrozen=bool(args.unfreeze))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
