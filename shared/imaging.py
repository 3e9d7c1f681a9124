"""Decode and validate image bytes with Pillow, ending in one RGB image.

Limits are checked before pixels are allocated: the byte size first, then the
dimensions read from the header, so a decompression bomb never allocates its
declared size. Large JPEGs are decoded straight to near the target size (draft).
"""
from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Register just the decoders we allow, instead of Pillow importing every plugin.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from shared.errors import BucketeyeError

# Only these decoders are ever used: no PostScript/Ghostscript, no exotic plugins.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")  # JPEG also opens MPO
FORMAT_NAMES = {"MPO": "JPEG"}  # phone cameras write MPO: a JPEG with extra frames
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels
Image.MAX_IMAGE_PIXELS = None  # our own limit (max_pixels) is checked on the header instead
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, whatever the mode


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, possibly already reduced towards the target size
    format: str         # JPEG, PNG, ...
    width: int          # original size, after EXIF orientation
    height: int
    release: Callable[[], None] = field(default=lambda: None, repr=False)  # hands its pixels back to the budget


# Bytes a decode may hold per pixel at its peak (the decoded frame, an RGB copy, resize buffers),
# and the share of the instance's memory all decodes together may use.
BYTES_PER_DECODED_PIXEL = 10
DECODE_MEMORY_SHARE = 0.25


def memory_limit_bytes() -> int:
    """The container's memory limit (cgroup v2, as on Cloud Run), else the machine's memory."""
    try:
        text = open("/sys/fs/cgroup/memory.max").read().strip()
        if text.isdigit():
            return int(text)
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_pixel_budget(max_pixels: int) -> int:
    """A share of memory in pixels; never below one image of the largest size allowed."""
    return max(max_pixels, int(memory_limit_bytes() * DECODE_MEMORY_SHARE / BYTES_PER_DECODED_PIXEL))


class PixelBudget:
    """How many pixels may be decoded at once in this process. A decode waits until its pixels
    fit, so N decode threads meeting N huge images cannot together exhaust the memory; a lone
    image always goes (a budget is never below the largest image allowed)."""

    def __init__(self, pixels: int):
        self.limit = pixels
        self.in_use = 0
        self.peak = 0
        self._changed = threading.Condition()

    def acquire(self, pixels: int) -> Callable[[], None]:
        """Wait for room; returns the release function (safe to call more than once)."""
        with self._changed:
            self._changed.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= self.limit)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        released = threading.Event()

        def release() -> None:
            with self._changed:
                if not released.is_set():
                    released.set()
                    self.in_use -= pixels
                    self._changed.notify_all()
        return release


def check_size(size: int, max_bytes: int) -> None:
    if size == 0:
        raise BucketeyeError("empty_object", "the image is empty (0 bytes)")
    if size > max_bytes:
        raise BucketeyeError("too_large", f"the image is {size} bytes; the limit is {max_bytes}")


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int,
                 min_size: tuple[int, int] | None = None, budget: PixelBudget | None = None) -> DecodedImage:
    """Decode `data` to RGB. `min_size` lets JPEG decode at a reduced scale
    that is still at least that large (width, height). With a `budget`, the pixels to be
    decoded are reserved before they are allocated; the caller calls .release() when done
    with the image."""
    check_size(len(data), max_bytes)
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _header_error("image", _reason(exc)) from None

    fmt = FORMAT_NAMES.get(img.format, img.format)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise BucketeyeError("corrupt_image", "the image has no pixels")
    if width * height > max_pixels:
        raise BucketeyeError("too_many_pixels",
                             f"the image is {width}x{height} ({width * height} pixels); the limit is {max_pixels}")

    if min_size and fmt == "JPEG":
        # DCT scaling: decode at 1/2, 1/4 or 1/8 while staying >= min_size.
        side = max(min_size)
        img.draft("RGB", (side, side))
    release = budget.acquire(img.size[0] * img.size[1]) if budget else (lambda: None)  # after draft: the real size
    try:
        return _load(img, fmt, width, height, release)
    except BaseException:
        release()
        raise


def _load(img: Image.Image, fmt: str, width: int, height: int, release) -> DecodedImage:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise BucketeyeError("corrupt_image", f"the image data is truncated or corrupt ({_reason(exc)})") from None

    # Read EXIF only after load(): for PNG, getexif() loads the pixels itself, and its
    # error (swallowed as "broken EXIF") left a half-decoded image that load() then accepted.
    orientation = _orientation(img)
    loaded = img.size
    img = _apply_orientation(img, orientation)
    if img.size != loaded:  # turned by 90 degrees here (TIFF turns itself on load: its header size already is)
        width, height = height, width
    return DecodedImage(image=to_rgb(img), format=fmt, width=width, height=height, release=release)


# Magic bytes of the allowed formats: data starting with one of these is one of our formats, damaged.
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF",
               b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}


# Content types that say nothing about the bytes (Cloud Storage records application/octet-stream
# for an upload that gave none): such objects are identified by their first bytes instead.
GENERIC_CONTENT_TYPES = ("", "application/octet-stream", "binary/octet-stream")
SNIFF_BYTES = 12  # enough for every signature below (WebP's is at bytes 8-11)


def is_generic_type(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in GENERIC_CONTENT_TYPES


def sniff_format(head: bytes) -> str | None:
    """The allowed format whose magic number `head` starts with, or None: not an image we read."""
    fmt = next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)
    if fmt is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WEBP"
    return fmt


def _unidentified(data: bytes) -> BucketeyeError:
    """No decoder accepted the data: foreign data, a damaged header, or a variant Pillow cannot decode."""
    fmt = sniff_format(data)
    if fmt is None:
        return BucketeyeError("unsupported_format", "not a supported image (JPEG, PNG, BMP, GIF, WebP, TIFF)")
    try:  # ask that format's decoder alone why it refused
        Image.OPEN[fmt][0](io.BytesIO(data), "")
        reason = "unreadable header"
    except Exception as exc:
        reason = _reason(exc)
    return _header_error(fmt, reason)


def _header_error(fmt: str, reason: str) -> BucketeyeError:
    if "unsupported" in reason.lower() or "unknown pixel mode" in reason:  # e.g. a 64-bit float TIFF
        return BucketeyeError("unsupported_format", f"a {fmt} variant that cannot be decoded ({reason})")
    return BucketeyeError("corrupt_image", f"the {fmt} header is truncated or corrupt ({reason})")


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF is not a broken image
        return 1


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    if orientation == 1:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Every Pillow mode to 8-bit RGB, the same way each time."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode == "La":  # premultiplied: Pillow converts it only to LA
        img = img.convert("LA")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _scale_16bit(img)
    if mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if "A" in mode or mode in ("La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _scale_16bit(img: Image.Image) -> Image.Image:
    arr = np.asarray(img).astype(np.float32)
    arr = np.clip(arr, 0, 65535) / 257.0
    return Image.fromarray(np.round(arr).astype(np.uint8), "L").convert("RGB")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def draft_size(target: tuple[int, int], crop_fraction: float) -> tuple[int, int]:
    """Smallest decode size that still leaves a full-resolution crop of `target`."""
    width, height = target
    return (math.ceil(width / crop_fraction), math.ceil(height / crop_fraction))
