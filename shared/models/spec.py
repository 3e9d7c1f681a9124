"""InputSpec: what a model wants fed to it, derived from its signature and overridable.

The knobs mirror BigQuery ML's imported image models: decode to a size
(ML.RESIZE_IMAGE: stretch, centre crop or pad keeping aspect ratio), a colour space
(ML.CONVERT_COLOR_SPACE) and a value range (ML.DECODE_IMAGE gives floats in [0, 1)).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from shared.errors import BucketeyeError

RESIZE_MODES = ("stretch", "crop", "pad")
COLOR_SPACES = ("RGB", "HSV", "YIQ", "YUV", "GRAYSCALE")
DEFAULT_SIZE = 224  # for models whose signature leaves height/width open
PIXELS, ENCODED = "pixels", "encoded"  # what the model is fed: our decoded pixels, or the file's bytes


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    channels: int = 3
    dtype: str = "float32"                        # numpy dtype name the runtime wants
    value_range: tuple[float, float] = (0.0, 1.0)  # pixel 0 maps to lo, 255 to hi (float inputs)
    color_space: str = "RGB"
    resize_mode: str = "stretch"
    crop_fraction: float = 1.0                     # share of the short side kept by "crop"
    layout: str = "NHWC"                           # or NCHW (common in ONNX)
    encoding: str = PIXELS                         # ENCODED: the model decodes the bytes itself

    def describe(self) -> dict:
        if self.encoding == ENCODED:
            return {"encoding": ENCODED, "dtype": self.dtype}
        return {
            "height": self.height, "width": self.width, "channels": self.channels,
            "dtype": self.dtype, "range": list(self.value_range), "color_space": self.color_space,
            "resize_mode": self.resize_mode, "crop_fraction": self.crop_fraction, "layout": self.layout,
        }


def spec_from_shape(shape, dtype: str, layout: str | None = None) -> InputSpec:
    """Derive a spec from an input tensor's shape and dtype (batch dimension first)."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in list(shape)]
    if len(dims) == 3:  # no batch dimension
        dims = [None] + dims
    if len(dims) != 4:
        raise BucketeyeError("model_error", f"the model input has shape {list(shape)}; expected an image batch [N,H,W,C]",
                             retryable=False)
    if layout is None:
        layout = "NCHW" if dims[1] in (1, 3) and dims[3] not in (1, 3) else "NHWC"
    if layout == "NCHW":
        channels, height, width = dims[1], dims[2], dims[3]
    else:
        height, width, channels = dims[1], dims[2], dims[3]
    channels = channels or 3
    return InputSpec(
        height=height or DEFAULT_SIZE,
        width=width or DEFAULT_SIZE,
        channels=channels,
        dtype=dtype,
        value_range=default_range(dtype),
        color_space="GRAYSCALE" if channels == 1 else "RGB",
        layout=layout,
    )


def encoded_spec() -> InputSpec:
    """A model fed the encoded file: no size, colour space or range of ours applies."""
    return InputSpec(height=0, width=0, channels=0, dtype="string", encoding=ENCODED)


def default_range(dtype: str) -> tuple[float, float]:
    if dtype == "uint8":
        return (0.0, 255.0)
    if dtype == "int8":
        return (-128.0, 127.0)
    return (0.0, 1.0)


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise BucketeyeError("bad_message", f"input range {text!r} is not 'LOW,HIGH' (e.g. '0,1' or '-1,1')") from None
    if not lo < hi:
        raise BucketeyeError("bad_message", f"input range {text!r}: LOW must be below HIGH")
    return (lo, hi)


def apply_metadata(spec: InputSpec, meta: dict) -> InputSpec:
    """The model's own normalisation, from a model.json beside it ({"input": {...}})."""
    given = meta.get("input") or {}
    changes = {}
    for key in ("height", "width", "channels", "dtype", "color_space", "resize_mode", "crop_fraction", "layout"):
        if key in given:
            changes[key] = given[key]
    if "range" in given:
        changes["value_range"] = tuple(float(v) for v in given["range"])
    return _validated(replace(spec, **changes))


def apply_overrides(spec: InputSpec, *, resize_mode: str = "", color_space: str = "", input_range: str = "") -> InputSpec:
    """User settings (env or flags) win over what the model says."""
    changes = {}
    if resize_mode:
        changes["resize_mode"] = resize_mode.lower()
    if color_space:
        changes["color_space"] = color_space.upper()
    if input_range:
        changes["value_range"] = parse_range(input_range)
    return _validated(replace(spec, **changes))


def _validated(spec: InputSpec) -> InputSpec:
    if spec.resize_mode not in RESIZE_MODES:
        raise BucketeyeError("bad_message", f"resize mode {spec.resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
    if spec.color_space not in COLOR_SPACES:
        raise BucketeyeError("bad_message", f"colour space {spec.color_space!r} is not one of {', '.join(COLOR_SPACES)}")
    if not 0 < spec.crop_fraction <= 1:
        raise BucketeyeError("bad_message", f"crop fraction {spec.crop_fraction} must be in (0, 1]")
    return spec
