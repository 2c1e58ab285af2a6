"""Real-data preprocessing: a folder of talking-head videos -> the latent cache of ``train/data.py``.

For every video (HDTF / VFHQ style; mp4, mkv, mov, avi, webm):

1. decode with PyAV at ``fps`` (25) and audio at 16 kHz mono (``asymk_core.preprocess.decode``);
2. first pass on small grey frames: Haar face detection, face tracking, scene cuts and face-track
   jumps, temporally smoothed square padded crop boxes, fixed-length clips inside runs of frames
   with a face and no cut (``asymk_core.preprocess.analyze_video``);
3. second pass at full resolution: crop + resize to ``size`` x ``size``, and for each clip write
   ``clips/<identity>/<video>_<k>.safetensors`` (VAE latents, raw 50 Hz audio features, TRE
   reference latents of frames spread over the whole video) exactly as ``build_latent_cache`` does;
4. a marker ``preprocess/done/<video>.json`` per finished (or rejected) video, so a second run skips
   it; at the end ``manifest.jsonl`` is rewritten from every clip on disk and
   ``preprocess/summary.json`` lists what was written, skipped and rejected (corrupt, no audio, no
   usable face).

Usage::

    python -m asymk_talker.train.preprocess --input data/HDTF/videos --out data/hdtf_cache \\
        --pipeline runs/real-init/pipeline --workers 4 --devices cuda:0,cuda:1
    asymk-talker preprocess ...              # the same flags
    accelerate launch --num_processes 8 train/preprocess.py ...   # one shard of the videos per process

``--workers N`` runs a process pool (each worker loads the models once on its device);
under ``accelerate launch``/``torchrun`` each process takes every ``WORLD_SIZE``-th video.
"""

from __future__ import annotations

# Absolute imports: this file also runs as a script (`accelerate launch train/preprocess.py`).
import argparse
import json
import logging
import os
import re
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from asymk_talker.asymk_core.errors import input_error
from asymk_talker.asymk_core.audio import FEATURE_RATE, SAMPLE_RATE, encode_audio, encoder_dims
from asymk_talker.asymk_core.preprocess.analyze import analyze_video
from asymk_talker.asymk_core.preprocess.decode import VideoDecodeError, iter_frames_at_fps, read_audio_track
from asymk_talker.asymk_core.preprocess.face import crop_frame
from asymk_talker.asymk_core.preprocess.options import PreprocessConfig, add_arguments  # noqa: F401 (re-exported)
from asymk_talker.asymk_core.kclg import num_latents_for_frames, video_frames_for_latents
from asymk_talker.asymk_core.vae import spatial_factor, temporal_factor
from asymk_talker.train.data import (
    CACHE_META,
    CACHE_VERSION,
    MANIFEST,
    encode_clip_latents,
    encode_references,
    reference_frame_indices,
)

logger = logging.getLogger("asymk_talker.train.preprocess")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
STATE_DIR = "preprocess"
DONE_DIR = "done"


# ------------------------------------------------------------------------------------------ config
@dataclass
class VideoTask:
    path: str
    key: str        # unique, file-name safe: relative path without suffix, "/" -> "__"
    identity: str
    split: str


@dataclass
class VideoResult:
    key: str
    path: str
    status: str                     # "ok", "no_face", "no_audio", "corrupt", "too_short", "error"
    reason: str = ""
    clips: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------- finding
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "video"


