"""Hostile files, generated here (nothing is downloaded): truncated and foreign data,
polyglots, decompression bombs in every allowed format's header, odd-but-valid images.

Every case is deterministic (fixed seeds, fixed pixels) and comes with the one outcome the
pipeline must give it: "ok" or the exact error code. The limits the cases are built
against are the ones the reliability servers run with (LIMITS)."""
from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw

# The settings the hostile-input server runs with (see conftest.SERVER_LIMITS).
MAX_IMAGE_BYTES = 2_000_000
MAX_REQUEST_BYTES = 4_000_000
MAX_IMAGE_PIXELS = 50_000_000  # the default: every bomb below declares far more


@dataclass(frozen=True)
class FileCase:
    name: str
    data: bytes
    expected: str              # "ok" or the error code, on every path
    content_type: str = "image/jpeg"
    filename: str = "upload.jpg"
    bomb: bool = False         # declares a huge image: must never allocate it
    # what the raw-body HTTP path must answer when it differs from the storage path
    http_expected: str | None = None
    size: tuple[int, int] | None = None  # (width, height) an ok result must report


# --- builders -----------------------------------------------------------------------------

def _pattern(size=(96, 64), mode="RGB", seed=1) -> Image.Image:
    """A small image with real structure (gradients and shapes), never a flat colour."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(6):
        x0, y0 = rng.randrange(max(1, w)), rng.randrange(max(1, h))
        draw.rectangle([x0, y0, x0 + w // 3, y0 + h // 3],
                       fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def jpeg(size=(96, 64), seed=1, **params) -> bytes:
    return encode(_pattern(size, seed=seed), "JPEG", quality=85, **params)


def png(size=(96, 64), mode="RGB", seed=1, **params) -> bytes:
    return encode(_pattern(size, mode, seed=seed), "PNG", **params)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_raw(width: int, height: int, *, bit_depth: int, color_type: int, rows) -> bytes:
    """A PNG from raw scanlines (each row yielded without its filter byte), compressed as it goes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    packer = zlib.compressobj(9)
    parts = []
    for row in rows:
        parts.append(packer.compress(b"\x00" + row))
    parts.append(packer.flush())
    return PNG_MAGIC + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_bomb_header(width=100_000, height=100_000) -> bytes:
    """A PNG header declaring 10^10 pixels, followed by a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_MAGIC + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def png_bomb_zeros(side=20_000) -> bytes:
    """A real, complete 1-bit PNG of side x side zero pixels: ~50 kB that decode to 400 MPixels."""
    row = bytes(side // 8)
    return png_raw(side, side, bit_depth=1, color_type=0, rows=(row for _ in range(side)))


def png_with_chunk(kind: bytes, data: bytes, base: bytes | None = None) -> bytes:
    """A valid PNG with one extra chunk inserted right after IHDR."""
    base = base or png((16, 16))
    head = len(PNG_MAGIC) + 8 + 13 + 4
    return base[:head] + _chunk(kind, data) + base[head:]


def png_text_bomb() -> bytes:
    """A zTXt chunk that inflates to 64 MB of text (Pillow caps text chunks at 1 MB)."""
    return png_with_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9))


def png_bad_crc() -> bytes:
    data = bytearray(png((32, 32)))
    data[len(PNG_MAGIC) + 8 + 13] ^= 0xFF  # IHDR's CRC
    return bytes(data)


def png_16bit_rgb(size=(48, 32)) -> bytes:
    w, h = size
    return png_raw(w, h, bit_depth=16, color_type=2,
                   rows=(b"".join(struct.pack(">HHH", x * 1300, y * 2000, (x * y) % 65536) for x in range(w))
                         for y in range(h)))


def jpeg_bomb(width=65_500, height=65_500) -> bytes:
    """A valid small JPEG whose SOF0 header is patched to declare 65500 x 65500."""
    data = bytearray(jpeg((64, 64)))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def gif_bomb() -> bytes:
    """A GIF whose logical screen and image descriptor both declare 65535 x 65535."""
    data = bytearray(encode(_pattern((16, 16)).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)
    table = 3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0
    at = data.index(b"\x2c\x00\x00\x00\x00", 13 + table)  # the image descriptor, placed at (0, 0)
    struct.pack_into("<HHHH", data, at + 1, 0, 0, 65535, 65535)
    return bytes(data)


def bmp_bomb(width=100_000, height=100_000) -> bytes:
    """A BMP header declaring 10^10 24-bit pixels and carrying none."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + bytes(16)


