"""Input specs: derived from a signature, model.json and overrides; resize modes; colour spaces."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.errors import BucketeyeError
from shared.imaging import draft_size
from shared.models.spec import DEFAULT_SIZE, InputSpec, apply_metadata, apply_overrides, parse_range, spec_from_shape
from shared.preprocess import preprocess, resize, to_array

RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


# --- derivation from the signature --------------------------------------------------------

@pytest.mark.parametrize("shape, dtype, want", [
    ((None, 224, 224, 3), "float32", dict(height=224, width=224, channels=3, layout="NHWC", value_range=(0.0, 1.0))),
    ((1, 300, 200, 3), "uint8", dict(height=300, width=200, channels=3, layout="NHWC", value_range=(0.0, 255.0))),
    ((None, 3, 224, 160), "float32", dict(height=224, width=160, channels=3, layout="NCHW")),
    ((None, 1, 28, 28), "float32", dict(height=28, width=28, channels=1, layout="NCHW", color_space="GRAYSCALE")),
    ((None, 28, 28, 1), "float32", dict(height=28, width=28, channels=1, layout="NHWC", color_space="GRAYSCALE")),
    ((None, 3, None, None), "float32", dict(height=DEFAULT_SIZE, width=DEFAULT_SIZE, layout="NCHW")),
    ((None, None, None, 3), "uint8", dict(height=DEFAULT_SIZE, width=DEFAULT_SIZE, layout="NHWC")),
    ((-1, 96, 96, 3), "float16", dict(height=96, width=96, dtype="float16", value_range=(0.0, 1.0))),
    ((None, 64, 64, 3), "int8", dict(value_range=(-128.0, 127.0), dtype="int8")),
    ((3, 3, 3), "float32", dict(height=3, width=3, channels=3, layout="NHWC")),  # no batch axis: ambiguous -> NHWC
    ((64, 48, 3), "float32", dict(height=64, width=48, channels=3)),
])
def test_spec_from_signature(shape, dtype, want):
    spec = spec_from_shape(shape, dtype)
    assert spec.dtype == dtype
    for key, value in want.items():
        assert getattr(spec, key) == value, key
    assert spec.resize_mode == "stretch"
    if spec.channels == 3:
        assert spec.color_space == "RGB"


@pytest.mark.parametrize("shape", [(None, 1000), (None,), (None, 8, 8, 3, 1)])
def test_non_image_inputs_are_a_model_error(shape):
    with pytest.raises(BucketeyeError) as caught:
        spec_from_shape(shape, "float32")
    assert caught.value.code == "model_error" and not caught.value.retryable
    assert "[N,H,W,C]" in caught.value.message


def test_float_range_maps_0_to_0_and_255_to_1():
    spec = spec_from_shape((None, 2, 2, 3), "float32")
    arr = to_array(Image.new("RGB", (2, 2), (0, 128, 255)), spec)
    assert arr.dtype == np.float32 and arr.shape == (2, 2, 3)
    np.testing.assert_allclose(arr[0, 0], [0.0, 128 / 255, 1.0], rtol=1e-6)
    assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_uint8_models_get_raw_pixels():
    spec = spec_from_shape((None, 2, 2, 3), "uint8")
    arr = to_array(Image.new("RGB", (2, 2), (7, 128, 255)), spec)
    assert arr.dtype == np.uint8
    assert arr[1, 1].tolist() == [7, 128, 255]


def test_int8_models_get_pixels_shifted_by_128():
    spec = spec_from_shape((None, 2, 2, 3), "int8")
    arr = to_array(Image.new("RGB", (2, 2), (0, 128, 255)), spec)
    assert arr.dtype == np.int8 and arr[0, 0].tolist() == [-128, 0, 127]


def test_nchw_arrays_are_channels_first():
    spec = spec_from_shape((None, 3, 4, 6), "float32")
    arr = preprocess(Image.new("RGB", (60, 40), RED), spec)
    assert arr.shape == (3, 4, 6)
    np.testing.assert_allclose(arr[0], 1.0)
    np.testing.assert_allclose(arr[1:], 0.0)


def test_describe_is_plain_json_data():
    described = spec_from_shape((None, 3, 32, 48), "float32").describe()
    assert described == {"height": 32, "width": 48, "channels": 3, "dtype": "float32", "range": [0.0, 1.0],
                         "color_space": "RGB", "resize_mode": "stretch", "crop_fraction": 1.0, "layout": "NCHW"}


# --- model.json and overrides -------------------------------------------------------------

def test_model_json_sets_the_models_own_normalisation():
    spec = spec_from_shape((None, None, None, 3), "float32")
    spec = apply_metadata(spec, {"input": {"height": 160, "width": 128, "range": [-1, 1], "resize_mode": "crop",
                                           "crop_fraction": 0.875, "color_space": "HSV"}})
    assert (spec.height, spec.width, spec.value_range) == (160, 128, (-1.0, 1.0))
    assert (spec.resize_mode, spec.crop_fraction, spec.color_space) == ("crop", 0.875, "HSV")
    arr = to_array(Image.new("RGB", (1, 1), (0, 0, 0)), replace_color(spec, "RGB"))
    assert arr[0, 0].tolist() == [-1.0, -1.0, -1.0]


def replace_color(spec: InputSpec, color: str) -> InputSpec:
    return apply_overrides(spec, color_space=color)


def test_model_json_without_input_changes_nothing():
    spec = spec_from_shape((None, 224, 224, 3), "uint8")
    assert apply_metadata(spec, {"name": "x"}) == spec


@pytest.mark.parametrize("meta, fragment", [
    ({"input": {"resize_mode": "zoom"}}, "zoom"),
    ({"input": {"color_space": "LAB"}}, "LAB"),
    ({"input": {"crop_fraction": 1.5}}, "1.5"),
])
def test_bad_model_json_values_are_refused(meta, fragment):
    with pytest.raises(BucketeyeError) as caught:
        apply_metadata(spec_from_shape((None, 8, 8, 3), "float32"), meta)
    assert fragment in caught.value.message


def test_overrides_win_and_are_case_insensitive():
    spec = apply_metadata(spec_from_shape((None, 8, 8, 3), "float32"),
                          {"input": {"resize_mode": "crop", "range": [0, 1]}})
    spec = apply_overrides(spec, resize_mode="PAD", color_space="yiq", input_range="-1,1")
    assert (spec.resize_mode, spec.color_space, spec.value_range) == ("pad", "YIQ", (-1.0, 1.0))
    assert apply_overrides(spec) == spec  # empty overrides keep what the model said


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(resize_mode="zoom"), "stretch, crop, pad"),
    (dict(color_space="LAB"), "RGB, HSV, YIQ, YUV, GRAYSCALE"),
    (dict(input_range="0;1"), "LOW,HIGH"),
    (dict(input_range="one,two"), "LOW,HIGH"),
    (dict(input_range="1,0"), "LOW must be below HIGH"),
    (dict(input_range="1,1"), "LOW must be below HIGH"),
    (dict(input_range="0,1,2"), "LOW,HIGH"),
])
def test_bad_overrides_are_a_clear_error(kwargs, fragment):
    with pytest.raises(BucketeyeError) as caught:
        apply_overrides(spec_from_shape((None, 8, 8, 3), "float32"), **kwargs)
    assert caught.value.code == "bad_message" and not caught.value.retryable
    assert fragment in caught.value.message


def test_parse_range():
    assert parse_range("-1, 1") == (-1.0, 1.0)
    assert parse_range("0,255") == (0.0, 255.0)


# --- resize modes -------------------------------------------------------------------------

def _stripes(size=(200, 100)) -> Image.Image:
    """Three vertical stripes: red quarter, green half, blue quarter."""
    w, h = size
    img = Image.new("RGB", size, GREEN)
    img.paste(RED, (0, 0, w // 4, h))
    img.paste(BLUE, (w - w // 4, 0, w, h))
    return img


def _spec(mode: str, size=(64, 64), **extra) -> InputSpec:
    return InputSpec(height=size[1], width=size[0], resize_mode=mode, **extra)


def near(a, b, tol=8) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def test_stretch_squeezes_everything_in():
    out = resize(_stripes(), _spec("stretch"))
    assert out.size == (64, 64)
    assert near(out.getpixel((2, 32)), RED) and near(out.getpixel((32, 32)), GREEN)
    assert near(out.getpixel((61, 32)), BLUE)


@pytest.mark.parametrize("target", [(64, 64), (48, 80), (100, 30)])
def test_every_mode_gives_the_target_size(target):
    for mode in ("stretch", "crop", "pad"):
        assert resize(_stripes(), _spec(mode, target)).size == target, mode


def test_crop_keeps_the_centre_only():
    out = resize(_stripes(), _spec("crop"))
    assert out.size == (64, 64)
    arr = np.asarray(out).astype(int)
    assert np.abs(arr[:, 4:60] - GREEN).max() <= 8  # the side stripes are cut away
    assert arr[:, :, 0].max() < 64 and arr[:, :, 2].max() < 64


def test_crop_fraction_keeps_a_smaller_centre():
    img = Image.new("RGB", (100, 100), RED)
    img.paste(GREEN, (25, 25, 75, 75))  # the central half
    assert near(resize(img, _spec("crop", crop_fraction=1.0)).getpixel((1, 1)), RED)
    half = np.asarray(resize(img, _spec("crop", crop_fraction=0.5))).astype(int)
    assert np.abs(half[4:60, 4:60] - GREEN).max() <= 8


@pytest.mark.parametrize("source, bars", [((200, 100), "rows"), ((100, 200), "columns")])
def test_pad_keeps_the_aspect_ratio_with_black_bars(source, bars):
    img = Image.new("RGB", source, (250, 250, 250))
    out = resize(img, _spec("pad"))
    assert out.size == (64, 64)
    arr = np.asarray(out).astype(int)
    content = arr.sum(axis=2) > 30
    ys, xs = np.nonzero(content)
    box_w, box_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert box_w / box_h == pytest.approx(source[0] / source[1], rel=0.05)
    if bars == "rows":
        assert (box_w, box_h) == (64, 32) and ys.min() == 16
        assert arr[:15].max() == 0 and arr[49:].max() == 0  # black bars above and below
    else:
        assert (box_w, box_h) == (32, 64) and xs.min() == 16
        assert arr[:, :15].max() == 0 and arr[:, 49:].max() == 0


def test_resize_keeps_an_image_already_at_size():
    img = _stripes((64, 64))
    assert resize(img, _spec("stretch")) is img


def test_draft_size_leaves_room_for_the_crop():
    assert draft_size((224, 224), 1.0) == (224, 224)
    assert draft_size((224, 224), 0.875) == (256, 256)
    assert draft_size((300, 200), 0.5) == (600, 400)


# --- colour spaces ------------------------------------------------------------------------

def _pixel(color_space: str, rgb=RED, dtype="float32", value_range=(0.0, 1.0), channels=3) -> np.ndarray:
    spec = InputSpec(height=2, width=2, channels=channels, dtype=dtype, value_range=value_range,
                     color_space=color_space)
    arr = to_array(Image.new("RGB", (2, 2), rgb), spec)
    assert arr.shape == (2, 2, channels)
    assert arr.dtype == np.dtype(dtype)
    return arr[0, 0].astype(np.float64)


@pytest.mark.parametrize("color_space, expected", [
    ("RGB", [1.0, 0.0, 0.0]),
    ("HSV", [0.0, 1.0, 1.0]),
    ("YIQ", [0.299, 0.596, 0.211]),
    ("YUV", [0.299, -0.147, 0.615]),
    ("GRAYSCALE", [0.298, 0.298, 0.298]),   # Pillow's L: 299/587/114 rounded to 76
])
def test_pure_red_in_each_colour_space(color_space, expected):
    np.testing.assert_allclose(_pixel(color_space), expected, atol=2e-3)


def test_yiq_of_white_and_grey_has_no_chroma():
    np.testing.assert_allclose(_pixel("YIQ", (255, 255, 255)), [1.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(_pixel("YUV", (128, 128, 128)), [128 / 255, 0.0, 0.0], atol=1e-3)


def test_colour_space_then_range():
    # the converted [0, 1] values are mapped into the model's range like plain RGB is
    np.testing.assert_allclose(_pixel("YIQ", value_range=(-1.0, 1.0)), [2 * 0.299 - 1, 2 * 0.5959 - 1, 2 * 0.2115 - 1],
                               atol=2e-3)
    np.testing.assert_allclose(_pixel("HSV", value_range=(0.0, 255.0)), [0.0, 255.0, 255.0], atol=1e-3)


def test_colour_spaces_for_uint8_models():
    assert _pixel("HSV", dtype="uint8").tolist() == [0, 255, 255]
    assert _pixel("YIQ", dtype="uint8").tolist() == [76, 152, 54]
    assert _pixel("GRAYSCALE", dtype="uint8").tolist() == [76, 76, 76]


def test_one_channel_models_get_grey():
    value = _pixel("GRAYSCALE", channels=1)
    np.testing.assert_allclose(value, [76 / 255], atol=1e-6)
    # a 1-channel model is fed grey whatever colour space was asked for
    np.testing.assert_allclose(_pixel("RGB", channels=1), [76 / 255], atol=1e-6)
