"""Real photos: face crop geometry, seamless paste-back, and the pipeline / CLI end to end (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from asymk_talker.asymk_core.errors import InputError
from asymk_talker.asymk_core.face_crop import (
    FaceCrop,
    PasteBack,
    crop_photo,
    even_size,
    feather_mask,
    pad_to_even,
    parse_face_box,
)

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("cv2")

# The astronaut's face (eyebrows to chin, ear to ear), labelled by hand in the 512 x 512 photo.
FACE = (185, 80, 260, 170)  # left, top, right, bottom


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # [512, 512, 3] uint8


@pytest.fixture(scope="module")
def odd_photo(astronaut) -> np.ndarray:
    """301 wide x 517 tall (odd sides, tall aspect): cropped at the sides, 5 rows added on top."""
    return np.pad(astronaut[:, 100:401], ((5, 0), (0, 0), (0, 0)), mode="edge")


def face_in(photo_name: str):
    left, top, right, bottom = FACE
    return (left - 100, top + 5, right - 100, bottom + 5) if photo_name == "odd_photo" else FACE


def synthetic_generation(crop: np.ndarray) -> np.ndarray:
    """A stand-in for a generated frame: a colour cast over the whole crop and a changed mouth."""
    frame = crop.astype(np.float32) * np.array([1.1, 0.93, 0.88]) + np.array([10.0, -8.0, 6.0])
    height, width = frame.shape[:2]
    frame[int(0.55 * height):int(0.62 * height), int(0.4 * width):int(0.6 * width)] = (190, 40, 50)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def outside_box(array: np.ndarray, crop: FaceCrop) -> np.ndarray:
    x0, y0, x1, y1 = crop.inside
    keep = np.ones(array.shape[:2], bool)
    keep[y0:y1, x0:x1] = False
    return array[keep]


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("name", ["astronaut", "odd_photo"])
def test_detected_box_is_square_inside_the_photo_and_holds_the_face(name, request):
    photo = request.getfixturevalue(name)
    crop = FaceCrop.detect(photo, 64)
    left, top, right, bottom = crop.box
    assert crop.box_width == crop.box_height and crop.size == (64, 64)
    assert 0 <= left and 0 <= top and right <= photo.shape[1] and bottom <= photo.shape[0]
    f_left, f_top, f_right, f_bottom = face_in(name)
    assert left < f_left and top < f_top and right > f_right and bottom > f_bottom
    assert 130 <= crop.box_width <= 220  # about 1.8 faces (~95 px), not the whole photo
    assert crop.crop(photo).shape == (64, 64, 3)


def test_box_follows_the_output_aspect_ratio(odd_photo):
    crop = FaceCrop.detect(odd_photo, (48, 64))
    assert crop.box_width / crop.box_height == pytest.approx(0.75, abs=0.01)
    assert crop.crop(odd_photo).shape == (64, 48, 3)


def test_box_larger_than_the_photo_is_centred_and_mirrored(astronaut):
    photo = astronaut[30:230, 150:300]  # 150 x 200, face near the top
    crop = FaceCrop.detect(photo, 32, padding=3.0)
    assert crop.box_width > photo.shape[1] and crop.left < 0 and crop.inside[0] == 0
    pixels = crop.box_pixels(photo)
    x0, y0, x1, y1 = crop.inside
    assert pixels.shape == (crop.box_height, crop.box_width, 3)
    np.testing.assert_array_equal(pixels[y0 - crop.top:y1 - crop.top, x0 - crop.left:x1 - crop.left],
                                  photo[y0:y1, x0:x1])
    out = PasteBack(photo, crop)(synthetic_generation(crop.crop(photo)))
    assert out.shape == photo.shape
    np.testing.assert_array_equal(outside_box(out, crop), outside_box(photo, crop))


def test_explicit_face_box_skips_detection():
    flat = np.full((300, 200, 3), 128, np.uint8)
    crop = FaceCrop.detect(flat, 32, face_box=(50, 60, 100, 100))
    assert crop.box_width == 180 and crop.left == 10 and crop.top == 28  # 1.8 x 100, centred a little low
    assert parse_face_box(" 50, 60,100 ,100") == (50, 60, 100, 100)
    assert parse_face_box("auto") is None and parse_face_box("") is None


# ---------------------------------------------------------------------------------- paste back
@pytest.mark.parametrize("name", ["astronaut", "odd_photo"])
def test_paste_back_is_seamless_and_leaves_the_rest_untouched(name, request):
    photo = request.getfixturevalue(name)
    crop = FaceCrop.detect(photo, 64)
    generated = synthetic_generation(crop.crop(photo))
    out = PasteBack(photo, crop)(generated)
    assert out.shape == photo.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(outside_box(out, crop), outside_box(photo, crop))  # bit-exact
    left, top, right, bottom = crop.box
    diff = np.abs(out.astype(int) - photo.astype(int))
    box = diff[top:bottom, left:right]
    edge = np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])
    assert edge.max() <= 1  # the outermost pixels of the box: the photo's, up to rounding
    assert np.concatenate([box[:3].ravel(), box[-3:].ravel(), box[:, :3].ravel(), box[:, -3:].ravel()]).max() <= 3
    mouth = out[top + int(0.55 * crop.box_height) + 2, left + crop.box_width // 2]
    assert mouth[0] > 150 and mouth[1] < 80  # the generated content is there


def test_colour_matching_removes_a_colour_cast(astronaut):
    crop = FaceCrop.detect(astronaut, 64)
    generated = synthetic_generation(crop.crop(astronaut))
    left, top, right, bottom = crop.box
    errors = {}
    for mode in ("mean_std", "mean", "none"):
        out = PasteBack(astronaut, crop, color_match=mode)(generated)
        region = np.s_[top + 10:top + 40, left + 10:right - 10]  # background and hair above the face
        errors[mode] = np.abs((out[region].astype(float) - astronaut[region]).mean(axis=(0, 1))).max()  # cast
    assert errors["none"] > 8 and errors["mean"] < 5 and errors["mean_std"] < 2, errors  # the cast has a gain too


def test_round_trip_of_the_crop_is_the_photo(astronaut, odd_photo):
    native = FaceCrop.detect(astronaut, 64)
    native = FaceCrop.detect(astronaut, native.box_width)  # crop at the box's own size: no resampling
    np.testing.assert_array_equal(PasteBack(astronaut, native)(native.crop(astronaut)), astronaut)
    for photo in (astronaut, odd_photo):
        crop = FaceCrop.detect(photo, 128)
        out = PasteBack(photo, crop)(crop.crop(photo))
        x0, y0, x1, y1 = crop.inside
        error = np.abs(out[y0:y1, x0:x1].astype(float) - photo[y0:y1, x0:x1])
        assert error.mean() < 2.5 and np.percentile(error, 99) < 16  # down- and up-sampling only (1.9-2.1, 12-14)


def test_feather_mask_falls_smoothly_to_zero_at_the_edge():
    mask = feather_mask(100, 80, 12.0)
    assert mask.shape == (80, 100) and mask[40, 50] == 1.0 and mask[15:65, 15:85].min() == 1.0
    assert 0 < mask[40, 0] < 0.01 and 0 < mask[0, 0] < 1e-4
    row = mask[40, :50]
    assert np.all(np.diff(row) >= 0) and np.abs(np.diff(row)).max() < 0.15  # no step


def test_even_sizes():
    frames = np.arange(2 * 5 * 3 * 3, dtype=np.uint8).reshape(2, 5, 3, 3)
    padded = pad_to_even(frames)
    assert padded.shape == (2, 6, 4, 3) and even_size(3, 5) == (4, 6)
    np.testing.assert_array_equal(padded[:, :5, :3], frames)
    np.testing.assert_array_equal(padded[:, 5, :3], frames[:, 4])
    assert pad_to_even(padded) is padded


# -------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("photo", [np.full((240, 320, 3), 128, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)])
def test_no_face_is_a_clear_error(photo):
    with pytest.raises(ValueError, match=r"^`image`: no face was found .* Fix: .*face_box") as error:
        FaceCrop.detect(photo, 64)
    assert isinstance(error.value, InputError) and "\n" not in str(error.value)


def test_bad_arguments_name_themselves(astronaut):
    with pytest.raises(ValueError, match="^`face_box`"):
        FaceCrop.detect(astronaut, 64, face_box=(600, 10, 50, 50))
    with pytest.raises(ValueError, match="^`face_box`"):
        parse_face_box("1,2,3")
    with pytest.raises(ValueError, match="^`face_padding`"):
        FaceCrop.detect(astronaut, 64, padding=0.5)
    crop = FaceCrop.detect(astronaut, 64)
    paste = PasteBack(astronaut, crop)
    with pytest.raises(ValueError, match="^`frame`.*aspect"):
        paste(np.zeros((64, 32, 3), np.uint8))
    assert paste(np.zeros((32, 32, 3), np.uint8)).shape == astronaut.shape  # another size of the same aspect
    with pytest.raises(ValueError, match="^`photo`"):
        crop.crop(astronaut[:100])
    with pytest.raises(ValueError, match="^`color_match`"):
        PasteBack(astronaut, crop, color_match="lab")


# ------------------------------------------------------------------------------ pipeline and CLI
@pytest.fixture(scope="module")
def tiny_pipe():
    from asymk_talker import AsymKPipeline

    pipe = AsymKPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pipeline_paste_back_gives_photo_frames(tiny_pipe, odd_photo, speech):
    import torch

    audio = speech(0.6)
    out = tiny_pipe(odd_photo, audio, sample_rate=16000, num_inference_steps=1, output_type="np", paste_back=True,
                    generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (round(0.6 * 25), 517, 301, 3)
    _, paste = crop_photo(odd_photo, (32, 32))
    photo = odd_photo.astype(np.float32) / 255.0
    for frame in out.frames[::5]:
        np.testing.assert_array_equal(outside_box(frame, paste.crop), outside_box(photo, paste.crop))
    assert np.abs(out.frames[0] - photo).max() > 0.05  # the face region was replaced
    streamed = list(tiny_pipe.stream(odd_photo, audio, sample_rate=16000, num_inference_steps=1, paste_back=True,
                                     generator=torch.Generator().manual_seed(0)))
    np.testing.assert_array_equal(np.concatenate([c.frames for c in streamed]), out.frames)
    pil = tiny_pipe(odd_photo, audio, sample_rate=16000, num_inference_steps=1, paste_back=True,
                    face_box=(80, 70, 90, 90)).frames
    assert pil[0].size == (301, 517)


def test_pipeline_paste_back_errors(tiny_pipe, odd_photo, speech):
    audio = speech(0.3)
    with pytest.raises(ValueError, match="^`face_box`.*paste_back=True"):
        tiny_pipe(odd_photo, audio, sample_rate=16000, face_box=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="^`paste_back`"):
        tiny_pipe(odd_photo, audio, sample_rate=16000, paste_back=True, output_type="latent")
    with pytest.raises(TypeError, match="^`paste_back`"):
        tiny_pipe(odd_photo, audio, sample_rate=16000, paste_back="yes")
    with pytest.raises(ValueError, match="^`image`: no face"):
        tiny_pipe(np.full((64, 64, 3), 90, np.uint8), audio, sample_rate=16000, paste_back=True)


def test_cli_paste_back_writes_the_full_photo(odd_photo, speech, tmp_path, capsys):
    from asymk_talker.asymk_core.video_io import read_video
    from asymk_talker.cli.main import main

    model, image, audio, output = tmp_path / "tiny", tmp_path / "photo.png", tmp_path / "a.wav", tmp_path / "o.mp4"
    assert main(["init", "--preset", "tiny", "--output", str(model)]) == 0
    Image.fromarray(odd_photo).save(image)
    sf.write(audio, speech(0.5), 16000)
    base = ["generate", "--model", str(model), "--image", str(image), "--audio", str(audio), "--quiet",
            "--output", str(output), "--steps", "1"]
    assert main(base + ["--paste-back"]) == 0
    frames, fps, _, _ = read_video(output)
    assert frames.shape[1:] == (518, 302, 3)  # 517 x 301 made even for H.264
    _, paste = crop_photo(odd_photo, (32, 32))
    x0, y0, x1, y1 = paste.crop.inside
    below = np.abs(frames[3, y1 + 8:517, :301].astype(float) - odd_photo[y1 + 8:]).mean()
    assert below < 3.0  # outside the box: the photo (up to H.264)
    for extra, flag in ((["--paste-back", "--resume"], "--paste-back"), (["--face-box", "1,2,3,4"], "--face-box"),
                        (["--paste-back", "--face-box", "1,2"], "--face-box"),
                        (["--paste-back", "--face-padding", "9"], "--face-padding")):
        output.unlink(missing_ok=True)
        capsys.readouterr()
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert f"`{flag}`" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not output.exists()
