"""Real-domain metrics on generated vs ground-truth videos: FID, FVD, Sync-C / Sync-D and CSIM.

None of these ship weights (they are large and have their own licences): each metric runs when the
user passes its feature extractor, and otherwise reports ``{"value": None, "missing": "..."}``
saying which weights it needs. Every model is a **TorchScript file** (``torch.jit.load``; a
pickled full ``nn.Module`` is unpickled only with the explicit ``allow_pickle=True`` /
``--allow-pickle``, because unpickling runs code from the file) with a small calling contract:

========  ==========================================================================================
FID       ``model(x, return_features=True)`` (or ``model(x)``): ``x`` float ``[N, 3, 299, 299]`` in
          0..255 -> ``[N, D]``. Matches the standard TF-Inception TorchScript used by clean-fid /
          StyleGAN (``inception-2015-12-05.pt``).
FVD       ``model(x, rescale=False, resize=False, return_features=True)`` (or ``model(x)``): ``x``
          float ``[N, 3, 16, 224, 224]`` in [-1, 1] -> ``[N, D]`` (the I3D TorchScript of
          StyleGAN-V, ``i3d_torchscript.pt``). Clips are 16-frame windows, stride 16.
Sync      methods ``forward_lip(v)``, ``v`` float ``[N, 3, 5, 224, 224]`` in 0..255, and
          ``forward_aud(a)``, ``a`` ``[N, 1, 13, 20]`` MFCCs (100 Hz) -> embeddings: the SyncNet of
          Chung & Zisserman (``syncnet_v2.model`` scripted, see docs/real_data.md).
CSIM      ``model(x)``: ``x`` float ``[N, 3, 112, 112]`` in [-1, 1] -> ``[N, D]`` face identity
          embeddings (an ArcFace-style network, scripted).
========  ==========================================================================================

``.pt2`` files (``torch.export``) are loaded with ``torch.export.load`` (positional inputs only,
so export them with the keyword options fixed). The Fréchet distance is computed here with ``scipy.linalg.sqrtm`` (FID and FVD); Sync-C / Sync-D
follow the usual SyncNet protocol (distances between lip and audio embeddings over ±15 frame
offsets: Sync-D = the smallest mean distance, Sync-C = median minus minimum); CSIM is the mean
cosine similarity between each generated frame and the reference image (the first ground-truth
frame, i.e. the portrait the video was generated from). Frames are used whole, i.e. the videos
are expected to be face crops (what ``train/preprocess.py`` and the pipeline produce); published
numbers use their own face crops, so compare like with like.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import input_error

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
FVD_CLIP = 16
SYNC_SHIFT = 15


# ---------------------------------------------------------------------------------------- models
def load_metric_model(path: str | os.PathLike, argument: str, device: str = "cpu", *,
                      allow_pickle: bool = False) -> torch.nn.Module:
    """A TorchScript (or ``torch.export`` ``.pt2``) file -> module in eval mode on ``device``.

    Nothing in the file runs as Python: TorchScript and ``.pt2`` archives hold a graph, and any other
    file is opened with ``torch.load(weights_only=True)`` (tensors and plain containers only). A
    file that is a pickled Python object (a whole ``nn.Module`` saved with ``torch.save``) could run
    arbitrary code when unpickled, so it is refused unless ``allow_pickle=True`` (the CLI's
    ``--allow-pickle``) says the file is trusted.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise input_error(argument, f"{source} does not exist", "pass the path of the weights file")
    if source.suffix == ".pt2":  # torch.export archive (TorchScript's successor)
        try:
            return torch.export.load(str(source)).module().to(device)
        except Exception as error:
            raise input_error(argument, f"{source} could not be loaded with torch.export.load "
                              f"({type(error).__name__})", "re-export the model") from None
    weights_only_fix = ("save the whole model with torch.jit.script(model).save(...) (docs/real_data.md); "
                        "a file of weights alone cannot be run")
    if source.suffix == ".safetensors":
        raise input_error(argument, f"{source} is a safetensors file, which holds weights but not the network "
                          "that uses them", weights_only_fix)
    try:
        model = torch.jit.load(str(source), map_location=device)
    except Exception:
        try:
            model = torch.load(str(source), map_location=device, weights_only=True)
        except pickle.UnpicklingError as error:
            if "global" not in str(error).lower():  # not a refused Python object: unreadable data
                raise input_error(argument, f"{source} is not a TorchScript file or a PyTorch checkpoint "
                                  "(UnpicklingError)", "export the model with torch.jit.script / trace "
                                  "(docs/real_data.md)") from None
            if not allow_pickle:
                raise input_error(argument, f"{source} is a pickled Python object, and unpickling it could run "
                                  "code from the file", "export the model as TorchScript "
                                  "(torch.jit.script(model).save(...), docs/real_data.md), or pass --allow-pickle "
                                  "(allow_pickle=True) if you trust the file") from None
            model = _load_trusted_pickle(source, argument, device)
        except Exception as error:
            raise input_error(argument, f"{source} is not a TorchScript file or a PyTorch checkpoint "
                              f"({type(error).__name__})", "export the model with torch.jit.script / trace "
                              "(docs/real_data.md)") from None
    if not isinstance(model, torch.nn.Module):
        raise input_error(argument, f"{source} holds a {type(model).__name__}, not a model", weights_only_fix)
    return model.eval()


