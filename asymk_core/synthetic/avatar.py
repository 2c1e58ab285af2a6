"""A 2D talking-avatar renderer in numpy (vectorised over frames, anti-aliased via signed distances).

Deterministic from an identity seed (face shape, skin, hair, eyes, brows, lips, clothes,
background) and an appearance *variety* (:data:`VARIETIES`), a per-frame articulation track (mouth ``open``/``width`` in [0, 1], see
:mod:`.speech`) and a motion seed (audio-independent blinks and smooth head sway). Any square
resolution (64 px default; 128/256 work the same). Rendering 64 px runs at several hundred to
thousands of frames per second on one core, so training can render on the fly.

Coordinates: the image spans [-1, 1] in x (right) and y (down); one pixel is ``2 / size``. Shapes
are described in *head* coordinates (u, v), i.e. image coordinates translated by the head offset
(dx, dy) and rotated by the head roll (radians, positive = clockwise on screen).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ..errors import input_error
from .speech import derive_seed

HEAD_CENTRE = (0.0, -0.06)
VARIETIES = ("classic", "wide")
"""``classic``: the original identity distribution (natural skin tones, a few hair colours, textured
backgrounds, a centred head of one size). ``wide``: colours drawn from the whole RGB cube for
background, hair, clothes and (a third of the time) skin, flat / gradient / textured / noisy
backgrounds, head scale 0.75-1.2 and position anywhere near the centre; the face shapes and motion are
the classic ones. Training on ``wide`` leaves no appearance a model could memorise: the colours can
only be copied from the reference."""
REGIONS = {"background": 0, "clothes": 1, "skin": 2, "hair": 3, "mouth": 4, "other": 5}
"""Region labels of :func:`render_frames` (``regions=True``): the top layer covering each pixel
(coverage > 0.5); eyes, brows and the nose shadow are ``other``."""
MAX_MOUTH_OPEN = 0.12  # semi-height of the inner mouth at open = 1, in image units
NEUTRAL_WIDTH = 0.45   # mouth width of the closed, relaxed mouth (= silence target)

_SKIN_TONES = np.array([
    [0.98, 0.87, 0.78], [0.94, 0.78, 0.65], [0.87, 0.67, 0.52], [0.76, 0.55, 0.40],
    [0.60, 0.42, 0.30], [0.44, 0.30, 0.21], [0.32, 0.22, 0.16],
])
_HAIR_COLOURS = np.array([
    [0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.16], [0.80, 0.66, 0.38],
    [0.62, 0.26, 0.12], [0.70, 0.70, 0.72], [0.20, 0.25, 0.55], [0.75, 0.35, 0.55],
])
_IRIS_COLOURS = np.array([
    [0.30, 0.18, 0.10], [0.15, 0.35, 0.60], [0.25, 0.45, 0.25], [0.45, 0.40, 0.30], [0.1, 0.08, 0.06],
])


@dataclass(frozen=True)
class Identity:
    """Appearance of one avatar; all lengths in image units (the image is 2 units wide)."""

    seed: int
    face_w: float
    face_h: float
    chin: float
    skin: np.ndarray = field(repr=False)
    hair: np.ndarray = field(repr=False)
    hair_style: int = 0          # 0 short, 1 long, 2 fringe, 3 buzz
    hair_top: float = 0.0        # fringe line (v) of the hair on the forehead
    hair_wave: float = 0.0
    eye_dx: float = 0.19
    eye_y: float = -0.06
    eye_w: float = 0.085
    eye_h: float = 0.05
    iris: np.ndarray = field(default=None, repr=False)
    brow_y: float = 0.1
    brow_tilt: float = 0.0
    brow_t: float = 0.02
    mouth_y: float = 0.33
    mouth_w: float = 0.16
    lip_t: float = 0.025
    lips: np.ndarray = field(default=None, repr=False)
    shirt: np.ndarray = field(default=None, repr=False)
    bg_a: np.ndarray = field(default=None, repr=False)
    bg_b: np.ndarray = field(default=None, repr=False)
    bg_kind: int = 0             # 0 gradient, 1 stripes, 2 blobs, 3 checker, 4 flat
    bg_freq: float = 3.0
    bg_angle: float = 0.0
    bg_noise: float = 0.0        # std of a static per-pixel noise texture on the background
    head_scale: float = 1.0      # size of head and body relative to the classic avatar
    head_x: float = 0.0          # offset of head and body from the classic position (image units)
    head_y: float = 0.0
    variety: str = "classic"

    def vector(self) -> np.ndarray:
        """Identity as a float32 vector [29]: shape numbers and colours (for analysis / probes)."""
        scalars = [self.face_w, self.face_h, self.chin, self.hair_style / 3, self.hair_top, self.hair_wave,
                   self.eye_dx, self.eye_y, self.eye_w, self.eye_h, self.brow_y, self.brow_tilt, self.brow_t,
                   self.mouth_y, self.mouth_w, self.lip_t, self.bg_kind / 3]
        return np.concatenate([np.asarray(scalars), self.skin, self.hair, self.iris, self.lips]).astype(np.float32)


def make_identity(seed: int, variety: str = "classic") -> Identity:
    """Draw an :class:`Identity` from an integer seed and a :data:`VARIETIES` name."""
    if variety not in VARIETIES:
        raise input_error("variety", f"unknown appearance variety {variety!r}", f"use one of {list(VARIETIES)}")
    if variety == "wide":
        return _wide_identity(seed)
    rng = np.random.default_rng(derive_seed(seed, "identity"))
    tone = rng.uniform(0, len(_SKIN_TONES) - 1)
    lo = int(tone)
    skin = _SKIN_TONES[lo] * (1 - (tone - lo)) + _SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] * (tone - lo)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3), 0, 1)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.12, 0.0, 0.02]) * rng.uniform(0.5, 1.5), 0, 1)
    hue = rng.uniform(0, 1, 3)
    bg_a = np.clip(0.25 + 0.6 * hue, 0, 1)
    bg_b = np.clip(bg_a * rng.uniform(0.55, 0.9) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    face_w = rng.uniform(0.40, 0.52)
    return Identity(
        seed=int(seed), face_w=face_w, face_h=rng.uniform(0.56, 0.66), chin=rng.uniform(0.98, 1.12),
        skin=skin, hair=hair, hair_style=int(rng.integers(4)), hair_top=rng.uniform(-0.42, -0.28),
        hair_wave=rng.uniform(0.0, 0.05), eye_dx=face_w * rng.uniform(0.38, 0.48), eye_y=rng.uniform(-0.09, -0.02),
        eye_w=rng.uniform(0.07, 0.095), eye_h=rng.uniform(0.04, 0.055),
        iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))],
        brow_y=rng.uniform(0.09, 0.13), brow_tilt=rng.uniform(-0.05, 0.06), brow_t=rng.uniform(0.014, 0.028),
        mouth_y=rng.uniform(0.29, 0.35), mouth_w=rng.uniform(0.14, 0.19), lip_t=rng.uniform(0.02, 0.032),
        lips=lips, shirt=rng.uniform(0.1, 0.9, 3), bg_a=bg_a, bg_b=bg_b, bg_kind=int(rng.integers(4)),
        bg_freq=rng.uniform(2.0, 6.0), bg_angle=rng.uniform(0, np.pi),
    )


def _wide_identity(seed: int) -> Identity:
    """The classic face shape of ``seed`` with colours, background and framing drawn wide (own stream)."""
    base = make_identity(seed)
    rng = np.random.default_rng(derive_seed(seed, "identity-wide"))
    natural = rng.uniform() < 2 / 3
    skin = base.skin if natural else rng.uniform(0.05, 1.0, 3)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.12, 0.0, 0.02]) * rng.uniform(0.5, 1.5), 0, 1)
    bg_a = rng.uniform(0.0, 1.0, 3)
    bg_b = np.clip(bg_a + rng.uniform(-0.35, 0.35, 3), 0, 1)
    bg_kind = int(rng.choice([0, 1, 2, 3, 4, 4, 4]))  # flat backgrounds are common in user portraits
    return replace(
        base, skin=skin, lips=lips, hair=rng.uniform(0.0, 1.0, 3), shirt=rng.uniform(0.0, 1.0, 3),
        iris=rng.uniform(0.0, 0.7, 3), bg_a=bg_a, bg_b=bg_b, bg_kind=bg_kind,
        bg_noise=float(rng.choice([0.0, 0.0, rng.uniform(0.02, 0.08)])),
        head_scale=float(rng.uniform(0.75, 1.2)), head_x=float(rng.uniform(-0.15, 0.15)),
        head_y=float(rng.uniform(-0.1, 0.15)), variety="wide",
    )


# --------------------------------------------------------------------------------------------
# Motion (audio-independent)
# --------------------------------------------------------------------------------------------

def motion_tracks(motion_seed: int, num_frames: int, fps: float) -> dict[str, np.ndarray]:
    """Head sway and blinks, float32 ``[num_frames]`` each: ``head_dx``, ``head_dy`` (image units),
    ``head_roll`` (radians) and ``blink`` (0 open .. 1 closed). Frame k is at time k / fps; values
    are a function of time only, so any window of a clip can be computed on its own."""
    if fps <= 0:
        raise input_error("fps", f"got {fps!r}", "pass a positive frame rate such as 25")
    rng = np.random.default_rng(derive_seed(motion_seed, "motion"))
    t = np.arange(int(num_frames)) / float(fps)
    out = {}
    for name, amp in (("head_dx", 0.045), ("head_dy", 0.025), ("head_roll", 0.07)):
        sig = np.zeros_like(t)
        for _ in range(3):
            sig += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.04, 0.35) * t + rng.uniform(0, 2 * np.pi))
        out[name] = (amp * sig / 1.6).astype(np.float32)
    blink = np.zeros_like(t)
    start = rng.uniform(0.2, 3.0)
    end_t = t[-1] if len(t) else 0.0
    while start < end_t + 1:
        duration = rng.uniform(0.12, 0.25)
        inside = (t >= start) & (t < start + duration)
        blink[inside] = np.sin(np.pi * (t[inside] - start) / duration) ** 2
        start += duration + max(0.8, rng.exponential(3.2))
    out["blink"] = np.clip(blink, 0, 1).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _aa(d: np.ndarray, px: float) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (negative inside), one-pixel ramp."""
    return np.clip(0.5 - d * (1.0 / px), 0.0, 1.0)


