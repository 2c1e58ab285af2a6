"""Real-domain metrics with tiny scripted stand-in models (offline; the real weights are user-provided)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from asymk_talker.asymk_core.eval.real import evaluate_real, frechet_distance, mfcc
from asymk_talker.asymk_core.video_io import VideoWriter


class TinyImageFeatures(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return pooled / 255.0


class TinyVideoFeatures(torch.nn.Module):
    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = True) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool3d(x, (2, 1, 1)).flatten(1)


class TinySyncNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lip = torch.nn.Linear(3, 4)
        self.aud = torch.nn.Linear(13, 4)

    @torch.jit.export
    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.lip(x.mean(dim=(2, 3, 4)) / 255.0)

    @torch.jit.export
    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.aud(x.mean(dim=3).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_lip(x)


class TinyFace(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) + 2.0


def _video(path, seed, n=60):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 32, 32, 3))
    frames = np.clip(base + rng.integers(-20, 20, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    audio = (0.1 * rng.standard_normal(int(n / 25 * 16000))).astype(np.float32)
    with VideoWriter(str(path), 25.0, 32, 32, audio=audio, audio_sample_rate=16000) as writer:
        writer.write(frames)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_eval")
    (root / "gen").mkdir()
    (root / "gt").mkdir()
    for k in range(2):
        _video(root / "gt" / f"clip{k}.mp4", k)
        _video(root / "gen" / f"clip{k}.mp4", 10 + k)
    weights = {}
    for name, module in (("fid", TinyImageFeatures()), ("fvd", TinyVideoFeatures()), ("sync", TinySyncNet()),
                         ("face", TinyFace())):
        weights[name] = root / f"{name}.pt"
        torch.jit.script(module).save(str(weights[name]))
    return root, weights


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((4, 4))
    sigma = s @ s.T + np.eye(4)
    assert frechet_distance(np.zeros(4), sigma, np.zeros(4), sigma) == pytest.approx(0.0, abs=1e-6)
    # 1-D: (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    assert mfcc(np.zeros(16000)).shape == (99, 13)  # 100 Hz


def test_missing_weights_are_reported(folders):
    root, _ = folders
    results = evaluate_real(root / "gen", root / "gt", progress=False)
    for name in ("fid", "fvd", "sync_c", "sync_d", "csim"):
        assert results["metrics"][name]["value"] is None
        assert "--" in results["metrics"][name]["missing"]


def test_all_metrics_with_weights(folders):
    root, weights = folders
    results = evaluate_real(root / "gen", root / "gt", fid_weights=weights["fid"], fvd_weights=weights["fvd"],
                            syncnet=weights["sync"], face_model=weights["face"], progress=False)
    metrics = results["metrics"]
    assert results["videos"] == 2
    for name in ("fid", "fvd", "sync_c", "sync_d", "csim"):
        assert np.isfinite(metrics[name]["value"]), name
    assert metrics["fid"]["value"] > 0 and metrics["sync_d"]["value"] >= 0 and metrics["sync_c"]["value"] >= 0
    same = evaluate_real(root / "gt", root / "gt", fid_weights=weights["fid"], face_model=weights["face"],
                         progress=False)["metrics"]
    assert same["fid"]["value"] == pytest.approx(0.0, abs=1e-4)
    assert same["csim"]["value"] <= 1.0 + 1e-6


def test_real_command(folders, tmp_path, capsys):
    from asymk_talker.cli.eval_real import add_real_arguments, run_real

    root, weights = folders
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--device")
    parser.add_argument("--quiet", action="store_true")
    add_real_arguments(parser)
    args = parser.parse_args(["--real", "--generated", str(root / "gen"), "--ground-truth", str(root / "gt"),
                              "--face-model", str(weights["face"]), "--out", str(tmp_path), "--quiet"])
    assert run_real(args) == 0
    printed = capsys.readouterr().out
    assert "skipped: no --fid-weights" in printed
    saved = json.loads((tmp_path / "eval_real.json").read_text())
    assert saved["metrics"]["csim"]["value"] is not None
    with pytest.raises(ValueError, match="does not exist"):
        run_real(parser.parse_args(["--real", "--generated", str(root / "gen"), "--ground-truth", str(root / "gt"),
                                    "--syncnet", str(tmp_path / "nope.pt"), "--quiet"]))


class _RunsCode:
    """Unpickling this writes a marker file: stands for a crafted weights file that runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_metric_weights_never_unpickle_without_opt_in(folders, tmp_path):
    from safetensors.torch import save_file

    from asymk_talker.asymk_core.eval.real import load_metric_model
    from asymk_talker.cli.eval_real import add_real_arguments, run_real

    root, _ = folders
    marker = tmp_path / "ran"
    crafted = tmp_path / "syncnet.pt"
    torch.save(_RunsCode(marker), str(crafted))
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    add_real_arguments(parser)
    for flag in ("--syncnet", "--fid-weights", "--fvd-weights", "--face-model"):
        with pytest.raises(ValueError, match=rf"`{flag}`: .* is a pickled Python object, and unpickling it could "
                                             r"run code from the file\. Fix: .*--allow-pickle"):
            run_real(parser.parse_args(["--real", "--generated", str(root / "gen"), "--ground-truth",
                                        str(root / "gt"), flag, str(crafted), "--quiet"]))
    assert not marker.exists()
    # a whole module saved with torch.save: refused by default, loaded with the explicit opt-in
    pickled = tmp_path / "face.pt"
    torch.save(TinyFace(), str(pickled))
    with pytest.raises(ValueError, match="pickled Python object"):
        load_metric_model(pickled, "--face-model")
    assert isinstance(load_metric_model(pickled, "--face-model", allow_pickle=True), TinyFace)
    args = parser.parse_args(["--real", "--generated", str(root / "gen"), "--ground-truth", str(root / "gt"),
                              "--face-model", str(pickled), "--allow-pickle", "--quiet"])
    assert run_real(args) == 0
    # weights without the network: said as such (safetensors, or a weights-only state dict)
    save_file(torch.nn.Linear(2, 2).state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="holds weights but not the network"):
        load_metric_model(tmp_path / "w.safetensors", "--fid-weights")
    torch.save(torch.nn.Linear(2, 2).state_dict(), str(tmp_path / "sd.pt"))
    with pytest.raises(ValueError, match="holds a OrderedDict, not a model. Fix: save the whole model"):
        load_metric_model(tmp_path / "sd.pt", "--fid-weights")
