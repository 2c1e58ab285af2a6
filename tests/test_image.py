"""Reference image loading (every input form and mode) and preprocessing to [-1, 1] tensors."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from asymk_talker.asymk_core.errors import InputError
from asymk_talker.asymk_core.image import load_image, preprocess_image


def expect_error(kind, name, call, /, *args, **kwargs):
    """The call raises ``kind`` (an InputError) whose message names the argument ``name``."""
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, kind) and isinstance(info.value, InputError), repr(info.value)
    assert f"`{name}`" in str(info.value) and "Fix:" in str(info.value)
    return info.value


def gradient(height=48, width=40) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 100)], -1).astype(np.uint8)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose IHDR claims ``width x height`` (1-bit grey) with a token IDAT: tiny and instant."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------ load_image
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp"])
def test_load_files(tmp_path, suffix):
    array = gradient()
    path = tmp_path / f"portrait{suffix}"
    Image.fromarray(array).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 48)
    tolerance = 0 if suffix in (".png", ".bmp") else 40
    assert np.abs(np.asarray(image).astype(int) - array).max() <= tolerance
    assert load_image(str(path)).size == (40, 48)


def test_modes_are_converted_as_documented(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # left half transparent, right half opaque red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(load_image(tmp_path / "rgba.png"))
    assert (out[:, :20] == 255).all() and (out[:, 20:] == [200, 0, 0]).all()

    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert (np.asarray(load_image(la))[:, :20] == 255).all()
    assert (np.asarray(load_image(la))[:, 20:] == 200).all()

    grey = Image.fromarray(gradient()[..., 0], "L")
    out = np.asarray(load_image(grey))
    assert out.shape == (48, 40, 3) and (out[..., 0] == out[..., 2]).all()

    palette = Image.fromarray(gradient()).convert("P")
    assert load_image(palette).mode == "RGB"
    palette_t = Image.fromarray((rgba[..., 3] > 0).astype(np.uint8), "P")
    palette_t.putpalette([10, 20, 30, 200, 0, 0])
    palette_t.info["transparency"] = 0
    out = np.asarray(load_image(palette_t))
    assert (out[:, :20] == 255).all() and (out[:, 20:] == [200, 0, 0]).all()

    cmyk = Image.fromarray(gradient()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"

    sixteen = (np.arange(48 * 40).reshape(48, 40) * 30).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "grey16.png")
    out = np.asarray(load_image(tmp_path / "grey16.png"))
    assert np.abs(out[..., 0].astype(int) - np.rint(sixteen / 257)).max() <= 1

    as_int = Image.fromarray(sixteen.astype(np.int32), "I")
    assert np.abs(np.asarray(load_image(as_int))[..., 1].astype(int) - np.rint(sixteen / 257)).max() <= 1
    floats = Image.fromarray((sixteen / 65535.0).astype(np.float32), "F")
    assert np.abs(np.asarray(load_image(floats))[..., 2].astype(int) - np.rint(sixteen / 257)).max() <= 1


def test_arrays_and_tensors():
    array = gradient()
    expected = array
    assert np.array_equal(np.asarray(load_image(array)), expected)
    assert np.array_equal(np.asarray(load_image(array.astype(np.float32) / 255)), expected)
    assert np.array_equal(np.asarray(load_image(array.astype(np.uint16) * 257)), expected)
    assert np.array_equal(np.asarray(load_image(array.astype(np.int64))), expected)
    grey = load_image(array[..., 0])
    assert np.array_equal(np.asarray(grey)[..., 2], array[..., 0])
    assert np.array_equal(np.asarray(load_image(array[..., :1])), np.asarray(grey))
    alpha = np.concatenate([array, np.zeros_like(array[..., :1])], -1)
    assert (np.asarray(load_image(alpha)) == 255).all()

    tensor = torch.from_numpy(array).float() / 255
    assert np.array_equal(np.asarray(load_image(tensor)), expected)  # [H, W, C]
    assert np.array_equal(np.asarray(load_image(tensor.permute(2, 0, 1))), expected)  # [C, H, W]
    assert np.array_equal(np.asarray(load_image(tensor[None])), expected)  # ComfyUI [1, H, W, C]
    assert np.array_equal(np.asarray(load_image(torch.from_numpy(array))), expected)  # uint8
    assert np.abs(np.asarray(load_image(tensor.half())).astype(int) - expected).max() <= 1
    assert np.array_equal(np.asarray(load_image(tensor.permute(2, 0, 1)[:1])), np.asarray(grey))


def test_image_errors_name_the_argument(tmp_path):
    expect_error(ValueError, "image", load_image, tmp_path / "missing.png")
    expect_error(ValueError, "--image", load_image, tmp_path, argument="--image")
    expect_error(ValueError, "image", load_image, "")
    (tmp_path / "text.png").write_text("hello, not an image")
    expect_error(ValueError, "image", load_image, tmp_path / "text.png")
    Image.fromarray(gradient(200, 200)).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    expect_error(ValueError, "image", load_image, tmp_path / "truncated.png")
    Image.fromarray(gradient(20, 100)).save(tmp_path / "small.png")
    expect_error(ValueError, "image", load_image, tmp_path / "small.png")
    expect_error(ValueError, "image", load_image, gradient(48, 31))
    expect_error(ValueError, "image", load_image, Image.new("RGB", (31, 64)))
    expect_error(ValueError, "image", load_image, np.zeros((8193, 32), np.uint8))
    png_header_only(tmp_path / "wide.png", 9000, 64)
    expect_error(ValueError, "image", load_image, tmp_path / "wide.png")
    png_header_only(tmp_path / "fifty.png", 8000, 7000)  # 56 MP
    expect_error(ValueError, "image", load_image, tmp_path / "fifty.png")

    nan = gradient().astype(np.float32) / 255
    nan[3, 3, 1] = np.nan
    expect_error(ValueError, "image", load_image, nan)
    expect_error(ValueError, "image", load_image, torch.from_numpy(nan))
    expect_error(ValueError, "image", load_image, gradient().astype(np.float32))  # 0..255 floats
    expect_error(ValueError, "image", load_image, gradient().astype(np.int32) * 4)
    expect_error(ValueError, "image", load_image, torch.rand(2, 48, 40, 3))  # batch of 2
    expect_error(ValueError, "image", load_image, np.zeros((48, 40, 2), np.uint8))
    expect_error(ValueError, "image", load_image, np.zeros((2, 48, 40, 3, 1), np.uint8))
    expect_error(TypeError, "image", load_image, np.zeros((48, 40, 3), bool))
    expect_error(TypeError, "image", load_image, 42)
    expect_error(TypeError, "image", load_image, [[0, 1], [2, 3]])


def test_huge_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    png_header_only(path, 20000, 20000)
    assert path.stat().st_size < 200
    started = time.perf_counter()
    error = expect_error(ValueError, "image", load_image, path)
    assert time.perf_counter() - started < 0.5
    assert "larger" in str(error)
    png_header_only(path, 12000, 9000)  # 108 MP: PIL only warns; the header check refuses it
    started = time.perf_counter()
    expect_error(ValueError, "image", load_image, path)
    assert time.perf_counter() - started < 0.5


# ------------------------------------------------------------------------ preprocess_image
def test_preprocess_shape_range_and_types(tmp_path):
    tensor = preprocess_image(gradient(), 64, 32)
    assert tensor.shape == (1, 3, 64, 32) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    white = preprocess_image(np.full((40, 40, 3), 255, np.uint8), 16, 16)
    black = preprocess_image(np.zeros((40, 40, 3), np.uint8), 16, 16)
    assert torch.allclose(white, torch.ones_like(white)) and torch.allclose(black, -torch.ones_like(black))
    Image.fromarray(gradient()).save(tmp_path / "p.png")
    assert preprocess_image(tmp_path / "p.png", 32, 32).shape == (1, 3, 32, 32)
    assert preprocess_image(torch.rand(1, 48, 40, 3), 48, 40).shape == (1, 3, 48, 40)


def test_preprocess_centre_crops_to_aspect():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100] = [0, 0, 255]
    wide[:, 100:200] = [255, 0, 0]
    wide[:, 200:] = [0, 255, 0]
    out = preprocess_image(wide, 50, 50)[0]
    red = (out[0] + 1) / 2
    assert red.mean() > 0.97 and ((out[1:] + 1) / 2).max() < 0.1
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))  # 300 x 100
    out = preprocess_image(tall, 40, 40)[0]
    assert ((out[0] + 1) / 2).mean() > 0.97
    keep = preprocess_image(wide, 20, 60)[0]  # same aspect: everything kept
    assert ((keep[2, :, :15] + 1) / 2).mean() > 0.9 and ((keep[1, :, -15:] + 1) / 2).mean() > 0.9


def test_preprocess_errors():
    expect_error(ValueError, "height", preprocess_image, gradient(), 0, 32)
    expect_error(ValueError, "width", preprocess_image, gradient(), 32, 9000)
    expect_error(TypeError, "width", preprocess_image, gradient(), 32, 32.0)
    expect_error(TypeError, "image", preprocess_image, None, 32, 32)
