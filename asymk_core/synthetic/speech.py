"""Speech-like audio with a known phonetic track, and the mouth articulation it implies.

Everything is deterministic from integer seeds. Audio is float32 mono at 16 kHz in [-1, 1].

* :func:`synthesize_speech` — phrases of CV(C) syllables separated by pauses. Vowels /a e i o u/
  are formant-synthesised (glottal pulse train with a prosodic F0 contour through a cascade of
  two-pole F1/F2/F3 resonators); consonants are plosives /p b t k/ (closure + burst), nasals
  /m n/ (low-formant voicing) and fricatives /f s/ (shaped noise). Speaking rate and loudness vary
  per phrase and per syllable.
* :func:`articulation_at` / :func:`articulation_targets` — the phonetic track turned into mouth
  ``open`` and ``width`` in [0, 1] at any times / any frame rate, with dominance-weighted
  smoothing (coarticulation): bilabials /p b m/ and pauses close the lips fully, vowels set the
  shape, /t k n s/ yield to their neighbours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from ..errors import input_error

SAMPLE_RATE = 16000

VOWELS = ("a", "e", "i", "o", "u")
PLOSIVES = ("p", "b", "t", "k")
NASALS = ("m", "n")
FRICATIVES = ("f", "s")
CONSONANTS = PLOSIVES + NASALS + FRICATIVES
SILENCE = "sil"
PHONES = VOWELS + CONSONANTS + (SILENCE,)
BILABIALS = ("p", "b", "m")

# Formants (Hz) of an adult reference voice: F1, F2, F3 and bandwidths.
_FORMANTS = {
    "a": (750, 1250, 2600),
    "e": (480, 1900, 2550),
    "i": (290, 2250, 3000),
    "o": (480, 850, 2500),
    "u": (320, 750, 2300),
    "m": (260, 1100, 2300),
    "n": (260, 1500, 2500),
    "b": (200, 900, 2300),
}
_BANDWIDTHS = (80.0, 100.0, 140.0)

# Articulation targets per phone: (open, width, dominance). Dominance weights the phone in the
# coarticulation smoothing: high = the lips must reach the target, low = shaped by neighbours.
ARTICULATION = {
    "a": (1.00, 0.55, 1.0),
    "e": (0.60, 0.75, 1.0),
    "i": (0.30, 1.00, 1.0),
    "o": (0.70, 0.25, 1.0),
    "u": (0.30, 0.00, 1.0),
    "p": (0.00, 0.50, 12.0),
    "b": (0.00, 0.50, 12.0),
    "m": (0.00, 0.50, 12.0),
    "f": (0.08, 0.55, 3.0),
    "t": (0.25, 0.55, 0.15),
    "k": (0.30, 0.50, 0.15),
    "n": (0.20, 0.55, 0.2),
    "s": (0.15, 0.70, 0.4),
    SILENCE: (0.00, 0.45, 6.0),
}

COARTICULATION_SIGMA_S = 0.022
LIP_LEAD_S = 0.04


@dataclass(frozen=True)
class Segment:
    """One phone of the phonetic track: ``phone`` in :data:`PHONES`, times in seconds, linear
    ``loudness`` gain in [0, 1] (0 for pauses)."""

    phone: str
    start_s: float
    end_s: float
    loudness: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Voice:
    """Speaker traits: mean F0 (Hz), formant scale (vocal tract length), breathiness in [0, 1]."""

    f0_hz: float = 130.0
    formant_scale: float = 1.0
    breathiness: float = 0.1


def derive_seed(*parts: int | str) -> int:
    """A 31-bit seed derived deterministically from integers/strings (order matters)."""
    words = []
    for part in parts:
        if isinstance(part, str):
            words.extend(part.encode("utf-8"))
        else:
            words.append(int(part) & 0xFFFFFFFF)
            words.append((int(part) >> 32) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def voice_for_seed(seed: int) -> Voice:
    """A speaker voice drawn from ``seed`` (the corpus uses the identity seed: one voice per person)."""
    rng = np.random.default_rng(derive_seed(seed, "voice"))
    if rng.random() < 0.5:  # lower / higher voices
        f0 = rng.uniform(90, 140)
        scale = rng.uniform(0.92, 1.02)
    else:
        f0 = rng.uniform(170, 240)
        scale = rng.uniform(1.05, 1.18)
    return Voice(f0_hz=float(f0), formant_scale=float(scale), breathiness=float(rng.uniform(0.03, 0.25)))


# --------------------------------------------------------------------------------------------
# Phonetic track
# --------------------------------------------------------------------------------------------

def phonetic_track(seed: int, seconds: float) -> list[Segment]:
    """A contiguous list of :class:`Segment` covering ``[0, seconds]``: phrases of 2-9 syllables
    ((C)V(C)), pauses of 0.15-0.7 s between phrases, a speaking rate and loudness per phrase."""
    _check_seconds(seconds)
    rng = np.random.default_rng(derive_seed(seed, "track"))
    segments: list[Segment] = []
    t = float(rng.uniform(0.05, 0.4))  # leading silence
    segments.append(Segment(SILENCE, 0.0, t, 0.0))
    while t < seconds:
        rate = rng.uniform(0.75, 1.35)  # duration multiplier (>1 = slower)
        phrase_loud = rng.uniform(0.45, 1.0)
        for syllable in range(int(rng.integers(2, 10))):
            stress = 1.0 if rng.random() < 0.35 else rng.uniform(0.6, 0.85)
            loud = float(np.clip(phrase_loud * stress * (1.0 - 0.04 * syllable), 0.2, 1.0))
            phones = []
            if rng.random() < 0.85:
                phones.append(str(rng.choice(CONSONANTS, p=_ONSET_P)))
            phones.append(str(rng.choice(VOWELS, p=_VOWEL_P)))
            if rng.random() < 0.25:
                phones.append(str(rng.choice(("m", "n", "s", "t", "k"))))
            for phone in phones:
                duration = _phone_duration(phone, rng) * rate * (1.15 if stress == 1.0 and phone in VOWELS else 1.0)
                segments.append(Segment(phone, t, t + duration, loud))
                t += duration
            if rng.random() < 0.08:  # short hesitation between words
                gap = float(rng.uniform(0.06, 0.14))
                segments.append(Segment(SILENCE, t, t + gap, 0.0))
                t += gap
        pause = float(rng.uniform(0.15, 0.7))
        segments.append(Segment(SILENCE, t, t + pause, 0.0))
        t += pause
    # Clip to the requested duration; the track always ends in the state it is in at ``seconds``.
    out = []
    for seg in segments:
        if seg.start_s >= seconds:
            break
        out.append(Segment(seg.phone, round(seg.start_s, 6), round(min(seg.end_s, seconds), 6), seg.loudness))
    return out


_ONSET_P = np.array([0.14, 0.13, 0.12, 0.11, 0.14, 0.12, 0.11, 0.13])  # p b t k m n f s
_ONSET_P = _ONSET_P / _ONSET_P.sum()
_VOWEL_P = np.array([0.28, 0.2, 0.2, 0.16, 0.16])


def _phone_duration(phone: str, rng: np.random.Generator) -> float:
    if phone in VOWELS:
        return float(rng.uniform(0.09, 0.21))
    if phone in PLOSIVES:
        return float(rng.uniform(0.07, 0.11))
    if phone in NASALS:
        return float(rng.uniform(0.06, 0.10))
    return float(rng.uniform(0.08, 0.14))  # fricatives


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------

def synthesize_speech(seed: int, seconds: float, *, voice: Voice | None = None,
                      sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[Segment]]:
    """Speech-like audio for utterance ``seed``.

    Returns ``(waveform float32 [round(seconds * sample_rate)] in [-1, 1], phonetic track)``.
    ``voice`` defaults to :func:`voice_for_seed` (seed).
    """
    if not isinstance(sample_rate, int) or sample_rate < 8000:
        raise input_error("sample_rate", f"got {sample_rate!r}",
                          "use an integer of at least 8000 Hz (16000 is the default)")
    track = phonetic_track(seed, seconds)
    voice = voice or voice_for_seed(seed)
    rng = np.random.default_rng(derive_seed(seed, "audio"))
    n = int(round(seconds * sample_rate))
    sr = sample_rate

    # Prosody: F0 contour over the whole utterance (declination per phrase + slow wobble + accents).
    t = np.arange(n) / sr
    wobble = sum(rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * rng.uniform(0.3, 2.5) * t + rng.uniform(0, 2 * np.pi))
                 for _ in range(3))
    decl = np.zeros(n)
    phrase_start = 0.0
    for seg in track:
        if seg.phone == SILENCE:
            phrase_start = seg.end_s
        else:
            i0, i1 = int(seg.start_s * sr), int(seg.end_s * sr)
            decl[i0:i1] = -0.12 * (t[i0:i1] - phrase_start) + 0.25 * (seg.loudness - 0.6)
    f0 = voice.f0_hz * np.exp(wobble + decl)
    jitter = 1.0 + 0.01 * rng.standard_normal(n)
    phase = np.cumsum(f0 * jitter) / sr
    pulses = np.zeros(n)
    idx = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    pulses[idx] = 1.0
    # Glottal pulse shape: a double one-pole low-pass (about -12 dB/octave spectral tilt).
    glottal = lfilter([1.0], [1.0, -0.97], lfilter([1.0], [1.0, -0.6], pulses))
    glottal = glottal - lfilter([1.0], [1.0, -0.995], glottal) * 0.005  # remove DC drift
    glottal /= np.max(np.abs(glottal)) + 1e-9
    noise = rng.standard_normal(n)

    out = np.zeros(n + int(0.05 * sr))
    tail = int(0.03 * sr)
    for k, seg in enumerate(track):
        i0, i1 = int(round(seg.start_s * sr)), int(round(seg.end_s * sr))
        if i1 <= i0 or seg.phone == SILENCE:
            continue
        length = i1 - i0
        ext = min(i1 + tail, n)
        src_v = glottal[i0:ext] * (1 - voice.breathiness) + voice.breathiness * 0.3 * noise[i0:ext]
        src_n = noise[i0:ext]
        env = _envelope(ext - i0, length, ramp=int(0.012 * sr))
        phone = seg.phone
        if phone in VOWELS:
            nxt = track[k + 1].phone if k + 1 < len(track) else SILENCE
            sig = _formant_filter(src_v, _FORMANTS[phone], voice.formant_scale, sr,
                                  glide_to=_FORMANTS.get(nxt) if nxt in VOWELS + NASALS else None)
            sig *= env
        elif phone in NASALS:
            sig = _formant_filter(src_v, _FORMANTS[phone], voice.formant_scale, sr) * env * 0.35
            sig = lfilter([0.3], [1.0, -0.7], sig)
        elif phone in FRICATIVES:
            if phone == "s":
                sig = _bandpass(src_n, 5500 * voice.formant_scale, 2500, sr) * 0.22
            else:
                sig = _bandpass(src_n, 3000, 3500, sr) * 0.08
            sig *= env
        else:  # plosives: closure (silence or voice bar) then a decaying noise burst
            sig = np.zeros(ext - i0)
            burst_len = int(rng.uniform(0.012, 0.025) * sr)
            b0 = max(length - burst_len - int(0.01 * sr), 0)
            centre = {"p": 900, "b": 900, "t": 4200, "k": 2200}[phone]
            burst = _bandpass(src_n[b0:], centre * voice.formant_scale, centre * 0.8, sr)
            decay = np.exp(-np.arange(len(burst)) / (0.008 * sr))
            sig[b0:] = burst * decay * (0.45 if phone in ("p", "t", "k") else 0.25)
            if phone == "b":  # voice bar during the closure
                bar = _formant_filter(src_v, _FORMANTS["b"], voice.formant_scale, sr) * 0.12
                sig[:b0] += bar[:b0] * _envelope(b0, b0, ramp=int(0.01 * sr)) if b0 > 0 else 0
        out[i0:ext] += sig * seg.loudness
    out = out[:n]
    peak = np.max(np.abs(out))
    if peak > 0:
        out = out / peak * 0.9
    out += 2e-4 * noise  # room noise floor
    return np.clip(out, -1, 1).astype(np.float32), track


def _envelope(total: int, length: int, ramp: int) -> np.ndarray:
    env = np.zeros(total)
    env[:length] = 1.0
    ramp = max(1, min(ramp, length // 2))
    env[:ramp] = np.linspace(0.0, 1.0, ramp, endpoint=False) ** 2
    env[length - ramp:length] = np.linspace(1.0, 0.0, ramp) ** 2
    return env


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonator with unit gain at DC: y = b x - a1 y[-1] - a2 y[-2]."""
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * min(freq, 0.45 * sr) / sr
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([a.sum()]), a