def _ellipse(u, v, a, b):
    """Approximate signed distance to an ellipse with semi-axes a, b (arrays broadcast)."""
    pu, pv = u / a, v / b
    k0 = np.sqrt(pu * pu + pv * pv)
    qu, qv = pu / a, pv / b
    k1 = np.sqrt(qu * qu + qv * qv) + 1e-6
    # The gradient estimate fails far along the major axis of thin ellipses; the distance to the
    # bounding box is a lower bound of the true distance and fixes that.
    return np.maximum(k0 * (k0 - 1.0) / k1, np.maximum(np.abs(u) - a, np.abs(v) - b))


def _segment(u, v, ax, ay, bx, by, r):
    """Signed distance to a capsule from (ax, ay) to (bx, by) with radius r."""
    pu, pv = u - ax, v - ay
    eu, ev = bx - ax, by - ay
    h = np.clip((pu * eu + pv * ev) / (eu * eu + ev * ev), 0.0, 1.0)
    du, dv = pu - eu * h, pv - ev * h
    return np.sqrt(du * du + dv * dv) - r


def _blend(img, alpha, colour):
    """img [N,H,W,3] += alpha [N,H,W] * (colour - img); colour [3] or [N,H,W,3]."""
    img += alpha[..., None] * (np.asarray(colour, np.float32) - img)


