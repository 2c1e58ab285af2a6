"""Absolute fidelity metrics: windows, region colours against ground truth and against the portrait."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from asymk_talker.asymk_core.eval.fidelity import (
    PORTRAIT_REGIONS, REGION_NAMES, fidelity_report, format_fidelity, portrait_regions, region_masks, region_means,
    time_windows,
)
from asymk_talker.asymk_core.synthetic.appearance import ColourTransform, hue_rotation
from asymk_talker.asymk_core.synthetic.corpus import make_sample, split_seed

FPS = 25.0


@pytest.fixture(scope="module")
def clip():
    ident, utt = split_seed("identity", "test-fid", 0, heldout=True), split_seed("utterance", "test-fid", 0, heldout=True)
    truth = make_sample(ident, utt, 12.0, variety="wide", regions=True)
    # A perfect model cannot know the ground truth's head sway: the same clip with another motion.
    other_motion = make_sample(ident, utt, 12.0, variety="wide", motion_seed=777)
    return truth, other_motion


def test_windows_cover_the_video_once():
    windows = time_windows(int(150 * FPS), FPS)
    assert [w["name"] for w in windows] == ["0-1 s", "1-4 s", "4-10 s", "10-60 s", "minute 2", "minute 3"]
    assert windows[0]["start"] == 0 and windows[-1]["stop"] == int(150 * FPS)
    assert all(a["stop"] == b["start"] for a, b in zip(windows, windows[1:]))
    assert windows[-1]["stop_s"] == 150.0
    assert [w["name"] for w in time_windows(50, FPS)] == ["0-1 s", "1-4 s"]
    sliver = time_windows(int(60 * FPS) + 1, FPS)  # 1 + 4k frames: one frame past the minute
    assert sliver[-1]["name"] == "10-60 s" and sliver[-1]["stop"] == int(60 * FPS) + 1


def test_region_means_are_exact_on_flat_colour():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    frames[:, :4] = (10, 20, 30)
    frames[:, 4:] = (200, 100, 0)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4] = masks[1, 4:] = True
    means = region_means(frames, masks)
    assert means.shape == (3, 2, 3)
    np.testing.assert_allclose(means[:, 0], [[10, 20, 30]] * 3)
    np.testing.assert_allclose(means[:, 1], [[200, 100, 0]] * 3)
    np.testing.assert_allclose(region_means(frames.astype(np.float32) / 255, masks), means, atol=0.5)
    with pytest.raises(ValueError, match="masks"):
        region_means(frames, masks[:, :4])


def _report(frames, truth):
    masks = region_masks(truth.regions)
    return fidelity_report(FPS, region_colours=region_means(frames, masks),
                           gt_region_colours=region_means(truth.frames, masks))


def test_ground_truth_passes_even_with_other_head_motion(clip):
    truth, other_motion = clip
    assert _report(truth.frames, truth)["passed"]
    report = _report(other_motion.frames, truth)
    assert report["passed"], report["flagged"]
    assert report["worst"]["region_error"] < 3.0
    assert set(report["windows"][0]["region_error"]) == set(REGION_NAMES)


def test_colours_wrong_from_two_seconds_on_are_flagged_in_every_later_window(clip):
    truth, _ = clip
    shifted = truth.frames.copy()
    shifted[int(2 * FPS):] = ColourTransform(hue_rotation(0.6), np.zeros(3, np.float32))(truth.frames[int(2 * FPS):])
    report = _report(shifted, truth)
    assert report["flagged"] == ["1-4 s", "4-10 s", "10-60 s"]
    assert not report["windows"][0]["flags"]
    assert report["worst"]["region_error"] > 10
    lines = format_fidelity(report)
    assert len(lines) == 4 and lines[0].endswith("ok") and "FLAG" in lines[2]


def test_portrait_regions_without_labels_catch_a_drawn_cartoon_turning_green():
    """A cartoon drawn here (not by the renderer): flat blue background, a face, a red shirt."""
    image = Image.new("RGB", (64, 64), (40, 70, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((14, 52, 50, 90), fill=(200, 30, 30))
    draw.ellipse((20, 8, 44, 40), fill=(240, 200, 170))
    portrait = np.asarray(image)
    masks = portrait_regions(portrait)
    assert masks.shape == (len(PORTRAIT_REGIONS), 64, 64)
    reference = region_means(portrait[None], masks)[0]
    np.testing.assert_allclose(reference, [[40, 70, 200], [200, 30, 30]])
    video = np.repeat(portrait[None], 200, axis=0)
    assert fidelity_report(FPS, portrait_colours=region_means(video, masks), portrait_reference=reference)["passed"]
    video[100:, ..., 1] = np.clip(video[100:, ..., 1].astype(int) + 40, 0, 255)  # greener from 4 s on
    report = fidelity_report(FPS, portrait_colours=region_means(video, masks), portrait_reference=reference)
    assert report["flagged"] == ["4-10 s"]


def test_psnr_floor_and_identity_limit_flag_windows():
    psnr = np.array([30.0] * 25 + [20.0] * 75)
    identity = np.array([0.05] * 50 + [0.5] * 50)
    report = fidelity_report(FPS, psnr=psnr, identity=identity, identity_gt=np.full(100, 0.03),
                             psnr_floor=25.0, identity_limit=0.2)
    assert report["flagged"] == ["1-4 s"]
    assert report["windows"][0]["psnr"] == 30.0 and report["windows"][1]["identity_gt"] == pytest.approx(0.03)
    assert report["worst"]["psnr"] == 20.0
    with pytest.raises(ValueError, match="fidelity_report"):
        fidelity_report(FPS)


def test_equal_windows_and_drawn_cartoons():
    from asymk_talker.asymk_core.eval.cartoons import draw_cartoon

    windows = time_windows(int(12 * FPS), FPS, window_seconds=5)
    assert [w["name"] for w in windows] == ["0-5 s", "5-10 s", "10-12 s"] and windows[-1]["stop"] == 300
    cartoon = draw_cartoon(2)
    assert cartoon.image.shape == (64, 64, 3) and np.array_equal(cartoon.image, draw_cartoon(2).image)
    masks = portrait_regions(cartoon.image)
    np.testing.assert_allclose(region_means(cartoon.image[None], masks)[0], [cartoon.background, cartoon.shirt])
    assert not np.array_equal(cartoon.image, draw_cartoon(3).image)
