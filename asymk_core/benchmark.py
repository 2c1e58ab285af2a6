"""Measurement helpers shared by ``benchmarks/speed.py``, ``benchmarks/memory.py`` and ``asymk-talker bench``.

Speech-like test audio of any length written to disk in pieces, end-to-end timed renders with a
per-stage breakdown (audio features, TRE reference encoding, transformer, VAE decode, video
encoding), time to first frame, peak resident memory, a description of the machine, and the
``BENCHMARKS.md`` record (new entries go on top of their section; old ones are kept).

Nothing here changes what is generated: timing uses forward hooks, and a render is exactly what
``asymk-talker generate`` does (read the audio file, ``pipe.stream``, stream into an mp4 with the
audio muxed in).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import torch

from .audio import SAMPLE_RATE, load_audio
from .model_folder import PIPELINE_PRESETS
from .models.transformer import PRESETS
from .synthetic.speech import synthesize_speech
from .video_io import VideoWriter

# The distilled student's sampling: 4 steps, one transformer call per step, no guidance.
STUDENT = dict(sampler="distilled", num_inference_steps=4, guidance_scale=1.0)
STAGES = ("audio features", "reference (TRE)", "transformer", "VAE decode", "video encoding")


# ------------------------------------------------------------------------------------ settings
def preset_of(pipe) -> str | None:
    """Name of the transformer preset (``tiny``, ``synthetic``, ``base``) the pipeline's shape matches."""
    return _matching_preset(pipe.transformer.config)


def folder_facts(folder) -> dict:
    """``dict(preset, config)`` of a pipeline folder, read from its JSON files (no weights loaded)."""
    folder = Path(folder)
    config = {k: v for k, v in json.loads((folder / "model_index.json").read_text()).items()
              if not k.startswith("_") and not isinstance(v, list)}
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    return dict(preset=_matching_preset(transformer), config=config)


def _matching_preset(config) -> str | None:
    for name, values in PRESETS.items():
        if all(config.get(key) == value for key, value in values.items()):
            return name
    return None


def teacher_settings(pipe, steps: int | None = None, guidance: float | None = None) -> dict:
    """The teacher's default sampling for this pipeline: its own config when it is a teacher folder;
    for a distilled student folder (whose config holds the student's settings), the teacher defaults
    of the preset its shape matches. ``steps``/``guidance`` override."""
    config = pipe.config
    if config.get("sampler", "teacher") == "teacher":
        default_steps, default_guidance = int(config.num_inference_steps), float(config.guidance_scale)
    else:
        preset = PIPELINE_PRESETS[preset_of(pipe) or "synthetic"]
        default_steps, default_guidance = preset["num_inference_steps"], preset["guidance_scale"]
    return dict(sampler="teacher", num_inference_steps=int(steps or default_steps),
                guidance_scale=float(default_guidance if guidance is None else guidance))


def transformer_calls_per_chunk(settings: dict) -> int:
    """Transformer forward passes per chunk: steps x 2 with audio guidance (teacher, g != 1), else steps."""
    guided = settings["sampler"] == "teacher" and float(settings["guidance_scale"]) != 1.0
    return int(settings["num_inference_steps"]) * (2 if guided else 1)


