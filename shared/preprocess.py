"""Turn a decoded RGB image into the array a model wants, per its InputSpec."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from shared.models.spec import InputSpec

_RESAMPLE = Image.Resampling.BICUBIC
_REDUCING_GAP = 3.0  # shrink huge non-JPEG images by whole factors first: fast, same quality

# RGB -> YIQ / YUV (BT.601), applied to values in [0, 1] as BigQuery ML's CONVERT_COLOR_SPACE does.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]], dtype=np.float32)
_YUV = np.array([[0.299, 0.587, 0.114], [-0.14714, -0.28886, 0.436], [0.615, -0.51499, -0.10001]], dtype=np.float32)


def resize(img: Image.Image, spec: InputSpec) -> Image.Image:
    size = (spec.width, spec.height)
    if spec.resize_mode == "pad":
        return ImageOps.pad(img, size, method=_RESAMPLE, color=(0, 0, 0))
    if spec.resize_mode == "crop":
        return img.resize(size, _RESAMPLE, box=_centre_box(img.size, size, spec.crop_fraction),
                          reducing_gap=_REDUCING_GAP)
    if img.size == size:
        return img
    return img.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)


def _centre_box(src: tuple[int, int], dst: tuple[int, int], fraction: float) -> tuple[float, float, float, float]:
    """The centred region with the target's aspect ratio, `fraction` of the largest such region."""
    src_w, src_h = src
    dst_w, dst_h = dst
    scale = min(src_w / dst_w, src_h / dst_h) * fraction
    crop_w, crop_h = dst_w * scale, dst_h * scale
    # Clamped: dst * (src / dst) can round a hair past src (58x58 at 224 gave a -3.6e-15 offset),
    # and Pillow refuses a box outside the image.
    left, top = max(0.0, (src_w - crop_w) / 2), max(0.0, (src_h - crop_h) / 2)
    return (left, top, min(float(src_w), left + crop_w), min(float(src_h), top + crop_h))


def to_array(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resized RGB image -> HWC (or CHW) array in the spec's colour space, dtype and range."""
    if spec.color_space == "GRAYSCALE" or spec.channels == 1:
        arr = np.asarray(img.convert("L"))[:, :, None]
        if spec.channels == 3:
            arr = np.repeat(arr, 3, axis=2)
        return _finish(arr, spec)
    if spec.color_space == "HSV":
        return _finish(np.asarray(img.convert("HSV")), spec)
    if spec.color_space in ("YIQ", "YUV"):
        matrix = _YIQ if spec.color_space == "YIQ" else _YUV
        unit = np.asarray(img, dtype=np.float32) / 255.0
        return _finish_float(unit @ matrix.T, spec)
    return _finish(np.asarray(img), spec)


def _finish(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels -> the model's dtype and range."""
    if spec.dtype == "uint8":
        out = arr
    elif spec.dtype == "int8":
        out = (arr.astype(np.int16) - 128).astype(np.int8)
    else:
        lo, hi = spec.value_range
        out = arr.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        out = out.astype(spec.dtype, copy=False)
    return _layout(np.ascontiguousarray(out), spec)


def _finish_float(unit: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Values already converted in [0, 1] scale (YIQ/YUV may be signed) -> dtype and range."""
    if spec.dtype in ("uint8", "int8"):
        pixels = np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)
        return _finish(pixels, spec)
    lo, hi = spec.value_range
    out = (unit * (hi - lo) + lo).astype(spec.dtype, copy=False)
    return _layout(np.ascontiguousarray(out), spec)


def _layout(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    return np.ascontiguousarray(arr.transpose(2, 0, 1)) if spec.layout == "NCHW" else arr


def preprocess(img: Image.Image, spec: InputSpec) -> np.ndarray:
    return to_array(resize(img, spec), spec)