def _formant_filter(source: np.ndarray, formants, scale: float, sr: int, glide_to=None) -> np.ndarray:
    """Cascade of three resonators. With ``glide_to`` the signal is a cross-fade of the two vowel
    filters over the segment (formant transition into the next vowel/nasal)."""
    def cascade(fs):
        y = source
        for f, bw in zip(fs, _BANDWIDTHS):
            b, a = _resonator(f * scale, bw, sr)
            y = lfilter(b, a, y)
        return y

    y = cascade(formants)
    if glide_to is not None:
        w = np.clip(np.linspace(-1.5, 1.0, len(source)), 0, 1)
        y = y * (1 - w) + cascade(glide_to) * w
    return y


def _bandpass(x: np.ndarray, centre: float, bandwidth: float, sr: int) -> np.ndarray:
    b, a = _resonator(centre, bandwidth, sr)
    y = lfilter([1.0, 0.0, -1.0], a, x) * (1 - np.exp(-np.pi * bandwidth / sr))
    return y


# --------------------------------------------------------------------------------------------
# Articulation
# --------------------------------------------------------------------------------------------

def articulation_at(track: list[Segment], times_s) -> tuple[np.ndarray, np.ndarray]:
    """Mouth ``open`` and ``width`` (float32 in [0, 1], shaped like ``times_s``) at the given times.

    Per-phone targets (:data:`ARTICULATION`; vowel opening scales with loudness) are blended with a
    Gaussian coarticulation kernel (sigma 22 ms) weighted by each phone's dominance. Times outside
    the track count as silence (closed lips).
    """
    times = np.asarray(times_s, dtype=np.float64)
    if not track:
        return np.zeros(times.shape, np.float32), np.full(times.shape, ARTICULATION[SILENCE][1], np.float32)
    step = 0.002
    end = track[-1].end_s
    margin = 0.2
    grid_n = int(np.ceil((end + 2 * margin) / step)) + 1
    grid_t = np.arange(grid_n) * step - margin
    target_open = np.full(grid_n, ARTICULATION[SILENCE][0])
    target_width = np.full(grid_n, ARTICULATION[SILENCE][1])
    weight = np.full(grid_n, ARTICULATION[SILENCE][2])
    for seg in track:
        i0 = int(np.searchsorted(grid_t, seg.start_s))
        i1 = int(np.searchsorted(grid_t, seg.end_s))
        o, w, d = ARTICULATION[seg.phone]
        if seg.phone in VOWELS:
            o = o * (0.55 + 0.45 * seg.loudness)
        target_open[i0:i1], target_width[i0:i1], weight[i0:i1] = o, w, d
    sigma = COARTICULATION_SIGMA_S / step
    den = gaussian_filter1d(weight, sigma, mode="nearest")
    open_s = gaussian_filter1d(weight * target_open, sigma, mode="nearest") / den
    width_s = gaussian_filter1d(weight * target_width, sigma, mode="nearest") / den
    open_t = np.interp(times, grid_t, open_s, left=ARTICULATION[SILENCE][0], right=open_s[-1])
    width_t = np.interp(times, grid_t, width_s, left=ARTICULATION[SILENCE][1], right=width_s[-1])
    return np.clip(open_t, 0, 1).astype(np.float32), np.clip(width_t, 0, 1).astype(np.float32)