@lru_cache(maxsize=64)
def _background(seed: int, size: int, variety: str = "classic") -> np.ndarray:
    ident = make_identity(seed, variety)
    y, x = _grid(size)
    rng = np.random.default_rng(derive_seed(seed, "background"))
    ca, sa = np.cos(ident.bg_angle), np.sin(ident.bg_angle)
    s = x * ca + y * sa
    if ident.bg_kind == 0:
        w = 0.5 + 0.5 * s
    elif ident.bg_kind == 1:
        w = 0.5 + 0.5 * np.tanh(3 * np.sin(np.pi * ident.bg_freq * s))
    elif ident.bg_kind == 2:
        w = np.zeros_like(x)
        for _ in range(6):
            cx, cy, r = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.15, 0.45)
            w = np.maximum(w, np.clip(1.0 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / r, 0, 1))
    elif ident.bg_kind == 3:
        w = 0.5 + 0.5 * np.tanh(2 * np.sin(np.pi * ident.bg_freq * x * 0.7) * np.sin(np.pi * ident.bg_freq * y * 0.7))
    else:  # flat
        return np.broadcast_to(ident.bg_a.astype(np.float32), (size, size, 3)).copy()
    wave_x = np.sin(2 * np.pi * rng.uniform(1, 3) * x + rng.uniform(0, 6))
    w = w + 0.08 * wave_x * np.sin(2 * np.pi * rng.uniform(1, 3) * y)
    w = np.clip(w, 0, 1)[..., None]
    bg = ident.bg_a * (1 - w) + ident.bg_b * w
    if ident.bg_noise:
        bg = np.clip(bg + rng.normal(0.0, ident.bg_noise, bg.shape), 0, 1)
    return bg.astype(np.float32)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    return y, x