def find_videos(inputs) -> list[tuple[Path, Path]]:
    """``(video, root)`` pairs from folders (searched recursively), video files, or ``.txt`` lists
    (one path per line, relative to the list's folder)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend((p, path) for p in sorted(path.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES
                         and p.is_file())
        elif path.suffix.lower() == ".txt" and path.is_file():
            for line in path.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    video = Path(line.strip()).expanduser()
                    video = video if video.is_absolute() else path.parent / video
                    found.append((video, video.parent))
        elif path.exists():
            found.append((path, path.parent))
        else:
            raise input_error("--input", f"{path} does not exist", "pass a video folder, a video file or a .txt list")
    unique, seen = [], set()
    for video, root in found:
        if video.resolve() not in seen:
            seen.add(video.resolve())
            unique.append((video, root))
    return unique


def make_tasks(inputs, config: PreprocessConfig) -> list[VideoTask]:
    tasks, keys = [], set()
    for video, root in find_videos(inputs):
        try:
            relative = video.relative_to(root).with_suffix("")
        except ValueError:
            relative = Path(video.stem)
        key = _safe("__".join(relative.parts))
        if key in keys:  # same relative name under two roots
            key = f"{key}_{zlib.crc32(str(video.resolve()).encode()) & 0xFFFF:04x}"
        keys.add(key)
        identity = _safe(video.parent.name if config.identity == "parent" else key)
        bucket = (zlib.crc32(f"{config.seed}/{identity}".encode()) & 0xFFFFFFFF) / 2**32
        split = "heldout" if bucket < config.heldout_fraction else "train"
        tasks.append(VideoTask(str(video), key, identity, split))
    return tasks


# ------------------------------------------------------------------------------------------ models
def load_models(pipeline: str | None = None, vae: str | None = None, audio_encoder: str | None = None,
                device: str = "cpu", dtype: str = "fp32") -> tuple:
    """``(vae, audio_encoder, feature_extractor)`` on ``device``: from a pipeline folder, or a VAE
    folder (e.g. Wan2.1's ``vae``) plus a wav2vec2 folder (or ``log-mel``)."""
    from asymk_talker.asymk_core.models.wan_init import load_audio_encoder, load_vae

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if pipeline:
        from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

        pipe = AsymKPipeline.from_pretrained(pipeline)
        models = [pipe.vae, pipe.audio_encoder, pipe.feature_extractor]
        if vae:
            models[0] = load_vae(vae)
        if audio_encoder:
            models[1], models[2] = load_audio_encoder(audio_encoder)
    elif vae:
        models = [load_vae(vae), *load_audio_encoder(audio_encoder)]
    else:
        raise ValueError("pass a pipeline folder (--pipeline) or a VAE folder (--vae)")
    models[0] = models[0].to(device=device, dtype=torch_dtype).eval()
    models[1] = models[1].to(device).eval()
    return tuple(models)


def cache_meta(vae, audio_encoder, reference_window: int) -> dict:
    """``cache.json`` contents, identical to what ``train.data.build_latent_cache`` writes."""
    layers, dim = encoder_dims(audio_encoder)
    return {
        "version": CACHE_VERSION, "latent_channels": int(vae.config.z_dim), "temporal_factor": temporal_factor(vae),
        "spatial_factor": spatial_factor(vae), "reference_window": int(reference_window),
        "audio": {"encoder": type(audio_encoder).__name__, "layers": layers, "dim": dim, "rate": FEATURE_RATE},
        "latents_mean": [float(v) for v in vae.config.latents_mean],
        "latents_std": [float(v) for v in vae.config.latents_std],
    }


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def prepare_output(out_dir, models, config: PreprocessConfig) -> Path:
    """Create the cache folder and its ``cache.json``; refuse a folder made with other parameters."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = cache_meta(models[0], models[1], config.reference_window)
    meta_path = out / CACHE_META
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old != meta:
            raise ValueError(f"{out} holds a cache made with other models or parameters ({old}); choose a new folder")
    else:
        _write_json(meta_path, meta)
    settings = asdict(config)
    settings_path = out / STATE_DIR / "config.json"
    if settings_path.is_file():
        old = json.loads(settings_path.read_text())
        fixed = ("fps", "size", "clip_frames", "reference_window", "num_references", "audio_dtype")
        changed = [k for k in fixed if old.get(k) != settings[k]]
        if changed:
            raise ValueError(f"{out} was preprocessed with other {', '.join(changed)}; choose a new folder")
    else:
        _write_json(settings_path, settings)
    return out


# -------------------------------------------------------------------------------------- one video
def _done_path(out: Path, key: str) -> Path:
    return out / STATE_DIR / DONE_DIR / f"{key}.json"


def _reference_frames(plan, config: PreprocessConfig, seed: int) -> list[int]:
    """Frames (video-wide) used as TRE references: one random frame per equal share of all clip frames."""
    frames = np.concatenate([np.arange(a, b) for a, b in plan.clips])
    picks = reference_frame_indices(len(frames), config.num_references, seed)
    return [int(frames[i]) for i in picks]


def _clip_audio(waveform: np.ndarray, start: int, stop: int, fps: float) -> np.ndarray:
    a, b = int(round(start / fps * SAMPLE_RATE)), int(round(stop / fps * SAMPLE_RATE))
    piece = waveform[a:b]
    if piece.size < b - a:
        piece = np.concatenate([piece, np.zeros(b - a - piece.size, np.float32)])
    return np.ascontiguousarray(piece, dtype=np.float32)


@torch.no_grad()
def _write_clip(out: Path, rel: str, frames: np.ndarray, audio: np.ndarray, reference_latents: torch.Tensor,
                reference_sources: list[str], task: VideoTask, start: int, models, config: PreprocessConfig) -> None:
    """One clip file in ``build_latent_cache``'s format (tensors ``latents``, ``audio``,
    ``reference_latents``; metadata ``identity, split, fps, num_frames, reference_sources, source``)."""
    from safetensors.torch import save_file

    vae, audio_encoder, feature_extractor = models
    latents = encode_clip_latents(vae, frames)
    features = encode_audio(audio_encoder, audio, feature_extractor).to(getattr(torch, config.audio_dtype))
    num_frames = video_frames_for_latents(latents.shape[1], temporal_factor(vae))
    metadata = {"identity": task.identity, "split": task.split, "fps": repr(float(config.fps)),
                "num_frames": str(num_frames), "reference_sources": json.dumps(reference_sources),
                "source": f"{task.path}#frames={start}-{start + len(frames)}"}
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({"latents": latents.contiguous(), "audio": features.contiguous(),
               "reference_latents": reference_latents.contiguous()}, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def process_video(task: VideoTask, out_dir, models, config: PreprocessConfig, detector=None) -> VideoResult:
    """Analyse, crop and encode one video into clip files; never raises for a bad video (the result's
    ``status``/``reason`` say what was wrong). Existing clip files are kept (resume inside a video)."""
    started = time.perf_counter()
    out = Path(out_dir)
    result = VideoResult(key=task.key, path=task.path, status="ok")
    try:
        r = temporal_factor(models[0])
        usable = video_frames_for_latents(num_latents_for_frames(config.clip_frames, r), r)  # frames the VAE encodes
        plan = analyze_video(task.path, fps=config.fps, clip_frames=usable, stride=config.stride,
                             detector=detector, analysis_side=config.analysis_side, detect_every=config.detect_every,
                             trim_s=config.trim_s, max_clips=config.max_clips_per_video,
                             cut_threshold=config.cut_threshold, box_scale=config.box_scale)
        result.stats = plan.summary()
        if not plan.clips:
            if plan.face_fraction < config.min_face_fraction:
                result.status = "no_face"
                result.reason = f"a face in {plan.face_fraction:.0%} of the frames"
            else:
                result.status = "too_short"
                result.reason = (f"no run of {usable} frames with a face and no cut ({plan.num_frames} frames, "
                                 f"{len(plan.cuts)} cuts)")
            return result
        waveform = read_audio_track(task.path)
        if waveform is None or waveform.size == 0:
            result.status, result.reason = "no_audio", "the video has no audio track"
            return result
        seed = zlib.crc32(f"{config.seed}/{task.key}".encode()) & 0x7FFFFFFF
        names = [f"clips/{task.identity}/{task.key}_{k:03d}.safetensors" for k in range(len(plan.clips))]
        todo = [k for k, name in enumerate(names) if not (out / name).is_file()]
        reference_images: dict[int, np.ndarray] = {}
        if todo and config.reference_scope == "video":
            wanted = set(_reference_frames(plan, config, seed))
            last = max(wanted)
            for k, frame in iter_frames_at_fps(task.path, config.fps):
                if k in wanted:
                    reference_images[k] = crop_frame(frame, plan.boxes[k], config.size)
                if k >= last:
                    break
        if todo:
            buffers: dict[int, list[np.ndarray]] = {}
            video_references = None
            remaining = sorted(todo, key=lambda n: plan.clips[n][0])
            stop_at = max(plan.clips[n][1] for n in todo)
            last_frame = -1
            for k, frame in iter_frames_at_fps(task.path, config.fps):
                last_frame = k
                covering = [n for n in remaining if plan.clips[n][0] <= k < plan.clips[n][1]]
                if covering:
                    crop = crop_frame(frame, plan.boxes[k], config.size)
                    for n in covering:
                        buffers.setdefault(n, []).append(crop)
                for n in [n for n in covering if plan.clips[n][1] - 1 == k]:
                    start, stop = plan.clips[n]
                    frames = np.stack(buffers.pop(n))
                    remaining.remove(n)
                    if config.reference_scope == "video":  # shared by every clip: encoded once
                        if video_references is None:
                            sources = sorted(reference_images)
                            video_references = (encode_references(models[0], np.stack(
                                [reference_images[i] for i in sources]), config.reference_window),
                                [f"video_frame:{i}" for i in sources])
                        references, labels = video_references
                    else:
                        picks = reference_frame_indices(len(frames), config.num_references, seed + n)
                        references = encode_references(models[0], frames[picks], config.reference_window)
                        labels = [f"frame:{i}" for i in picks]
                    _write_clip(out, names[n], frames, _clip_audio(waveform, start, stop, config.fps), references,
                                labels, task, start, models, config)
                if k >= stop_at - 1:
                    break
            if remaining:
                raise VideoDecodeError(f"the video ended at frame {last_frame}, before clip {remaining[0]} "
                                       "was complete")
        result.clips = names
    except VideoDecodeError as error:
        result.status, result.reason = "corrupt", str(error)
    except Exception as error:  # one bad video must not stop a long run
        logger.exception("failed on %s", task.path)
        result.status, result.reason = "error", f"{type(error).__name__}: {error}"
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
    return result


# ------------------------------------------------------------------------------------ manifest
def read_clip_entry(out: Path, rel: str) -> dict:
    """A manifest line for one clip file (the same fields ``build_latent_cache`` writes)."""
    from safetensors import safe_open

    with safe_open(str(out / rel), "pt") as handle:
        m = handle.metadata()
        shape = handle.get_slice("latents").get_shape()
        refs = handle.get_slice("reference_latents").get_shape()
    return {"path": rel, "identity": m["identity"], "split": m["split"], "num_frames": int(m["num_frames"]),
            "fps": float(m["fps"]), "num_latents": int(shape[1]), "num_references": int(refs[0]),
            "reference_sources": json.loads(m["reference_sources"]), "source": m.get("source", "")}


def write_manifest(out_dir) -> list[dict]:
    """Rewrite ``manifest.jsonl`` from every clip file in the cache (atomic; safe to call any time)."""
    out = Path(out_dir)
    rels = sorted(p.relative_to(out).as_posix() for p in (out / "clips").rglob("*.safetensors")) \
        if (out / "clips").is_dir() else []
    entries = [read_clip_entry(out, rel) for rel in rels]
    temporary = out / f"{MANIFEST}.{os.getpid()}.tmp"
    temporary.write_text("".join(json.dumps(e) + "\n" for e in entries))
    os.replace(temporary, out / MANIFEST)
    return entries


# -------------------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(model_args: dict, devices: list[str], config: PreprocessConfig, threads: int | None) -> None:
    import multiprocessing

    identity = multiprocessing.current_process()._identity
    index = (identity[0] - 1) if identity else 0
    if threads:
        torch.set_num_threads(threads)
    device = devices[index % len(devices)] if devices else "cpu"
    _WORKER.update(models=load_models(device=device, **model_args), config=config)


def _run_in_worker(task: VideoTask, out_dir: str) -> VideoResult:
    return process_video(task, out_dir, _WORKER["models"], _WORKER["config"])


def _finish(out: Path, task: VideoTask, result: VideoResult) -> None:
    _write_json(_done_path(out, task.key), asdict(result))


def preprocess_videos(inputs, out_dir, *, models=None, model_args: dict | None = None,
                      config: PreprocessConfig | None = None, workers: int = 0, devices: list[str] | None = None,
                      rank: int = 0, world_size: int = 1, retry_failed: bool = False, detector=None,
                      threads: int | None = None, progress: bool = True) -> dict:
    """Preprocess videos into the latent cache at ``out_dir``; returns the summary (also written to
    ``preprocess/summary.json``).

    ``models``: ``(vae, audio_encoder, feature_extractor)`` already loaded (in-process), or
    ``model_args`` for :func:`load_models` (``pipeline``/``vae``/``audio_encoder``/``dtype``; needed
    with ``workers > 0``, each worker loads them on ``devices[i % len(devices)]``). Videos with a
    ``done`` marker are skipped (failed ones too, unless ``retry_failed``). ``rank``/``world_size``
    shard the videos across independently launched processes. ``detector``: a face detector
    callable (in-process only; default Haar).
    """
    from tqdm.auto import tqdm

    config = config or PreprocessConfig()
    config.validate()
    if models is None:
        if model_args is None:
            raise ValueError("pass models=(vae, audio_encoder, feature_extractor) or model_args")
        models = load_models(device=(devices or ["cpu"])[rank % len(devices or ["cpu"])], **model_args)
    out = prepare_output(out_dir, models, config)
    tasks = make_tasks(inputs, config)[rank::world_size]
    skipped, todo = [], []
    for task in tasks:
        done = _done_path(out, task.key)
        if done.is_file():
            previous = json.loads(done.read_text())
            if previous.get("status") == "ok" or not retry_failed:
                skipped.append(previous)
                continue
        todo.append(task)
    results: list[VideoResult] = []
    bar = tqdm(total=len(todo), desc="videos", unit="video", disable=not progress, dynamic_ncols=True)
    clips_written = 0

    def record(task, result):
        nonlocal clips_written
        _finish(out, task, result)
        results.append(result)
        clips_written += len(result.clips)
        bar.update(1)
        bar.set_postfix(clips=clips_written, failed=sum(r.status != "ok" for r in results))
        if result.status != "ok":
            logger.warning("skipped %s: %s (%s)", task.path, result.status, result.reason)

    if workers and workers > 0 and todo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if detector is not None:
            raise ValueError("a custom detector only works in-process (workers=0)")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                 initargs=(model_args or {}, list(devices or []), config, threads)) as pool:
            futures = {pool.submit(_run_in_worker, task, str(out)): task for task in todo}
            for future in as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # a worker died (out of memory, segfault in a decoder, ...)
                    result = VideoResult(key=task.key, path=task.path, status="error",
                                         reason=f"worker failed: {type(error).__name__}: {error}")
                record(task, result)
    else:
        for task in todo:
            record(task, process_video(task, out, models, config, detector=detector))
    bar.close()
    entries = write_manifest(out)
    summary = summarize(results, skipped, entries)
    _write_json(out / STATE_DIR / (f"summary-rank{rank}.json" if world_size > 1 else "summary.json"), summary)
    return summary


def summarize(results: list[VideoResult], skipped: list[dict], entries: list[dict]) -> dict:
    failed = [{"video": r.path, "status": r.status, "reason": r.reason} for r in results if r.status != "ok"]
    previously_failed = [{"video": s["path"], "status": s["status"], "reason": s.get("reason", "")}
                         for s in skipped if s.get("status") != "ok"]
    return {
        "videos_processed": len(results),
        "videos_ok": sum(r.status == "ok" for r in results),
        "videos_skipped_done": len(skipped),
        "clips_written": sum(len(r.clips) for r in results),
        "clips_in_cache": len(entries),
        "identities_in_cache": len({e["identity"] for e in entries}),
        "hours_in_cache": round(sum(e["num_frames"] / e["fps"] for e in entries) / 3600, 4),
        "failed": failed,
        "previously_failed": previously_failed,
    }


def format_summary(summary: dict) -> str:
    lines = [f"{summary['videos_ok']}/{summary['videos_processed']} videos processed OK, "
             f"{summary['videos_skipped_done']} already done; {summary['clips_written']} clips written, "
             f"{summary['clips_in_cache']} clips ({summary['hours_in_cache']:.2f} h, "
             f"{summary['identities_in_cache']} identities) in the cache"]
    for item in summary["failed"]:
        lines.append(f"  skipped {item['video']}: {item['status']} ({item['reason']})")
    if summary["previously_failed"]:
        lines.append(f"  {len(summary['previously_failed'])} videos failed in an earlier run (--retry-failed to retry)")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- CLI
def run_from_args(args) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    config = PreprocessConfig(
        fps=args.fps, size=args.size, clip_frames=args.clip_frames, stride=args.stride,
        max_clips_per_video=args.max_clips_per_video, reference_window=args.reference_window,
        num_references=args.num_references, reference_scope=args.reference_scope, audio_dtype=args.audio_dtype,
        identity=args.identity, heldout_fraction=args.heldout_fraction, analysis_side=args.analysis_side,
        detect_every=args.detect_every, min_face_fraction=args.min_face_fraction, box_scale=args.box_scale,
        cut_threshold=args.cut_threshold, seed=args.seed)
    if not args.pipeline and not args.vae:
        raise input_error("--vae", "no models given", "pass --pipeline (an AsymKPipeline folder) or --vae "
                          "(e.g. a Wan2.1 folder with vae/)")
    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", 0))
    world_size = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", 1))
    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    elif torch.cuda.is_available():
        count = torch.cuda.device_count()
        local = int(os.environ.get("LOCAL_RANK", rank))
        devices = [f"cuda:{i}" for i in range(count)] if args.workers else [f"cuda:{local % count}"]
    else:
        devices = ["cpu"]
    if args.threads:
        torch.set_num_threads(args.threads)
    model_args = {"pipeline": args.pipeline, "vae": args.vae, "audio_encoder": args.audio_encoder, "dtype": args.dtype}
    models = None
    if not args.workers:
        models = load_models(device=devices[0], **model_args)
    summary = preprocess_videos(args.input, args.out, models=models, model_args=model_args, config=config,
                                workers=args.workers, devices=devices, rank=rank, world_size=world_size,
                                retry_failed=args.retry_failed, threads=args.threads, progress=not args.quiet)
    print(format_summary(summary))
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Talking-head videos -> latent cache (face crops, 25 fps, 16 kHz, "
                                                 "VAE latents, audio features, TRE references).")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    main()
