"""Write the ComfyUI template thumbnails: a frame of each template's output, rendered with the
shipped default model (models/asymk-synthetic) from the shipped example portrait and speech.

ComfyUI shows ``workflows/<name>.jpg`` next to ``workflows/<name>.json`` under Templates >
Extensions. Run from the repository root after the default model changes:

    python tools/make_template_thumbnails.py [NAME ...]   # default: every template

``tests/test_comfy_nodes.py`` renders the same frames and checks that the thumbnails show them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = 256  # the model renders 64 x 64; thumbnails are upscaled so the gallery card is not a blur
# template -> (seconds of the example speech rendered, frame shown): the talking-head clip shows a
# frame in the middle of its short clip, the long-form one a frame near the end of the speech
THUMBNAILS = {"asymk_talking_head": (1.2, 20), "asymk_long_form": (4.0, 90), "asymk_photo": (1.2, 20)}
PASTE_BACK = {"asymk_photo"}  # templates whose output is the face pasted back into the whole picture


def render_frames(seconds: float, paste_back: bool = False) -> "numpy.ndarray":
    """uint8 ``[N, 64, 64, 3]`` (with ``paste_back`` the portrait's 256 x 256): the shipped model on
    the example portrait and speech, seed 0."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT.parent))
    from asymk_talker import AsymKPipeline
    from asymk_talker.asymk_core.audio import SAMPLE_RATE, load_audio

    pipe = AsymKPipeline.from_pretrained(None)
    pipe.set_progress_bar_config(disable=True)
    speech = load_audio(ROOT / "assets" / "examples" / "speech.wav")[: int(seconds * SAMPLE_RATE)]
    frames = pipe(image=str(ROOT / "assets" / "examples" / "portrait.png"), audio=speech, sample_rate=SAMPLE_RATE,
                  generator=torch.Generator().manual_seed(0), output_type="np", paste_back=paste_back).frames
    frames = np.asarray(frames)
    frames = frames[0] if frames.ndim == 5 else frames  # [N, H, W, 3]
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def thumbnail(frame) -> "PIL.Image.Image":
    from PIL import Image

    return Image.fromarray(frame).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main(names=None) -> int:
    for name in names or THUMBNAILS:
        seconds, index = THUMBNAILS[name]
        path = ROOT / "workflows" / f"{name}.jpg"
        thumbnail(render_frames(seconds, paste_back=name in PASTE_BACK)[index]).save(path, quality=90)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
