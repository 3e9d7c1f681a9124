"""Decoding and validation: formats, EXIF orientation, modes, limits, draft mode, bombs."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from _unit_support import REPO, encode, solid, subprocess_env
from PIL import Image, ImageFile

from shared.config import Settings
from shared.errors import BucketeyeError
from shared.imaging import decode_image, to_rgb

BIG = 10 ** 9
RED, BLUE, GREY = (220, 20, 30), (20, 30, 220), (128, 128, 128)


def decode(data: bytes, **limits):
    return decode_image(data, max_bytes=limits.pop("max_bytes", BIG),
                        max_pixels=limits.pop("max_pixels", BIG), **limits)


def error_of(data: bytes, **limits) -> BucketeyeError:
    with pytest.raises(BucketeyeError) as caught:
        decode(data, **limits)
    return caught.value


def close(a, b, tol=6) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# --- formats ------------------------------------------------------------------------------

def _left_right(size=(40, 20)) -> Image.Image:
    """Left half RED, right half BLUE."""
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return img


@pytest.mark.parametrize("fmt, params", [
    ("JPEG", {"quality": 95}), ("PNG", {}), ("BMP", {}), ("GIF", {}), ("WEBP", {"lossless": True}), ("TIFF", {}),
])
def test_each_format_decodes_to_rgb(fmt, params):
    decoded = decode(encode(_left_right(), fmt, **params))
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (40, 20)
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 20)
    assert close(decoded.image.getpixel((5, 10)), RED, tol=12)
    assert close(decoded.image.getpixel((35, 10)), BLUE, tol=12)


def test_mpo_is_reported_as_jpeg():
    frames = [solid(RED, (16, 16)), solid(BLUE, (16, 16))]
    buf = io.BytesIO()
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:])
    decoded = decode(buf.getvalue())
    assert decoded.format == "JPEG"
    assert close(decoded.image.getpixel((8, 8)), RED, tol=12)


def test_animated_gif_gives_its_first_frame():
    frames = [solid(RED, (16, 16)), solid(BLUE, (16, 16)), solid((0, 200, 0), (16, 16))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 3
    decoded = decode(buf.getvalue())
    assert decoded.format == "GIF"
    assert close(decoded.image.getpixel((8, 8)), RED, tol=12)


# --- EXIF orientation ---------------------------------------------------------------------

def _with_orientation(img: Image.Image, orientation: int, fmt="JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation, size, first, last", [
    # stored: 40x20, left RED / right BLUE. (first, last) = colour at top-left / bottom-right once shown.
    (1, (40, 20), RED, BLUE),
    (3, (40, 20), BLUE, RED),   # rotated 180
    (6, (20, 40), RED, BLUE),   # rotate 90 clockwise to show: the left half ends on top
    (8, (20, 40), BLUE, RED),   # rotate 90 counter-clockwise: the right half ends on top
])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied(fmt, orientation, size, first, last):
    decoded = decode(_with_orientation(_left_right(), orientation, fmt))
    assert decoded.image.size == size
    assert (decoded.width, decoded.height) == size
    w, h = size
    assert close(decoded.image.getpixel((1, 1)), first, tol=12)
    assert close(decoded.image.getpixel((w - 2, h - 2)), last, tol=12)


def test_broken_exif_is_ignored_not_fatal():
    data = bytearray(_with_orientation(_left_right(), 6))
    start = data.index(b"Exif\x00\x00") + 6
    data[start:start + 8] = b"XX\x00\x00\xff\xff\xff\xff"  # no longer a TIFF header
    decoded = decode(bytes(data))
    assert (decoded.width, decoded.height) == (40, 20)


# --- modes --------------------------------------------------------------------------------

def _p_with_transparency() -> Image.Image:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 128, 128, 128] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.info["transparency"] = 0
    return img


def _p_plain() -> Image.Image:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 128, 128, 128] + [0] * 762)
    return img


# Each builder paints mid grey (or the colour given) at (1, 1); (0, 0) may be transparent.
MODE_CASES = {
    "1": (lambda: Image.new("1", (4, 4), 1), (255, 255, 255)),
    "L": (lambda: Image.new("L", (4, 4), 128), GREY),
    "LA": (lambda: Image.new("LA", (4, 4), (128, 255)), GREY),
    "La": (lambda: Image.new("La", (4, 4), (128, 255)), GREY),
    "P": (_p_plain, GREY),
    "P+transparency": (_p_with_transparency, GREY),
    "PA": (lambda: Image.new("PA", (4, 4), (1, 255)), None),
    "RGB": (lambda: Image.new("RGB", (4, 4), RED), RED),
    "RGBA": (lambda: Image.new("RGBA", (4, 4), RED + (255,)), RED),
    "RGBa": (lambda: Image.new("RGBa", (4, 4), RED + (255,)), RED),
    "RGBX": (lambda: Image.new("RGBX", (4, 4), RED + (0,)), RED),
    "CMYK": (lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 127)), GREY),
    "YCbCr": (lambda: Image.new("YCbCr", (4, 4), (128, 128, 128)), GREY),
    "HSV": (lambda: Image.new("HSV", (4, 4), (0, 0, 128)), GREY),
    "I;16": (lambda: Image.new("I;16", (4, 4), 128 * 257), GREY),
    "I;16B": (lambda: Image.new("I;16B", (4, 4), 128 * 257), GREY),
    "I": (lambda: Image.new("I", (4, 4), 128 * 257), GREY),
    "F": (lambda: Image.new("F", (4, 4), 128.0), GREY),
}


@pytest.mark.parametrize("name", list(MODE_CASES))
def test_every_mode_becomes_the_same_rgb(name):
    build, expected = MODE_CASES[name]
    img = build()
    if name == "PA":  # palette + alpha: look the colour up in the palette
        img.putpalette([0, 0, 0] + list(GREY) + [0] * 762)
        expected = GREY
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == img.size
    assert close(rgb.getpixel((1, 1)), expected, tol=1), (name, rgb.getpixel((1, 1)))


@pytest.mark.parametrize("mode, pixel", [
    ("LA", (128, 0)), ("RGBA", (255, 0, 0, 0)), ("La", (0, 0)), ("RGBa", (0, 0, 0, 0)), ("PA", (1, 0)),
])
def test_transparent_pixels_become_white(mode, pixel):
    img = Image.new(mode, (4, 4), pixel)
    if mode == "PA":
        img.putpalette([0, 0, 0] + list(RED) + [0] * 762)
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_half_transparent_black_is_composited_on_white():
    assert close(to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 128))).getpixel((0, 0)), (127, 127, 127), tol=1)
    assert to_rgb(_p_with_transparency()).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_uses_the_whole_range():
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    rgb = to_rgb(img)
    assert [rgb.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]
    floats = to_rgb(Image.fromarray(np.array([[-5.0, 0.4, 127.6, 300.0]], dtype=np.float32)))
    assert [floats.getpixel((x, 0))[0] for x in range(4)] == [0, 0, 127, 255]


@pytest.mark.parametrize("mode, fmt, value, expected", [
    ("I;16", "PNG", 128 * 257, GREY),
    ("I;16", "TIFF", 128 * 257, GREY),
    ("I;16B", "TIFF", 128 * 257, GREY),
    ("I", "TIFF", 128 * 257, GREY),
    ("F", "TIFF", 128.0, GREY),
    ("1", "PNG", 1, (255, 255, 255)),
    ("1", "BMP", 1, (255, 255, 255)),
    ("L", "JPEG", 128, GREY),
    ("LA", "PNG", (128, 255), GREY),
    ("LA", "TIFF", (128, 255), GREY),
    ("CMYK", "JPEG", (0, 0, 0, 127), GREY),
    ("CMYK", "TIFF", (0, 0, 0, 127), GREY),
    ("RGBA", "PNG", (128, 128, 128, 255), GREY),
    ("RGBA", "WEBP", (128, 128, 128, 255), GREY),
    ("YCbCr", "TIFF", (128, 128, 128), GREY),
])
def test_decoded_modes_end_in_the_same_rgb(mode, fmt, value, expected):
    data = encode(Image.new(mode, (8, 8), value), fmt)
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    assert close(decoded.image.getpixel((4, 4)), expected, tol=3), decoded.image.getpixel((4, 4))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_decoded_palette_transparency_becomes_white(fmt):
    decoded = decode(encode(_p_with_transparency(), fmt, transparency=0))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 1)) == GREY


# --- limits and bad data ------------------------------------------------------------------

def test_default_byte_limit_is_20_mb_and_gives_too_large():
    limit = Settings.from_env(environ={}).max_image_bytes
    assert limit == 20 * 1024 * 1024
    png = encode(solid(RED, (8, 8)), "PNG")
    padded = png + b"\x00" * (limit + 1 - len(png))  # trailing bytes after IEND: a valid PNG otherwise
    assert decode(padded[:limit]).format == "PNG"
    err = error_of(padded, max_bytes=limit)
    assert (err.code, err.retryable) == ("too_large", False)
    assert str(limit) in err.message


def test_pixel_limit_gives_too_many_pixels_at_the_boundary():
    data = encode(solid(RED, (100, 50)), "PNG")
    assert decode(data, max_pixels=5000).width == 100
    err = error_of(data, max_pixels=4999)
    assert err.code == "too_many_pixels" and "100x50" in err.message


def test_empty_object():
    err = error_of(b"")
    assert (err.code, err.retryable) == ("empty_object", False)


@pytest.mark.parametrize("data", [
    b"hello, this is plain text and not an image",
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    b"\x00" * 512,
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
], ids=["text", "pdf", "eps", "zeros", "svg"])
def test_non_images_are_unsupported(data):
    assert error_of(data).code == "unsupported_format"


def test_formats_outside_the_allow_list_are_unsupported():
    for fmt in ("ICO", "PPM", "TGA", "PCX"):
        data = encode(solid(RED, (16, 16)), fmt)
        assert Image.open(io.BytesIO(data)).format in (fmt, "ICO")  # Pillow itself would read it
        assert error_of(data).code == "unsupported_format", fmt


def test_valid_variants_pillow_cannot_decode_are_unsupported_not_corrupt():
    import skimage

    float64_rgb_tiff = (Path(skimage.__file__).parent / "data" / "multipage_rgb.tif").read_bytes()
    err = error_of(float64_rgb_tiff)
    assert err.code == "unsupported_format" and "TIFF" in err.message
    bmp = bytearray(encode(solid(RED, (8, 8)), "BMP"))
    struct.pack_into("<I", bmp, 30, 9)  # a compression method Pillow does not implement
    err = error_of(bytes(bmp))
    assert err.code == "unsupported_format" and "compression" in err.message


FORMATS = [("JPEG", {"quality": 90}), ("PNG", {}), ("BMP", {}), ("GIF", {}), ("WEBP", {}), ("TIFF", {})]


def _noisy(size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("fmt, params", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_data_is_corrupt(fmt, params, keep):
    data = encode(_noisy(), fmt, **params)
    err = error_of(data[:int(len(data) * keep)])
    assert (err.code, err.retryable) == ("corrupt_image", False)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("fmt, params", FORMATS)
def test_a_cut_header_is_corrupt_not_unsupported(fmt, params):
    """The file says what it is (its magic bytes) but ends inside its header."""
    data = encode(_noisy(), fmt, **params)
    for cut in (12, 20, 30):
        assert error_of(data[:cut]).code == "corrupt_image", (fmt, cut)


@pytest.mark.parametrize("offset", [2, 10, 40])
def test_corrupt_png_data_is_corrupt(offset):
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = Image.fromarray(np.stack([xx * 4, yy * 5, xx + yy], axis=-1).astype(np.uint8), "RGB")
    data = bytearray(encode(smooth, "PNG"))  # smooth: a real deflate stream, not stored blocks
    idat = data.index(b"IDAT") + 4
    data[idat + offset:idat + offset + 8] = b"\xff" * 8  # a broken deflate stream
    err = error_of(bytes(data))
    assert err.code == "corrupt_image", err.message


def test_a_decompression_bomb_warning_is_never_relied_on():
    # The engine's own limit replaces Pillow's warning-only default.
    assert Image.MAX_IMAGE_PIXELS is None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- draft mode ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    yy, xx = np.mgrid[0:3024, 0:4032]
    arr = np.stack([(xx * 255 // 4031), (yy * 255 // 3023), np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    return encode(Image.fromarray(arr, "RGB"), "JPEG", quality=85)


@pytest.mark.parametrize("min_size", [(224, 224), (256, 256), (300, 200), (1000, 1000)])
def test_big_jpeg_decodes_straight_to_near_the_target(big_jpeg, min_size):
    decoded = decode(big_jpeg, min_size=min_size)
    assert (decoded.width, decoded.height) == (4032, 3024)  # the original size is still reported
    w, h = decoded.image.size
    assert w >= min_size[0] and h >= min_size[1]
    assert w < 4032 and h < 3024  # actually reduced (DCT scaling by 1/2, 1/4 or 1/8)
    # near the target: the coarsest DCT scale whose result still covers min_size
    coarsest = next((4032 // s, 3024 // s) for s in (8, 4, 2, 1)
                    if 4032 // s >= min_size[0] and 3024 // s >= min_size[1])
    assert (w, h) == coarsest
    # the colours survive: left edge dark red channel, right edge bright
    assert decoded.image.getpixel((0, h // 2))[0] < 30 and decoded.image.getpixel((w - 1, h // 2))[0] > 225


def test_draft_picks_the_smallest_scale_that_still_covers_the_target(big_jpeg):
    assert decode(big_jpeg, min_size=(256, 256)).image.size == (504, 378)    # 1/8
    assert decode(big_jpeg, min_size=(500, 500)).image.size == (1008, 756)   # 1/4: 1/8 would be 378 high
    assert decode(big_jpeg).image.size == (4032, 3024)                      # no target: full size


def test_draft_with_exif_rotation_reports_the_rotated_original_size(big_jpeg):
    img = Image.open(io.BytesIO(big_jpeg))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(img, "JPEG", quality=85, exif=exif.tobytes())
    decoded = decode(rotated, min_size=(256, 256))
    assert (decoded.width, decoded.height) == (3024, 4032)
    assert decoded.image.size == (378, 504)


def test_draft_leaves_other_formats_alone():
    data = encode(solid(RED, (1024, 768)), "PNG")
    assert decode(data, min_size=(224, 224)).image.size == (1024, 768)


# --- decompression bombs ------------------------------------------------------------------

def _png_bomb(w, h) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _gif_bomb(w, h) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0)
            + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00;")


def _bmp_bomb(w, h) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    offset = 14 + len(info)
    pixels = b"\x00" * 64
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def _tiff_bomb(w, h) -> bytes:
    entries = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, None), (277, 3, 1), (278, 4, h), (279, 4, 64)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if value is None else value
        ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 64


def _jpeg_bomb(w, h) -> bytes:
    data = bytearray(encode(solid(GREY, (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


BOMBS = {"png": (_png_bomb, 100_000), "gif": (_gif_bomb, 65_535), "bmp": (_bmp_bomb, 100_000),
         "tiff": (_tiff_bomb, 100_000), "jpeg": (_jpeg_bomb, 65_500)}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_bomb_is_refused_from_its_header_without_allocating(kind, monkeypatch):
    build, side = BOMBS[kind]
    data = build(side, side)
    assert len(data) < 1024
    assert Image.open(io.BytesIO(data)).size == (side, side)  # a genuine header, as crafted

    def no_pixels(self, *args, **kwargs):
        raise AssertionError("pixels were allocated for a bomb")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)

    tracemalloc.start()
    try:
        err = error_of(data, max_pixels=Settings.from_env(environ={}).max_image_pixels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.code, err.retryable) == ("too_many_pixels", False)
    assert f"{side}x{side}" in err.message
    assert peak < 2 * 1024 * 1024, peak


_BOMB_PROBE = """
import json, resource, sys
sys.path.insert(0, "tests/unit")
from test_imaging import BOMBS
from shared.imaging import decode_image
from shared.errors import BucketeyeError
report = {}
for kind, (build, side) in BOMBS.items():
    data = build(side, side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_image(data, max_bytes=10**8, max_pixels=int(sys.argv[1]))
        code = "ok"
    except BucketeyeError as exc:
        code = exc.code
    report[kind] = [code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before]
print(json.dumps(report))
"""


def test_bombs_keep_peak_memory_small_in_a_fresh_process():
    """ru_maxrss of a fresh process: decoding a 10-gigapixel header must not raise its high-water mark."""
    out = subprocess.run([sys.executable, "-c", _BOMB_PROBE, "50000000"], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == set(BOMBS)
    for kind, (code, grown_kib) in report.items():
        assert code == "too_many_pixels", kind
        assert grown_kib < 20 * 1024, (kind, grown_kib)
