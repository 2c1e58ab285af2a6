"""train/vae.py: losses, overfitting a fixed batch, resume, and the saved VAE with latent statistics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from asymk_talker.train import vae as vae_train
from asymk_talker.asymk_core.vae import vae_from_preset
from asymk_talker.train.common import deep_merge, list_checkpoints, load_config
from asymk_talker.train.vae import SyntheticVideoDataset

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "train" / "configs" / "vae_synthetic_tiny.yaml"


def test_dataset_is_deterministic_and_in_range():
    dataset = vae_train.SyntheticVideoDataset(5, size=32, seed=0, epoch_size=8)
    a, b = dataset[3], dataset[3]
    assert a.shape == (3, 5, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(dataset[4], a)
    with pytest.raises(ValueError):
        vae_train.SyntheticVideoDataset(6)


def test_loss_terms_and_overfit_fixed_batch():
    from asymk_talker.asymk_core.vae import vae_from_preset

    config = deep_merge(vae_train.DEFAULTS, load_config(TINY))
    torch.manual_seed(0)
    model = vae_train.Reconstructor(vae_from_preset("tiny").train())
    video = torch.stack([vae_train.SyntheticVideoDataset(5, size=32)[i] for i in range(2)])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        parts = vae_train.vae_loss(model, video, config.loss, torch.Generator().manual_seed(0))
        assert set(parts) == {"loss", "l1", "mse", "edge", "motion", "kl", "region_colour", "region_l1", "seam"}
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        losses.append(parts["loss"].item())
    assert all(math.isfinite(v) for v in losses)
    # (the Wan VAE first fits the mean image, then breaks out of that plateau after ~100 steps;
    # a fixed batch must at least get well below its starting loss)
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3]), losses


def test_motion_loss_counts_errors_only_where_the_clip_moves():
    target = torch.zeros(1, 3, 5, 8, 8)
    target[:, :, ::2, 2:4, 2:4] = 1.0  # a blinking square; everything else is static
    moving = torch.zeros(8, 8, dtype=torch.bool)
    moving[2:4, 2:4] = True
    assert vae_train.motion_loss(target, target) == 0
    static_error = target.clone()
    static_error[..., ~moving] += 0.5
    assert vae_train.motion_loss(static_error, target) == 0
    moving_error = target.clone()
    moving_error[..., moving] += 0.5
    assert torch.isclose(vae_train.motion_loss(moving_error, target), torch.tensor(0.5))
    still = torch.rand(1, 3, 1, 8, 8).expand(1, 3, 5, 8, 8)
    assert vae_train.motion_loss(still + 1.0, still) < 1e-4  # no motion, (almost) no weight


def test_reconstruction_psnr_reports_the_frames_after_the_training_length():
    class Halves(torch.nn.Module):
        """Stands in for a VAE: perfect on the first 5 frames, off by 0.2 after."""

        device = torch.device("cpu")

        def encode(self, x):
            return type("E", (), {"latent_dist": type("D", (), {"mode": lambda _: x})()})()

        def decode(self, z):
            y = z.clone()
            y[:, :, 5:] += 0.2
            return type("O", (), {"sample": y})()

    video = torch.zeros(3, 9, 4, 4)
    measured, first = vae_train.reconstruction_psnr(Halves(), [video], tail_from=5)
    assert measured["psnr_tail"] == pytest.approx(10 * math.log10(1 / 0.1 ** 2), rel=1e-4)  # error 0.1 on [0, 1]
    assert measured["psnr"] == pytest.approx(10 * math.log10(1 / (0.1 ** 2 * 4 / 9)), rel=1e-4)
    assert first.shape == video.shape
    assert set(vae_train.reconstruction_psnr(Halves(), [video])[0]) == {"psnr"}


def test_train_saves_normalised_vae_and_resumes(tmp_path):
    from diffusers import AutoencoderKLWan

    from asymk_talker.asymk_core.vae import encode_video

    out = tmp_path / "vae"
    summary = vae_train.main(["--config", str(TINY), "--output-dir", str(out)])
    assert summary["step"] == 6 and math.isfinite(summary["loss"])
    assert [s for s, _ in list_checkpoints(out)] == [3, 6]
    vae = AutoencoderKLWan.from_pretrained(out / "vae")
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert vae.config.latents_mean == pytest.approx(summary["latents_mean"])
    assert len(vae.config.latents_std) == 4 and all(s > 0 for s in vae.config.latents_std)
    assert vae.config.latents_mean != [0.0] * 4
    # Normalised latents of the statistics clips are zero-mean / unit-std per channel.
    stats = vae_train.SyntheticVideoDataset(9, size=32, seed=2)
    with torch.no_grad():
        z = torch.cat([encode_video(vae, stats[i][None]) for i in range(2)])
    per_channel = z.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).abs().max() < 1e-3
    assert (per_channel.std(1) - 1).abs().max() < 0.05
    assert (out / "validation" / "step-0000006.png").is_file()
    record = json.loads((out / "logs" / "validation.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 6 and {"val/psnr", "val/psnr_tail", "val/psnr_ema", "val/psnr_tail_ema"} <= set(record)

    # resume continues from the last checkpoint with identical losses
    metrics = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    second = tmp_path / "second"
    (second / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(out / "checkpoints" / "step-0000003", second / "checkpoints" / "step-0000003")
    vae_train.main(["--config", str(TINY), "--output-dir", str(second), "--set", "stats.clips=1"])
    resumed = [json.loads(line) for line in (second / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    for a, b in zip(resumed, metrics[3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_vae_eval_scores_streamed_reconstructions_against_ground_truth(tmp_path):
    """train/vae_eval.py: an untrained VAE loses the lip sync the ground truth has; the report is
    complete, deterministic, and the CLI refuses a folder that is not a VAE."""
    from asymk_talker.asymk_core.vae import vae_from_preset
    from asymk_talker.train import vae_eval

    torch.manual_seed(0)
    vae = vae_from_preset("tiny").eval()
    report = vae_eval.evaluate_vae(vae, clips=1, seconds=2.4, size=32)
    assert report["num_frames"] == 61 and report["steady_from_frame"] == 50
    mean = report["mean"]
    assert mean["sync_pearson_ground_truth"] > 0.9
    assert mean["sync_pearson"] < mean["sync_pearson_ground_truth"] - 0.3
    assert mean["psnr"] < 20 and mean["psnr_steady"] is not None
    assert report["worst"]["region_error"] > 10 and report["clips"][0]["fidelity"]["flagged"]  # untrained: wrong colours
    assert 0.6 < mean["latent_seam_ratio_ground_truth"] < 1.4 and mean["latent_seam_ratio"] > 0
    still = report["clips"][0]["still"]
    assert set(still["steady"]) <= set(still["first_second"]) and report["worst"]["still_region_error"] > 10

    steps = np.zeros((9, 4, 4, 3), np.uint8)
    steps[1:5], steps[5:] = 40, 80  # still within a latent frame, a jump between them
    assert vae_eval.latent_seam_ratio(steps, 4) > 1e3  # nothing moves inside a latent frame
    steps[2:5] += np.arange(1, 4, dtype=np.uint8)[:, None, None, None]
    assert 5 < vae_eval.latent_seam_ratio(steps, 4) < 1e3
    assert vae_eval.latent_seam_ratio(np.cumsum(np.ones_like(steps), axis=0, dtype=np.uint8), 4) == pytest.approx(1.0)  # even motion
    again = vae_eval.evaluate_vae(vae, clips=1, seconds=2.4, size=32)["mean"]
    assert mean.pop("decode_ms_per_frame") > 0 and again.pop("decode_ms_per_frame") > 0  # wall time
    assert again == mean
    with pytest.raises(ValueError, match="clips"):
        vae_eval.evaluate_vae(vae, clips=0)

    vae.save_pretrained(tmp_path / "vae")
    out = tmp_path / "report.json"
    vae_eval.main([str(tmp_path / "vae"), "--clips", "1", "--seconds", "0.4", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["num_frames"] == 9 and saved["mean"]["psnr_steady"] is None
    windows = saved["clips"][0]["fidelity"]["windows"]
    assert [w["window"] for w in windows] == ["0-1 s"] and set(windows[0]["region_error"]) >= {"background", "mouth"}
    with pytest.raises(SystemExit, match="not a VAE folder"):
        vae_eval.main([str(tmp_path)])


def test_context_pass_equals_one_stream_and_trains_only_the_frames_after_it():
    from asymk_talker.train.vae import decode_unclamped, draw_context_frames, reconstruct_after_context

    torch.manual_seed(0)
    vae = vae_from_preset("tiny").eval()
    video = torch.rand(1, 3, 1 + 4 * 5, 32, 32) * 2 - 1
    posterior = vae.encode(video).latent_dist
    # No context: the plain encode + sampled decode.
    out, mean, _ = reconstruct_after_context(vae, video, 0, torch.Generator().manual_seed(1))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, decode_unclamped(vae, posterior.mean + posterior.std * noise), rtol=0, atol=0)
    # A 9-frame context (3 latent frames): the rest equals decoding [context mode | sampled rest] in one stream.
    vae.train()
    out, mean, logvar = reconstruct_after_context(vae, video, 9, torch.Generator().manual_seed(2))
    assert out.shape == (1, 3, 12, 32, 32) and mean.shape[2] == 3
    torch.testing.assert_close(mean, posterior.mean[:, :, 3:])
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(2))
    stream = decode_unclamped(vae, torch.cat([posterior.mean[:, :, :3], mean + posterior.std[:, :, 3:] * noise], 2))
    torch.testing.assert_close(out, stream[:, :, 9:])
    # Gradients reach the weights only through the trained frames.
    out.abs().mean().backward()
    assert vae.decoder.conv_out.weight.grad is not None
    with pytest.raises(ValueError, match="context"):
        reconstruct_after_context(vae, video, 8)
    lengths = {draw_context_frames(np.random.default_rng(i), 101, 0.2) for i in range(200)}
    assert 0 in lengths and max(lengths) <= 101 and all(c == 0 or (c - 1) % 4 == 0 for c in lengths)


def test_colour_jitter_changes_appearance_alike_for_all_frames():
    from asymk_talker.asymk_core.synthetic.appearance import IDENTITY_TRANSFORM, hue_rotation, random_colour_transform

    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    before = frames.copy()
    transform = random_colour_transform(np.random.default_rng(3), probability=1.0)
    out = transform(frames)
    assert np.array_equal(frames, before) and out.dtype == np.uint8 and not np.array_equal(out, frames)
    assert np.array_equal(out[1:2], transform(frames[1:2]))  # per-pixel, same map for every frame
    assert np.array_equal(IDENTITY_TRANSFORM(frames), frames)
    grey = np.full((1, 1, 1, 3), 128, np.uint8)
    np.testing.assert_allclose(hue_rotation(2.0) @ np.ones(3), np.ones(3), atol=1e-6)  # grey stays grey
    assert np.abs(transform(grey).astype(int) - 128).max() < 40
    dataset = SyntheticVideoDataset(5, 32, split="train", seed=0, variety="wide", colour_jitter=1.0, epoch_size=4)
    assert torch.equal(dataset[1], dataset[1]) and dataset[1].shape == (3, 5, 32, 32)


def test_region_losses_weigh_every_region_alike_whatever_its_area():
    from asymk_talker.asymk_core.synthetic.avatar import REGIONS

    target = torch.zeros(1, 3, 2, 8, 8)
    labels = torch.full((1, 2, 8, 8), REGIONS["background"], dtype=torch.long)
    labels[:, :, 0, :2] = REGIONS["hair"]  # 2 of 64 pixels
    labels[:, :, 7, :] = REGIONS["other"]  # not scored
    colour, l1 = vae_train.region_losses(target, target, labels)
    assert colour == 0 and l1 == 0
    wrong_hair = target.clone()
    wrong_hair[:, 0, :, 0, :2] = 0.6  # the red channel of the hair only
    colour, l1 = vae_train.region_losses(wrong_hair, target, labels)
    # two regions present in each frame (background, hair): hair's error 0.6 / 3 channels, halved
    assert colour == pytest.approx(0.1) and l1 == pytest.approx(0.1)
    assert (wrong_hair - target).abs().mean() == pytest.approx(0.6 * 2 / 64 / 3)  # what plain L1 sees
    wrong_other = target.clone()
    wrong_other[:, :, :, 7] = 1.0
    assert vae_train.region_losses(wrong_other, target, labels)[0] == 0
    # A uniform shift within a region counts in the colour term; a zero-mean pattern only in l1.
    pattern = target.clone()
    pattern[:, :, :, 1:7:2] += 0.2
    pattern[:, :, :, 2:7:2] -= 0.2
    colour, l1 = vae_train.region_losses(pattern, target, torch.zeros_like(labels))
    assert colour == pytest.approx(0.0, abs=1e-6) and l1 > 0.1


def test_region_terms_need_region_labels():
    config = deep_merge(vae_train.DEFAULTS, load_config(TINY))
    weights = deep_merge(config.loss, {"region_colour": 1.0})
    model = vae_train.Reconstructor(vae_from_preset("tiny"))
    video = vae_train.SyntheticVideoDataset(5, size=32)[0][None]
    with pytest.raises(ValueError, match="region labels"):
        vae_train.vae_loss(model, video, weights)
    dataset = vae_train.SyntheticVideoDataset(5, size=32, variety="mixed", regions=True, epoch_size=4)
    video, labels = dataset[1]
    assert video.shape == (3, 5, 32, 32) and labels.shape == (5, 32, 32) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) >= {0, 2}  # background and skin at least
    parts = vae_train.vae_loss(model, video[None], weights, labels=labels[None])
    assert parts["region_colour"] > 0 and math.isfinite(parts["loss"].item())
    with pytest.raises(ValueError, match="variety"):
        vae_train.SyntheticVideoDataset(5, variety="bold")


def test_mixed_variety_alternates_classic_and_wide():
    mixed = vae_train.SyntheticVideoDataset(5, size=32, variety="mixed", epoch_size=4)
    for index, variety in ((0, "classic"), (1, "wide")):
        alone = vae_train.SyntheticVideoDataset(5, size=32, variety=variety, epoch_size=4)
        assert torch.equal(mixed[index], alone[index])


def test_decoder_only_run_keeps_the_encoder_and_its_latent_statistics(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    start = vae_from_preset("tiny")
    start.register_to_config(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0])
    start.save_pretrained(tmp_path / "start")
    out = tmp_path / "decoder"
    with pytest.raises(ValueError, match="model.pretrained"):
        vae_train.main(["--config", str(TINY), "--output-dir", str(tmp_path / "bad"), "--set", "train.trainable=decoder"])
    with pytest.raises(ValueError, match="train.trainable"):
        vae_train.main(["--config", str(TINY), "--output-dir", str(tmp_path / "bad"), "--set", "train.trainable=encoder"])
    vae_train.main(["--config", str(TINY), "--output-dir", str(out), "--set", f"model.pretrained={tmp_path / 'start'}",
                    "--set", "train.trainable=decoder", "--set", "loss.region_colour=1.0",
                    "--set", "loss.region_l1=1.0", "--set", "data.variety=mixed"])
    trained = AutoencoderKLWan.from_pretrained(out / "vae")
    before, after = start.state_dict(), trained.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert trained.config.latents_mean == [0.1, -0.2, 0.3, 0.0]
    assert trained.config.latents_std == [1.5, 0.5, 2.0, 1.0]
    record = json.loads((out / "logs" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["region_colour"] > 0 and record["region_l1"] > 0


def test_seam_loss_sees_only_jumps_across_latent_frame_boundaries():
    """seam_loss: zero for a perfect reconstruction or an error that moves only inside latent frames;
    positive for a jump at the boundaries, which it finds after a context (first boundary 3) and
    without one (first boundary 0, after latent 0's single frame)."""
    from asymk_talker.train import vae as vae_train

    truth = torch.linspace(0, 1, 17).view(1, 1, 17, 1, 1).expand(1, 3, 17, 4, 4).contiguous()
    assert float(vae_train.seam_loss(truth, truth, 0)) == 0.0
    stepped = truth.clone()
    for start in range(1, 17, 4):  # latent i >= 1 covers frames 4i-3 .. 4i: still inside, jump between
        stepped[:, :, start:start + 4] = truth[:, :, start:start + 1]
    assert float(vae_train.seam_loss(stepped, truth, 0)) > 0.1
    inside = truth.clone()
    inside[:, :, 2:4] += 0.05  # moves inside latent 1 only: its boundary pairs (0, 1) and (4, 5) unchanged
    assert float(vae_train.seam_loss(inside, truth, 0)) == pytest.approx(0.0, abs=1e-7)
    segment = stepped[:, :, 1:]  # after a context: frames 0-3 are one latent frame, pairs (3, 4), ...
    across = float(vae_train.seam_loss(segment, truth[:, :, 1:], 3))
    assert across == pytest.approx(3 / 16, rel=1e-4)  # a jump of 4 steps where the truth moves 1
    assert float(vae_train.seam_loss(segment, truth[:, :, 1:], 1)) == pytest.approx(1 / 16, rel=1e-4)  # inside: still
    assert float(vae_train.seam_loss(truth[:, :, :2], truth[:, :, :2], 3)) == 0.0  # no boundary pair


def test_still_region_errors_see_a_cache_that_drifts_without_motion(monkeypatch):
    """train/vae_eval.still_region_errors: a reconstruction that keeps the frame scores 0; one right
    for the first second and hue-shifted in one region afterwards (stable from then on) is flagged
    in the steady state only, by the size of the shift."""
    from asymk_talker.asymk_core.synthetic.avatar import REGIONS
    from asymk_talker.train import vae_eval

    frame = np.full((32, 32, 3), 100, np.uint8)
    labels = np.full((32, 32), REGIONS["background"], np.uint8)
    labels[8:24, 8:24] = REGIONS["skin"]
    frame[8:24, 8:24] = (200, 150, 120)
    monkeypatch.setattr(vae_eval, "reconstruct", lambda vae, frames: frames.copy())
    kept = vae_eval.still_region_errors(None, frame, labels)
    assert set(kept["steady"]) == {"background", "skin"} and kept["worst"] == 0.0

    def drifting(vae, frames):
        out = frames.copy()
        skin = labels == REGIONS["skin"]
        out[30:, skin] = (170, 150, 150)  # from frame 30 on the skin turns pink and stays so
        return out

    monkeypatch.setattr(vae_eval, "reconstruct", drifting)
    drifted = vae_eval.still_region_errors(None, frame, labels)
    assert drifted["first_second"]["skin"] == 0.0 and drifted["steady"]["background"] == 0.0
    assert drifted["steady"]["skin"] == pytest.approx(30.0) and drifted["worst"] == pytest.approx(30.0)