def _load_trusted_pickle(source: Path, argument: str, device: str):
    """The explicit opt-in: unpickle a file the user vouched for (``--allow-pickle``)."""
    try:
        return torch.load(str(source), map_location=device, weights_only=False)
    except Exception as error:
        raise input_error(argument, f"{source} could not be unpickled ({type(error).__name__})",
                          "export the model with torch.jit.script / trace (docs/real_data.md)") from None


def _call(model, x, **kwargs):
    try:
        return model(x, **kwargs)
    except (TypeError, RuntimeError):
        return model(x)


# ------------------------------------------------------------------------------------ Fréchet
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` (``scipy.linalg.sqrtm``; a small diagonal
    offset is added when the product is singular)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _to_tensor(frames: np.ndarray, device) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in 0..255."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()


@torch.no_grad()
def fid_features(model, frames: np.ndarray, size: int = 299, batch: int = 32, device: str = "cpu") -> np.ndarray:
    out = []
    for i in range(0, len(frames), batch):
        x = F.interpolate(_to_tensor(frames[i:i + batch], device), size=(size, size), mode="bilinear",
                          align_corners=False)
        out.append(_call(model, x, return_features=True).reshape(len(x), -1).float().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def fvd_features(model, frames: np.ndarray, size: int = 224, clip: int = FVD_CLIP, device: str = "cpu") -> np.ndarray:
    out = []
    for i in range(0, len(frames) - clip + 1, clip):
        x = F.interpolate(_to_tensor(frames[i:i + clip], device), size=(size, size), mode="bilinear",
                          align_corners=False) / 127.5 - 1.0
        x = x.permute(1, 0, 2, 3).unsqueeze(0)  # [1, 3, T, H, W]
        out.append(_call(model, x, rescale=False, resize=False, return_features=True).reshape(1, -1).float().cpu()
                   .numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


# ---------------------------------------------------------------------------------------- sync
def mfcc(signal: np.ndarray, sample_rate: int = 16000, num_cep: int = 13, num_filters: int = 26, nfft: int = 512,
         win: float = 0.025, step: float = 0.01, preemph: float = 0.97, lifter: int = 22) -> np.ndarray:
    """MFCCs ``[frames, num_cep]`` at 100 Hz, the classic recipe SyncNet was trained with
    (pre-emphasis, rectangular 25 ms frames, 26 mel filters, DCT-II, liftering, c0 = log energy)."""
    from scipy.fft import dct

    x = np.asarray(signal, np.float64)
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    frame_len, hop = int(round(win * sample_rate)), int(round(step * sample_rate))
    count = 1 + max(0, int(math.ceil((len(x) - frame_len) / hop)))
    padded = np.concatenate([x, np.zeros(max(0, (count - 1) * hop + frame_len - len(x)))])
    index = np.arange(frame_len)[None, :] + hop * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(padded[index], nfft)) ** 2 / nfft
    energy = np.maximum(power.sum(axis=1), np.finfo(float).eps)

    def hz_to_mel(hz):
        return 2595 * np.log10(1 + hz / 700.0)

    mel_points = np.linspace(hz_to_mel(0), hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * 700 * (10 ** (mel_points / 2595) - 1) / sample_rate).astype(int)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(lo, mid):
            bank[j, i] = (i - lo) / max(mid - lo, 1)
        for i in range(mid, hi):
            bank[j, i] = (hi - i) / max(hi - mid, 1)
    features = np.log(np.maximum(power @ bank.T, np.finfo(float).eps))
    cep = dct(features, type=2, axis=1, norm="ortho")[:, :num_cep]
    cep *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(num_cep) / lifter)
    cep[:, 0] = np.log(energy)
    return cep


@torch.no_grad()
def sync_scores(model, frames: np.ndarray, audio: np.ndarray, fps: float = 25.0, batch: int = 20,
                device: str = "cpu", vshift: int = SYNC_SHIFT) -> dict:
    """``{"sync_c", "sync_d", "offset"}`` of a face-crop video (uint8 ``[N, H, W, 3]``, 25 fps) and its
    16 kHz audio, with a SyncNet exposing ``forward_lip`` / ``forward_aud``."""
    if abs(fps - 25.0) > 1e-3:
        raise input_error("fps", f"SyncNet works on 25 fps video, got {fps:g}", "resample the video to 25 fps")
    cc = torch.from_numpy(mfcc(audio).T.astype(np.float32))[None, None]  # [1, 1, 13, T]
    count = min(len(frames) - 5, cc.shape[-1] // 4 - 5)
    if count < 2 * vshift + 2:
        raise input_error("frames", f"{len(frames)} frames are too short for SyncNet's ±{vshift} offsets",
                          "evaluate clips of at least 2 s")
    video = _to_tensor(frames, "cpu")
    video = F.interpolate(video, size=(224, 224), mode="bilinear", align_corners=False)
    video = video.permute(1, 0, 2, 3).unsqueeze(0)  # [1, 3, N, 224, 224]
    lips, auds = [], []
    for i in range(0, count, batch):
        idx = range(i, min(i + batch, count))
        v = torch.cat([video[:, :, j:j + 5] for j in idx]).to(device)
        a = torch.cat([cc[:, :, :, 4 * j:4 * j + 20] for j in idx]).to(device)
        lips.append(model.forward_lip(v).reshape(len(idx), -1).float().cpu())
        auds.append(model.forward_aud(a).reshape(len(idx), -1).float().cpu())
    lip, aud = torch.cat(lips), torch.cat(auds)
    aud_padded = F.pad(aud, (0, 0, vshift, vshift))
    dists = torch.stack([F.pairwise_distance(lip, aud_padded[s:s + count]) for s in range(2 * vshift + 1)], dim=1)
    mean = dists.mean(dim=0)
    minimum, best = torch.min(mean, dim=0)
    return {"sync_c": float(torch.median(mean) - minimum), "sync_d": float(minimum), "offset": int(vshift - best)}


# ---------------------------------------------------------------------------------------- CSIM
@torch.no_grad()
def face_embeddings(model, frames: np.ndarray, batch: int = 64, device: str = "cpu") -> torch.Tensor:
    out = []
    for i in range(0, len(frames), batch):
        x = F.interpolate(_to_tensor(frames[i:i + batch], device), size=(112, 112), mode="bilinear",
                          align_corners=False) / 127.5 - 1.0
        out.append(F.normalize(_call(model, x).reshape(len(x), -1).float().cpu(), dim=1))
    return torch.cat(out)


def csim(model, reference: np.ndarray, frames: np.ndarray, device: str = "cpu") -> float:
    """Mean cosine similarity of each frame's identity embedding to the reference image's."""
    ref = face_embeddings(model, reference[None], device=device)[0]
    return float((face_embeddings(model, frames, device=device) @ ref).mean())


# ---------------------------------------------------------------------------------------- driver
def _pairs(generated_dir, ground_truth_dir) -> list[tuple[Path, Path]]:
    generated, truth = Path(generated_dir), Path(ground_truth_dir)
    for name, folder in (("--generated", generated), ("--ground-truth", truth)):
        if not folder.is_dir():
            raise input_error(name, f"{folder} is not a folder", "pass a folder of mp4 videos")
    truth_by_stem = {p.stem: p for p in truth.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES}
    pairs = [(p, truth_by_stem[p.stem]) for p in sorted(generated.rglob("*"))
             if p.suffix.lower() in VIDEO_SUFFIXES and p.stem in truth_by_stem]
    if not pairs:
        raise input_error("--generated", f"no video in {generated} has a same-named ground truth in {truth}",
                          "name each generated video like its ground-truth video")
    return pairs


def _load(path: Path, fps: float, max_frames: int | None, size: int | None):
    from ..audio import SAMPLE_RATE
    from ..preprocess.decode import iter_frames_at_fps, read_audio_track

    frames = []
    for k, frame in iter_frames_at_fps(path, fps):
        if max_frames is not None and k >= max_frames:
            break
        frames.append(frame)
    frames = np.stack(frames)
    if size and frames.shape[1:3] != (size, size):
        from PIL import Image

        frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC))
                           for f in frames])
    audio = read_audio_track(path, SAMPLE_RATE)
    return frames, audio


MISSING = {
    "fid": "no --fid-weights: FID needs an Inception TorchScript (e.g. inception-2015-12-05.pt)",
    "fvd": "no --fvd-weights: FVD needs an I3D TorchScript (e.g. i3d_torchscript.pt)",
    "sync": "no --syncnet: Sync-C / Sync-D need a scripted SyncNet (syncnet_v2.model, see docs/real_data.md)",
    "csim": "no --face-model: CSIM needs a scripted face-recognition network (ArcFace-style, 112 x 112)",
}


def evaluate_real(generated_dir, ground_truth_dir, *, fid_weights=None, fvd_weights=None, syncnet=None,
                  face_model=None, fps: float = 25.0, max_frames: int | None = None, device: str = "cpu",
                  progress: bool = True, allow_pickle: bool = False) -> dict:
    """Score every generated video against the same-named ground-truth video.

    Returns ``{"metrics": {name: {"value", "implementation" | "missing"}}, "per_video": [...],
    "videos": n}`` for ``fid``, ``fvd``, ``sync_c``, ``sync_d`` (on generated videos; the ground
    truth's are given as ``sync_c_ground_truth`` / ``sync_d_ground_truth``) and ``csim``.
    """
    from tqdm.auto import tqdm

    pairs = _pairs(generated_dir, ground_truth_dir)
    models = {}
    for key, path, argument in (("fid", fid_weights, "--fid-weights"), ("fvd", fvd_weights, "--fvd-weights"),
                                ("sync", syncnet, "--syncnet"), ("csim", face_model, "--face-model")):
        if path:
            models[key] = load_metric_model(path, argument, device, allow_pickle=allow_pickle)
    if "sync" in models and not (hasattr(models["sync"], "forward_lip") and hasattr(models["sync"], "forward_aud")):
        raise input_error("--syncnet", "the model has no forward_lip / forward_aud methods",
                          "script the SyncNet module itself (docs/real_data.md)")
    features = {"fid": ([], []), "fvd": ([], [])}
    per_video = []
    for generated_path, truth_path in tqdm(pairs, desc="eval", unit="video", disable=not progress):
        generated, audio = _load(generated_path, fps, max_frames, None)
        truth, truth_audio = _load(truth_path, fps, max_frames, generated.shape[1])
        n = min(len(generated), len(truth))
        generated, truth = generated[:n], truth[:n]
        row = {"video": generated_path.name, "frames": n}
        for key, extract in (("fid", fid_features), ("fvd", fvd_features)):
            if key in models:
                features[key][0].append(extract(models[key], generated, device=device))
                features[key][1].append(extract(models[key], truth, device=device))
        if "sync" in models:
            speech = audio if audio is not None and audio.size else truth_audio
            row.update(sync_scores(models["sync"], generated, speech, fps, device=device))
            gt = sync_scores(models["sync"], truth, truth_audio, fps, device=device)
            row.update({f"{k}_ground_truth": v for k, v in gt.items()})
        if "csim" in models:
            row["csim"] = csim(models["csim"], truth[0], generated, device=device)
        per_video.append(row)

    metrics: dict = {}
    for key, label in (("fid", "Fréchet distance of per-frame Inception features (scipy.linalg.sqrtm)"),
                       ("fvd", f"Fréchet distance of I3D features of {FVD_CLIP}-frame clips (scipy.linalg.sqrtm)")):
        if key not in models:
            metrics[key] = {"value": None, "missing": MISSING[key]}
            continue
        fake, real = np.concatenate(features[key][0]), np.concatenate(features[key][1])
        if len(fake) < 2 or len(real) < 2:
            metrics[key] = {"value": None, "missing": f"too few samples for {key.upper()} ({len(fake)})"}
            continue
        metrics[key] = {"value": frechet_distance(*feature_statistics(fake), *feature_statistics(real)),
                        "implementation": label, "samples": len(fake)}
    for key in ("sync_c", "sync_d", "sync_c_ground_truth", "sync_d_ground_truth"):
        if "sync" in models:
            metrics[key] = {"value": float(np.mean([r[key] for r in per_video])),
                            "implementation": "SyncNet lip/audio embedding distances over ±15 frames"}
        else:
            metrics[key] = {"value": None, "missing": MISSING["sync"]}
    if "csim" in models:
        metrics["csim"] = {"value": float(np.mean([r["csim"] for r in per_video])),
                           "implementation": "mean cosine similarity to the first ground-truth frame"}
    else:
        metrics["csim"] = {"value": None, "missing": MISSING["csim"]}
    return {"metrics": metrics, "per_video": per_video, "videos": len(pairs)}