# --------------------------------------------------------------------------------------- audio
def write_speech_wav(path, seconds: float, seed: int = 0, piece_seconds: float = 30.0) -> Path:
    """Deterministic speech-like audio (the synthetic corpus' formant speech) as a 16 kHz PCM wav.

    Written in ``piece_seconds`` pieces (utterance seeds ``seed, seed + 1, ...``), so a 10-minute
    file costs no more memory than a 30-second one.
    """
    path = Path(path)
    total = int(round(seconds * SAMPLE_RATE))
    written, index = 0, 0
    with sf.SoundFile(str(path), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as handle:
        while written < total:
            count = min(total - written, int(round(piece_seconds * SAMPLE_RATE)))
            waveform, _ = synthesize_speech(seed + index, count / SAMPLE_RATE)
            handle.write(waveform[:count])
            written += count
            index += 1
    return path


# -------------------------------------------------------------------------------------- timing
def synchronize(device) -> None:
    """Wait for queued accelerator work (so wall-clock timers measure it); no-op on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Wall-clock seconds per stage of a render, from forward hooks on the pipeline's modules.

    ``audio features`` = the audio encoder, ``reference (TRE)`` = the VAE encoder, ``transformer``,
    ``VAE decode`` = the VAE decoder; :meth:`add` records other stages (video encoding). On an
    accelerator each hook synchronises, so the stages are attributed correctly (a small cost).
    Use as a context manager; the hooks are removed on exit.
    """

    def __init__(self, pipe, device=None):
        self.device = device if device is not None else pipe._execution_device
        self.seconds = {name: 0.0 for name in STAGES}
        self.calls = {name: 0 for name in STAGES}
        self._handles = []
        modules = {
            "audio features": pipe.audio_encoder, "reference (TRE)": pipe.vae.encoder,
            "transformer": pipe.transformer, "VAE decode": pipe.vae.decoder,
        }
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._start(name)))
            self._handles.append(module.register_forward_hook(self._stop(name)))
        self._started: dict[str, list[float]] = {name: [] for name in modules}

    def _start(self, name):
        def hook(module, args):
            synchronize(self.device)
            self._started[name].append(time.perf_counter())
        return hook

    def _stop(self, name):
        def hook(module, args, output):
            synchronize(self.device)
            self.add(name, time.perf_counter() - self._started[name].pop())
        return hook

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> StageTimer:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def render(
    pipe,
    image,
    audio,
    output=None,
    *,
    sampler: str,
    num_inference_steps: int,
    guidance_scale: float,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    max_chunks: int | None = None,
    stages: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict:
    """One timed render, end to end as ``asymk-talker generate`` does it.

    The clock starts before the audio file is read and stops when the mp4 (``output``, H.264 + AAC
    with the audio muxed in) is closed; with ``output=None`` frames are generated and dropped (the
    ``pipe.stream`` use). ``max_chunks`` stops early (time to first frame). ``on_chunk(frames_done,
    chunk_index)`` is called after each chunk. Returns a dict: ``frames``, ``audio_seconds``,
    ``seconds``, ``fps``, ``realtime_factor`` (fps / video fps), ``first_frame_s`` (until the first
    chunk's frames exist), ``chunks``, ``stages`` (seconds per stage, ``other`` = the rest), the
    sampling settings and ``transformer_calls``.
    """
    device = pipe._execution_device
    fps = float(pipe.config.fps)
    height = int(height or pipe.config.height)
    width = int(width or pipe.config.width)
    timer = StageTimer(pipe, device) if stages else None
    writer = None
    frames = chunks = 0
    first_frame_s = None
    try:
        synchronize(device)
        start = time.perf_counter()
        waveform = load_audio(audio, SAMPLE_RATE if not isinstance(audio, (str, os.PathLike)) else None)
        stream = pipe.stream(
            image, waveform, sample_rate=SAMPLE_RATE, height=height, width=width, fps=fps,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
        )
        if output is not None:
            writer = VideoWriter(output, fps, width, height, audio=waveform, audio_sample_rate=SAMPLE_RATE)
        for chunk in stream:
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - start
            if writer is not None:
                began = time.perf_counter()
                writer.write(chunk.frames)
                if timer:
                    timer.add("video encoding", time.perf_counter() - began)
            frames += len(chunk.frames)
            chunks += 1
            if on_chunk is not None:
                on_chunk(frames, chunk.chunk_index)
            if max_chunks is not None and chunks >= max_chunks:
                stream.close()
                break
        if writer is not None:
            began = time.perf_counter()
            writer.close()
            if timer:
                timer.add("video encoding", time.perf_counter() - began)
        synchronize(device)
        seconds = time.perf_counter() - start
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if timer:
            timer.remove()
    settings = dict(sampler=sampler, num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale))
    result = dict(
        frames=frames, chunks=chunks, audio_seconds=waveform.size / SAMPLE_RATE, video_fps=fps,
        height=height, width=width, seconds=seconds, fps=frames / seconds if seconds > 0 else float("inf"),
        first_frame_s=first_frame_s, **settings, transformer_calls_per_chunk=transformer_calls_per_chunk(settings),
    )
    result["realtime_factor"] = result["fps"] / fps
    if timer:
        staged = {name: timer.seconds.get(name, 0.0) for name in STAGES}
        staged["other"] = max(seconds - sum(staged.values()), 0.0)
        result["stages"] = staged
        result["transformer_calls"] = timer.calls["transformer"]
    return result