def articulation_targets(track: list[Segment], fps: float, num_frames: int, *,
                         lead_s: float = LIP_LEAD_S) -> tuple[np.ndarray, np.ndarray]:
    """Per-video-frame mouth ``open``, ``width`` float32 ``[num_frames]``.

    Frame ``k`` shows time ``k / fps``; the lips lead the sound by ``lead_s`` (default 40 ms), so
    frame ``k`` takes the articulation at ``k / fps + lead_s``. This is the audio-determined ground
    truth that the avatar renders and that the sync metric compares against.
    """
    if not fps or fps <= 0:
        raise input_error("fps", f"got {fps!r}", "pass a positive frame rate such as 25")
    return articulation_at(track, np.arange(int(num_frames)) / float(fps) + lead_s)


def track_to_json(track: list[Segment]) -> list[dict]:
    return [seg.to_dict() for seg in track]


def track_from_json(items) -> list[Segment]:
    return [Segment(str(d["phone"]), float(d["start_s"]), float(d["end_s"]), float(d["loudness"])) for d in items]


def _check_seconds(seconds) -> None:
    if not isinstance(seconds, (int, float)) or not np.isfinite(seconds) or seconds <= 0:
        raise input_error("seconds", f"got {seconds!r}", "pass a positive duration in seconds")
