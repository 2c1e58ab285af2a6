"""Options of real-data preprocessing (no heavy imports: the CLI registers them at start-up).

:class:`PreprocessConfig` holds every setting; :func:`add_arguments` adds the matching command-line
flags (used by ``train/preprocess.py`` and ``asymk-talker preprocess``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass
class PreprocessConfig:
    """Every knob of the preprocessing (saved to ``preprocess/config.json``)."""

    fps: float = 25.0
    size: int = 512                      # crop side in pixels (multiple of the VAE's spatial factor x 2)
    clip_frames: int = 101               # video frames per clip; 1 + 4k gives exactly 1 + k latents
    stride: int | None = None            # between clip starts (default: clip_frames, no overlap)
    max_clips_per_video: int | None = None
    reference_window: int = 7            # latent frames per TRE reference (>= kernel + chunk frames)
    num_references: int = 4              # TRE references per clip
    reference_scope: str = "video"       # "video": frames spread over the whole video; "clip": the clip's own
    audio_dtype: str = "float32"         # or float16 (halves the cache's audio)
    identity: str = "stem"               # identity = video file stem ("stem") or its parent folder ("parent")
    heldout_fraction: float = 0.0        # identities hashed into the "heldout" split
    analysis_side: int = 360             # longer side of the frames used for detection
    detect_every: int = 1                # run the face detector on every n-th frame (others interpolated)
    min_face_fraction: float = 0.3       # below this share of frames with a face: "no face"
    box_scale: float = 1.8               # crop side / face size
    cut_threshold: float = 0.3
    trim_s: float = 0.2                  # dropped at both ends of every usable segment
    seed: int = 0

    def validate(self) -> None:
        if self.clip_frames < 5:
            raise ValueError(f"clip_frames must be >= 5, got {self.clip_frames}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16, got {self.size}")
        if self.reference_scope not in ("video", "clip"):
            raise ValueError(f"reference_scope must be 'video' or 'clip', got {self.reference_scope!r}")
        if self.identity not in ("stem", "parent"):
            raise ValueError(f"identity must be 'stem' or 'parent', got {self.identity!r}")
        if self.audio_dtype not in ("float32", "float16"):
            raise ValueError(f"audio_dtype must be float32 or float16, got {self.audio_dtype!r}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")



def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    defaults = PreprocessConfig()
    parser.add_argument("--input", "-i", action="append", required=True,
                        help="video folder (recursive), video file or .txt list of paths; repeatable")
    parser.add_argument("--out", required=True, help="latent cache folder (resumable)")
    models = parser.add_argument_group("models")
    models.add_argument("--pipeline", help="AsymKPipeline folder: its vae, audio_encoder and feature_extractor")
    models.add_argument("--vae", help="AutoencoderKLWan folder, or a Wan2.1 diffusers folder / Hub id with vae/")
    models.add_argument("--audio-encoder", help="wav2vec2 folder or Hub id (e.g. facebook/wav2vec2-base-960h), "
                                                "or 'log-mel' (default with --vae)")
    models.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="VAE dtype")
    run = parser.add_argument_group("processes")
    run.add_argument("--workers", type=int, default=0, help="worker processes (0: in this process)")
    run.add_argument("--devices", default=None, help="comma-separated devices for the workers, e.g. cuda:0,cuda:1 "
                                                     "(default: cuda if available, else cpu)")
    run.add_argument("--threads", type=int, default=None, help="torch threads per process")
    run.add_argument("--rank", type=int, default=None, help="shard index (default: $RANK or 0)")
    run.add_argument("--world-size", type=int, default=None, help="shard count (default: $WORLD_SIZE or 1)")
    run.add_argument("--retry-failed", action="store_true", help="retry videos that failed in an earlier run")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    data = parser.add_argument_group("data")
    data.add_argument("--fps", type=float, default=defaults.fps)
    data.add_argument("--size", type=int, default=defaults.size, help="crop side in pixels")
    data.add_argument("--clip-frames", type=int, default=defaults.clip_frames,
                      help="video frames per clip (1 + 4k; 101 = 4 s at 25 fps)")
    data.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: clip length)")
    data.add_argument("--max-clips-per-video", type=int, default=None)
    data.add_argument("--reference-window", type=int, default=defaults.reference_window)
    data.add_argument("--num-references", type=int, default=defaults.num_references)
    data.add_argument("--reference-scope", choices=("video", "clip"), default=defaults.reference_scope)
    data.add_argument("--audio-dtype", choices=("float32", "float16"), default=defaults.audio_dtype)
    data.add_argument("--identity", choices=("stem", "parent"), default=defaults.identity,
                      help="identity of a video: its file name (HDTF) or its parent folder (one folder per person)")
    data.add_argument("--heldout-fraction", type=float, default=defaults.heldout_fraction)
    data.add_argument("--analysis-side", type=int, default=defaults.analysis_side)
    data.add_argument("--detect-every", type=int, default=defaults.detect_every)
    data.add_argument("--min-face-fraction", type=float, default=defaults.min_face_fraction)
    data.add_argument("--box-scale", type=float, default=defaults.box_scale)
    data.add_argument("--cut-threshold", type=float, default=defaults.cut_threshold)
    data.add_argument("--seed", type=int, default=defaults.seed)
    return parser