def render_frames(identity: Identity | int, mouth_open, mouth_width, head_dx=None, head_dy=None, head_roll=None,
                  blink=None, *, size: int = 64, batch: int | None = None, regions: bool = False):
    """Render frames uint8 ``[N, size, size, 3]`` from per-frame parameters (each ``[N]``).

    ``regions=True`` returns ``(frames, labels)`` with ``labels`` uint8 ``[N, size, size]`` holding
    :data:`REGIONS` codes.

    ``mouth_open`` / ``mouth_width`` / ``blink`` in [0, 1]; ``head_dx``/``head_dy`` in image
    units (±0.1 is a few pixels at 64 px); ``head_roll`` in radians. Missing motion = still head.
    Frames are rendered ``batch`` at a time (default: about 64k pixels per batch).
    """
    ident = identity if isinstance(identity, Identity) else make_identity(int(identity))
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise input_error("size", f"got {size!r}", "pass an integer image size of at least 16 (64 is the default)")
    mouth_open = np.asarray(mouth_open, np.float32).reshape(-1)
    n = len(mouth_open)
    mouth_width = np.asarray(mouth_width, np.float32).reshape(-1)
    if len(mouth_width) != n:
        raise input_error("mouth_width", f"has {len(mouth_width)} frames but mouth_open has {n}",
                          "pass tracks of equal length")
    zeros = np.zeros(n, np.float32)
    params = []
    for name, value in (("head_dx", head_dx), ("head_dy", head_dy), ("head_roll", head_roll), ("blink", blink)):
        value = zeros if value is None else np.asarray(value, np.float32).reshape(-1)
        if len(value) != n:
            raise input_error(name, f"has {len(value)} frames but mouth_open has {n}", "pass tracks of equal length")
        params.append(value)
    out = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n, size, size), np.uint8) if regions else None
    batch = batch or max(1, 65536 // (size * size))  # ~64k pixels per batch stays in cache
    bg = _background(ident.seed, int(size), ident.variety)
    for i in range(0, n, batch):
        sl = slice(i, min(i + batch, n))
        out[sl] = _render_batch(ident, bg, int(size), np.clip(mouth_open[sl], 0, 1), np.clip(mouth_width[sl], 0, 1),
                                params[0][sl], params[1][sl], params[2][sl], np.clip(params[3][sl], 0, 1),
                                None if labels is None else labels[sl])
    return (out, labels) if regions else out


def _render_batch(ident: Identity, bg, size, mo, mw, dx, dy, roll, blink, labels=None) -> np.ndarray:
    """Frames uint8 ``[n, size, size, 3]``; fills ``labels`` ``[n, size, size]`` (REGIONS codes) if given."""
    n = len(mo)
    px = 2.0 / size
    y, x = _grid(size)
    if ident.head_scale != 1.0 or ident.head_x or ident.head_y:  # framing of the wide variety
        x, y, px = (x - ident.head_x) / ident.head_scale, (y - ident.head_y) / ident.head_scale, px / ident.head_scale
    if labels is not None:
        labels[:] = REGIONS["background"]

    def blend(alpha, colour, region):
        _blend(img, alpha, colour)
        if labels is not None:
            labels[alpha > 0.5] = REGIONS[region]
    col = lambda a: a.astype(np.float32)[:, None, None]  # noqa: E731  [N] -> [N,1,1]
    img = np.broadcast_to(bg, (n, size, size, 3)).copy()
    # Head coordinates.
    c, s = col(np.cos(roll)), col(np.sin(roll))
    X = x[None] - (HEAD_CENTRE[0] + col(dx))
    Y = y[None] - (HEAD_CENTRE[1] + col(dy))
    u = c * X + s * Y
    v = -s * X + c * Y
    mo3, mw3, bl3 = col(mo), col(mw), col(blink)

    # Body: shoulders sway with a fraction of the head offset; neck follows the head.
    bx = x[None] - 0.4 * col(dx)
    body = _ellipse(bx, y[None] - 1.12, np.float32(0.8), np.float32(0.5))
    blend(_aa(body, px), ident.shirt, "clothes")
    neck = np.maximum(np.abs(u) - ident.face_w * 0.45, -v + 0.2)
    blend(_aa(neck, px), ident.skin * 0.85, "skin")
    # Long hair behind the head.
    if ident.hair_style == 1:
        back = _ellipse(u, v - 0.12, np.float32(ident.face_w * 1.25), np.float32(ident.face_h * 1.15))
        blend(_aa(back, px), ident.hair * 0.85, "hair")
    # Ears, then face (jaw drops a little with the mouth).
    for side in (-1.0, 1.0):
        ear = _ellipse(u - side * ident.face_w * 0.98, v - 0.0, np.float32(0.06), np.float32(0.1))
        blend(_aa(ear, px), ident.skin * 0.9, "skin")
    lower_b = ident.face_h * ident.chin + 0.05 * mo3
    b = np.where(v > 0, lower_b, np.float32(ident.face_h))
    face = _ellipse(u, v, np.float32(ident.face_w), b)
    shade = 1.0 - 0.18 * np.clip((u / ident.face_w) ** 2, 0, 1)
    face_colour = ident.skin.astype(np.float32) * shade[..., None]
    blend(_aa(face, px), face_colour, "skin")
    # Hair on top: a cap above the fringe line (wavy), or a thin buzz cut.
    if ident.hair_style != 3:
        cap = _ellipse(u, v + 0.04, np.float32(ident.face_w * 1.08), np.float32(ident.face_h * 1.07))
        fringe = v - (ident.hair_top + ident.hair_wave * np.cos(u * 18.0))
        if ident.hair_style == 2:
            fringe = v - (ident.hair_top + 0.12 - 0.25 * np.abs(u + 0.1))
        blend(_aa(np.maximum(cap, fringe), px), ident.hair, "hair")
    else:
        cap = _ellipse(u, v + 0.02, np.float32(ident.face_w * 1.02), np.float32(ident.face_h * 1.02))
        blend(0.6 * _aa(np.maximum(cap, v - ident.hair_top - 0.04), px), ident.hair, "hair")
    # Eyes (blink shrinks the opening to a lid line), brows.
    eye_h = ident.eye_h * (1.0 - bl3) + 1e-3
    lid = ident.skin * 0.8
    for side in (-1.0, 1.0):
        eu, ev = u - side * ident.eye_dx, v - ident.eye_y
        eye = _ellipse(eu, ev, np.float32(ident.eye_w), eye_h)
        a_eye = _aa(eye, px)
        blend(a_eye, (0.95, 0.95, 0.93), "other")
        iris = np.sqrt(eu * eu + ev * ev) - ident.eye_h * 0.95
        _blend(img, _aa(iris, px) * a_eye, ident.iris)
        pupil = np.sqrt(eu * eu + ev * ev) - ident.eye_h * 0.45
        _blend(img, _aa(pupil, px) * a_eye, (0.03, 0.03, 0.03))
        lash = _segment(eu, ev, -ident.eye_w, 0.0, ident.eye_w, 0.0, np.float32(0.008))
        _blend(img, _aa(lash, px) * np.clip(bl3 * 1.6 - 0.4, 0, 1), lid * 0.6)
        by = ident.eye_y - ident.brow_y
        brow = _segment(u, v, side * (ident.eye_dx - ident.eye_w * 1.1), by + ident.brow_tilt * 0.5,
                        side * (ident.eye_dx + ident.eye_w * 1.1), by - ident.brow_tilt * 0.5, np.float32(ident.brow_t))
        blend(_aa(brow, px), ident.hair * 0.8, "other")
    # Nose shadow.
    nose = _segment(u, v, 0.0, ident.eye_y + 0.08, 0.02, ident.mouth_y - 0.12, np.float32(0.018))
    blend(_aa(nose, px) * 0.5, ident.skin * 0.7, "other")
    # Mouth: lips, dark inner mouth, upper teeth; closed = a lip seam.
    half_w = ident.mouth_w * (0.6 + 0.8 * mw3) * (1.0 - 0.12 * mo3)
    inner_h = MAX_MOUTH_OPEN * mo3 + 1e-3
    mu, mv = u, v - ident.mouth_y - 0.4 * inner_h
    lips = _ellipse(mu, mv, half_w + 0.01, inner_h + ident.lip_t * 1.6)
    blend(_aa(lips, px), ident.lips, "mouth")
    inner = _ellipse(mu, mv, half_w * 0.82, inner_h)
    a_inner = _aa(inner, px) * np.clip(mo3 * 12.0, 0, 1)  # a closed mouth has no visible inside
    blend(a_inner, (0.22, 0.05, 0.07), "mouth")
    teeth = mv + inner_h * 0.45
    _blend(img, a_inner * _aa(teeth, px), (0.93, 0.92, 0.88))
    seam = _segment(mu, mv, -half_w * 0.85, 0.0, half_w * 0.85, 0.0, np.float32(0.006))
    _blend(img, _aa(seam, px) * np.clip(1.0 - mo3 * 6.0, 0, 1), ident.lips * 0.55)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_clip(identity_seed: int, mouth_open, mouth_width, motion_seed: int, *, fps: float = 25.0,
                size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render a clip: frames uint8 ``[N, size, size, 3]`` and the per-frame parameter tracks
    (``mouth_open``, ``mouth_width``, ``head_dx``, ``head_dy``, ``head_roll``, ``blink`` float32
    ``[N]``; ``identity`` float32 [29])."""
    mouth_open = np.asarray(mouth_open, np.float32)
    motion = motion_tracks(motion_seed, len(mouth_open), fps)
    ident = make_identity(identity_seed)
    frames = render_frames(ident, mouth_open, mouth_width, size=size, **motion)
    tracks = {"mouth_open": mouth_open, "mouth_width": np.asarray(mouth_width, np.float32), **motion,
              "identity": ident.vector()}
    return frames, tracks


def render_portrait(identity_seed: int, size: int = 64, variety: str = "classic") -> np.ndarray:
    """The neutral reference image uint8 ``[size, size, 3]``: still head, eyes open, mouth closed."""
    return render_frames(make_identity(identity_seed, variety), [0.0], [NEUTRAL_WIDTH], size=size)[0]