def first_frame_latency(pipe, image, audio, **settings) -> float:
    """Seconds from reading the audio file to the first decoded chunk (``pipe.stream``, model loaded)."""
    return render(pipe, image, audio, None, max_chunks=1, stages=False, **settings)["first_frame_s"]


# -------------------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB).

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own
    memory map. ``getrusage``'s ``ru_maxrss`` is not used there because it is polluted across
    ``exec``: a child started by ``subprocess`` (vfork + exec) inherits the *parent's* peak as a
    floor, so a benchmark parent that once held 600 MB would make every child look at least that big.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 2**20 if sys.platform == "darwin" else value / 1024.0  # bytes on macOS, KiB elsewhere


def current_rss_mb() -> float:
    """Resident set size of this process now (MiB)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20


# --------------------------------------------------------------------------------- the machine
def machine_info(device="cpu") -> dict:
    """CPU model, cores, memory, torch version and threads, GPU name, load average (contention)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    info = dict(
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), cpu=cpu, cores=os.cpu_count(),
        memory_gib=None if memory_gib is None else round(memory_gib, 1), python=platform.python_version(),
        torch=torch.__version__, torch_threads=torch.get_num_threads(), device=str(device),
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    )
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class CpuMonitor:
    """How busy the machine was with *other* work while a benchmark ran.

    Busy CPU time of the whole machine (``/proc/stat`` via psutil) minus this process' and its
    waited-for children's CPU time, divided by the wall time: the average number of cores other
    processes took. ``result()`` gives ``dict(wall_s, own_cores, other_cores)``.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        import psutil

        times = psutil.cpu_times()
        busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        own = os.times()
        return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system

    def result(self) -> dict:
        now, busy, own = self._sample()
        wall = max(now - self._start[0], 1e-9)
        own_cores = (own - self._start[2]) / wall
        other = max((busy - self._start[1]) / wall - own_cores, 0.0)
        return dict(wall_s=round(wall, 2), own_cores=round(own_cores, 2), other_cores=round(other, 2))


def contention_note(cpu: dict, cores: int | None) -> str | None:
    """A warning when other processes took a noticeable share of the CPU during the run."""
    if cpu.get("other_cores", 0.0) >= 0.2:
        return (f"measured under contention: other processes used {cpu['other_cores']:.2f} of "
                f"{cores} cores on average during the run; the numbers are pessimistic")
    return None


def describe_machine(info: dict) -> str:
    text = f"{info['cpu']}, {info['cores']} logical cores"
    if info.get("memory_gib"):
        text += f", {info['memory_gib']:g} GiB"
    if info.get("gpu"):
        text += f"; GPU {info['gpu']}"
    return text + f"; torch {info['torch']}, {info['torch_threads']} threads; Python {info['python']}"


# --------------------------------------------------------------------------------- BENCHMARKS.md
BENCHMARKS_HEADER = """# Benchmarks

Numbers measured by the scripts in `benchmarks/`; each run adds an entry at the top of its section
and older entries are kept below it. Every entry names the machine, model/preset, resolution,
steps, dtype and whether other work was running at the time.
"""


def _marker(section: str) -> str:
    return f"<!-- {section}: new entries go below this line -->"


def record_entry(path, section: str, title: str, entry: str) -> Path:
    """Insert ``entry`` (markdown) at the top of section ``## {title}`` of ``path``, keeping older entries.

    The section is found by its marker comment (created with the section when missing).
    """
    path = Path(path)
    text = path.read_text() if path.exists() else BENCHMARKS_HEADER
    marker = _marker(section)
    if marker not in text:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{marker}\n"
    head, tail = text.split(marker, 1)
    text = head + marker + "\n\n" + entry.strip("\n") + "\n" + tail
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