def tiff_bomb(width=100_000, height=100_000) -> bytes:
    """A little-endian TIFF whose IFD declares 10^10 8-bit grey pixels in one tiny strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 9 * 12 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) if kind == 4
        else struct.pack("<HHIHH", tag, kind, count, value, 0)
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)


def webp_bomb(side=16_384) -> bytes:
    """A lossless WebP (VP8L) whose header declares side x side (the format's maximum) in front
    of a 16 x 16 image's bitstream."""
    data = bytearray(encode(_pattern((16, 16)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)  # keep alpha + version bits
    data[21:25] = (bits | (side - 1) | (side - 1) << 14).to_bytes(4, "little")
    return bytes(data)


def webp_vp8x_mismatch(width=16_384, height=16_384) -> bytes:
    """An extended WebP (VP8X) declaring a 16384 x 16384 canvas around a 16 x 16 frame: libwebp
    refuses a still image whose canvas and frame disagree."""
    small = encode(_pattern((16, 16)), "WEBP", lossless=True)
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + small[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def exif_rotated_jpeg() -> bytes:
    """Stored 80 x 40, EXIF orientation 6: the image is 40 wide and 80 tall."""
    img = _pattern((80, 40), seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=85, exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [_pattern((40, 30), seed=s).convert("P") for s in range(4)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def palette_with_transparency() -> bytes:
    img = _pattern((40, 30)).convert("P")
    return encode(img, "PNG", transparency=0)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


HTML = b"<!doctype html><html><body><script>window.pwned = 1</script><h1>not an image</h1></body></html>\n"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
       b'onload="alert(1)"><rect width="10" height="10"/></svg>')
JAR = zip_bytes({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\n", "Evil.class": b"\xca\xfe\xba\xbe" + bytes(60)})


def file_cases() -> list[FileCase]:
    rng = random.Random(20240607)
    good_jpeg, good_png, good_gif = jpeg(), png(), encode(_pattern((32, 32)).convert("P"), "GIF")
    over_image = png_with_chunk(b"tEXt", b"pad\x00" + bytes(MAX_IMAGE_BYTES + 100_000))
    over_request = png_with_chunk(b"tEXt", b"pad\x00" + bytes(MAX_REQUEST_BYTES + 100_000))
    cases = [
        # --- empty, truncated, foreign --------------------------------------------------------
        FileCase("zero_bytes", b"", "empty_object"),
        FileCase("truncated_jpeg_half", good_jpeg[: len(good_jpeg) // 2], "corrupt_image"),
        FileCase("truncated_jpeg_header", good_jpeg[:20], "corrupt_image"),
        FileCase("truncated_png_after_ihdr", good_png[:33], "corrupt_image", content_type="image/png"),
        FileCase("truncated_png_half", good_png[: len(good_png) // 2], "corrupt_image", content_type="image/png"),
        FileCase("truncated_gif", good_gif[: len(good_gif) // 2], "corrupt_image", content_type="image/gif"),
        FileCase("png_bad_crc", png_bad_crc(), "corrupt_image", content_type="image/png"),
        FileCase("random_bytes", rng.randbytes(4096), "unsupported_format"),
        FileCase("random_bytes_jpeg_magic", b"\xff\xd8\xff\xe0" + rng.randbytes(4096), "corrupt_image"),
        FileCase("random_bytes_png_magic", PNG_MAGIC + rng.randbytes(4096), "corrupt_image", content_type="image/png"),
        FileCase("text_named_jpg", b"just some text, not a picture\n" * 20, "unsupported_format"),
        FileCase("html_named_jpg", HTML, "unsupported_format"),
        FileCase("svg_named_jpg", SVG, "unsupported_format"),
        FileCase("zip_named_jpg", zip_bytes({"a.jpg": good_jpeg}), "unsupported_format"),
        FileCase("pdf_named_jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "unsupported_format"),
        FileCase("postscript_named_jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
                 "unsupported_format"),
        FileCase("ico_named_jpg", encode(_pattern((16, 16)), "ICO"), "unsupported_format"),
        FileCase("html_then_png", HTML + good_png, "unsupported_format"),
        # --- polyglots: the image part is what is read; the rest is never interpreted ------------
        FileCase("png_plus_zip", good_png + zip_bytes({"x.html": HTML}), "ok", content_type="image/png",
                 size=(96, 64)),
        FileCase("png_plus_html", good_png + HTML, "ok", content_type="image/png", size=(96, 64)),
        FileCase("gifar", good_gif + JAR, "ok", content_type="image/gif", size=(32, 32)),
        FileCase("jpeg_plus_zip", good_jpeg + zip_bytes({"payload.sh": b"#!/bin/sh\necho pwned\n"}), "ok",
                 size=(96, 64)),
        # --- decompression bombs: refused from the header, never allocated -----------------------
        FileCase("bomb_png_header", png_bomb_header(), "too_many_pixels", content_type="image/png", bomb=True),
        FileCase("bomb_png_real_zeros", png_bomb_zeros(), "too_many_pixels", content_type="image/png", bomb=True),
        FileCase("bomb_jpeg_sof", jpeg_bomb(), "too_many_pixels", bomb=True),
        FileCase("bomb_gif_screen", gif_bomb(), "too_many_pixels", content_type="image/gif", bomb=True),
        FileCase("bomb_bmp_header", bmp_bomb(), "too_many_pixels", content_type="image/bmp", bomb=True),
        FileCase("bomb_tiff_ifd", tiff_bomb(), "too_many_pixels", content_type="image/tiff", bomb=True),
        FileCase("bomb_webp_header", webp_bomb(), "too_many_pixels", content_type="image/webp", bomb=True),
        FileCase("bomb_webp_vp8x_canvas", webp_vp8x_mismatch(), "corrupt_image", content_type="image/webp",
                 bomb=True),
        FileCase("bomb_png_ztxt_text", png_text_bomb(), "corrupt_image", content_type="image/png", bomb=True),
        # --- sizes ---------------------------------------------------------------------------------
        FileCase("over_image_limit", over_image, "too_large", content_type="image/png"),
        FileCase("over_request_limit", over_request, "too_large", content_type="image/png"),
        # --- odd but valid -------------------------------------------------------------------------
        FileCase("cmyk_jpeg", encode(_pattern((60, 40)).convert("CMYK"), "JPEG", quality=90), "ok", size=(60, 40)),
        FileCase("png_16bit_rgb", png_16bit_rgb(), "ok", content_type="image/png", size=(48, 32)),
        FileCase("png_16bit_grey", encode(_pattern((40, 30)).convert("I").point(lambda v: v * 200).convert("I;16"),
                                          "PNG"), "ok", content_type="image/png", size=(40, 30)),
        FileCase("tiff_16bit_grey", encode(_pattern((40, 30)).convert("I").convert("I;16"), "TIFF"), "ok",
                 content_type="image/tiff", size=(40, 30)),
        FileCase("tiff_float", encode(_pattern((40, 30)).convert("F"), "TIFF"), "ok", content_type="image/tiff",
                 size=(40, 30)),
        FileCase("palette_with_transparency", palette_with_transparency(), "ok", content_type="image/png",
                 size=(40, 30)),
        FileCase("grey_alpha_png", encode(_pattern((40, 30)).convert("LA"), "PNG"), "ok", content_type="image/png",
                 size=(40, 30)),
        FileCase("animated_gif", animated_gif(), "ok", content_type="image/gif", size=(40, 30)),
        FileCase("exif_rotated_jpeg", exif_rotated_jpeg(), "ok", size=(40, 80)),
        FileCase("progressive_jpeg", jpeg((80, 60), progressive=True), "ok", size=(80, 60)),
        FileCase("png_broken_exif", png_with_chunk(b"eXIf", b"MM\x00*garbage" * 8, png((80, 60))), "ok",
                 content_type="image/png", size=(80, 60)),
        FileCase("webp_lossy", encode(_pattern((64, 48)), "WEBP", quality=80), "ok", content_type="image/webp",
                 size=(64, 48)),
        FileCase("one_by_one", png((1, 1)), "ok", content_type="image/png", size=(1, 1)),
        FileCase("wide_10000x1", png((10_000, 1)), "ok", content_type="image/png", size=(10_000, 1)),
        FileCase("tall_1x10000", png((1, 10_000)), "ok", content_type="image/png", size=(1, 10_000)),
        FileCase("wide_40000x2_grey", png((40_000, 2), mode="L"), "ok", content_type="image/png", size=(40_000, 2)),
        FileCase("jpeg_sent_as_png", jpeg(seed=3), "ok", content_type="image/png", size=(96, 64)),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
