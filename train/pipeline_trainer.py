"""What the two transformer stages (teacher, AKD) share on top of :class:`~.common.Trainer`.

Both train an ``AsymKTransformer`` on clip windows (:func:`build_clip_dataset`), validate by
rendering held-out synthetic clips with a pipeline (:func:`render_validation`) and end with a
complete ``AsymKPipeline`` folder, ``output_dir/pipeline``, holding the EMA weights.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..asymk_core.models.transformer import AsymKTransformer
from ..asymk_core.vae import spatial_factor
from ..pipelines.pipeline_asymk import AsymKPipeline
from .common import Config, Trainer, write_json
from .data import LatentClipDataset, SyntheticClipDataset, read_cache_manifest

logger = logging.getLogger("asymk_talker.train")


def load_pipeline_parts(folder: str | Path) -> tuple[dict, dict]:
    """``(components, pipeline_config)`` of a pipeline folder; VAE and audio encoder frozen in eval mode."""
    pipe = AsymKPipeline.from_pretrained(folder)
    components = dict(pipe.components)
    pipeline_config = {k: v for k, v in pipe.config.items() if not k.startswith("_") and k not in components}
    for name in ("vae", "audio_encoder"):
        components[name].requires_grad_(False).eval()
    return components, pipeline_config


def build_clip_dataset(config: Config, components: dict, num_chunks: int = 1, split: str | None = None,
                       seed: int | None = None):
    """Training windows of ``data.kernel_frames`` GT kernel latents + ``num_chunks`` chunks of
    ``data.chunk_frames`` (``train/data.py``), from a latent cache (``data.source: cache``, checked
    against the model's VAE normalisation and latent channels) or rendered and VAE-encoded on the
    fly (``data.source: synthetic``). ``split``/``seed`` default to ``data.split``/``seed``."""
    data = config.data
    window = int(components["transformer"].config.audio_window)
    seed = int(config.seed) if seed is None else seed
    tau, n = int(data.kernel_frames), int(data.chunk_frames)
    if data.source == "cache":
        if not data.get("cache_dir"):
            raise ValueError("data.cache_dir is not set (build a cache with `python -m asymk_talker.train.data`)")
        meta, _ = read_cache_manifest(data.cache_dir)
        for key in ("latents_mean", "latents_std"):
            if not np.allclose(meta[key], list(components["vae"].config[key]), atol=1e-6):
                raise ValueError(f"the latent cache {data.cache_dir} was made with another VAE normalisation ({key}); "
                                 "rebuild it with this model's VAE or point model.vae at the VAE it was made with")
        if meta["latent_channels"] != components["transformer"].config.latent_channels:
            raise ValueError("the latent cache's channels do not match the transformer's latent_channels")
        return LatentClipDataset(data.cache_dir, tau, n, num_chunks, split=split or data.split, seed=seed,
                                 audio_window=window, reference=data.get("reference", "random"),
                                 in_memory=bool(data.get("in_memory")))
    if data.source == "synthetic":
        synthetic = data.synthetic
        return SyntheticClipDataset(
            components["vae"], components["audio_encoder"], tau, n, num_chunks,
            split="heldout" if (split or "train").startswith("heldout") else "train", seed=seed, audio_window=window,
            size=int(synthetic.size), fps=float(synthetic.fps), num_identities=synthetic.get("num_identities"),
            reference=data.get("reference", "random"), epoch_size=int(synthetic.get("epoch_size", 1000)),
            feature_extractor=components.get("feature_extractor"))
    raise ValueError(f"data.source must be 'cache' or 'synthetic', got {data.source!r}")


def make_pipeline(components: dict, transformer, pipeline_config: dict) -> AsymKPipeline:
    """A pipeline of ``components`` with ``transformer`` in place of theirs."""
    parts = {k: v for k, v in components.items() if k != "transformer"}
    return AsymKPipeline(transformer=transformer, **parts, **pipeline_config)


@torch.no_grad()
def render_validation(pipe, config: Config, step: int, out_dir: Path) -> dict:
    """Render held-out synthetic clips (``validation.identities`` of ``validation.seconds`` s);
    save ``step-<step>.mp4`` (generated | ground truth, with audio) and, when the eval module and
    its probe are available, score sync / identity drift / boundary jump into
    ``step-<step>.json``. Returns scalars (``val/render_seconds``: wall clock of the renders)."""
    val = config.validation
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": int(val.num_inference_steps)}
    if val.get("guidance_scale") is not None:
        kwargs["guidance_scale"] = float(val.guidance_scale)
    try:
        from ..asymk_core.eval.evaluate import evaluation_clips, generate_with_pipeline
    except ImportError as error:  # the eval module is optional for training
        logger.warning("validation render skipped: %s", error)
        return {}
    from ..asymk_core.video_io import VideoWriter

    size, fps = int(pipe.config.height), float(pipe.config.fps)
    clips = evaluation_clips("heldout", int(val.identities), float(val.seconds), size=size, fps=fps)
    results, renders = [], []
    started = time.perf_counter()
    for clip in clips:
        sample = clip.sample()
        frames, starts = generate_with_pipeline(pipe, sample.portrait, sample.audio, seed=0, **kwargs)
        renders.append((frames, sample))
        if val.get("synthetic_eval", True) and int(pipe.config.width) == size:
            try:
                from ..asymk_core.eval.metrics import evaluate_frames

                results.append(evaluate_frames(frames, sample.tracks, sample.portrait, starts, fps=fps,
                                               gt_frames=sample.frames))
            except Exception as error:  # the probe is optional (e.g. assets not shipped)
                logger.warning("validation metrics skipped: %s: %s", type(error).__name__, error)
    elapsed = time.perf_counter() - started
    frames, sample = renders[0]
    both = np.concatenate([frames, sample.frames[: len(frames)]], axis=2)
    with VideoWriter(str(out_dir / f"step-{step:07d}.mp4"), fps, both.shape[2], both.shape[1], audio=sample.audio,
                     audio_sample_rate=sample.sample_rate) as writer:
        writer.write(both)
    scalars = {"val/render_seconds": elapsed}
    if results:
        from ..asymk_core.eval.metrics import summarize

        summary = summarize(results)
        for key, value in summary.items():
            if isinstance(value, (int, float)) and value is not None and key != "clips":
                scalars[f"val/{key}"] = float(value)
        write_json(out_dir / f"step-{step:07d}.json", {"step": step, "summary": summary})
    return scalars


class PipelineTrainer(Trainer):
    """A :class:`Trainer` whose final model is an ``AsymKPipeline`` folder: ``self.components``
    (vae, audio_encoder, feature_extractor, scheduler; the transformer is ``self.model``) and
    ``self.pipeline_config`` (generation defaults) are set by the stage's ``setup``."""

    final_name = "pipeline"

    def __init__(self, config: Config):
        super().__init__(config)
        self.components: dict = {}
        self.pipeline_config: dict = {}

    def set_frame_size(self, dataset) -> None:
        """``height``/``width`` of the saved pipeline: the training latents' size in pixels."""
        latent_h, latent_w = dataset[0]["target_latents"].shape[-2:]
        factor = spatial_factor(self.components["vae"])
        self.pipeline_config["height"] = int(latent_h) * factor
        self.pipeline_config["width"] = int(latent_w) * factor

    def final_model(self, state: dict[str, torch.Tensor]) -> AsymKPipeline:
        transformer = AsymKTransformer.from_config(self.accelerator.unwrap_model(self.model).config)
        transformer.load_state_dict(state)
        return make_pipeline(self.components, transformer.eval(), self.pipeline_config)

    def render(self, step: int, saved: Path | None = None) -> dict:
        """:func:`render_validation` of the saved pipeline folder ``saved``, or else of the current
        EMA weights (main process only; the caller puts the model in eval mode)."""
        out_dir = self.output_dir / "validation"
        if saved is not None:
            pipe = AsymKPipeline.from_pretrained(saved)
            pipe.to(self.accelerator.device)
            return render_validation(pipe, self.config, step, out_dir)
        unwrapped = self.accelerator.unwrap_model(self.model)
        with self.averaged(unwrapped):
            return render_validation(make_pipeline(self.components, unwrapped, self.pipeline_config),
                                     self.config, step, out_dir)
