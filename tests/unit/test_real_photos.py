"""Real photos through the whole Engine (decode, preprocess, batcher, built-in model, top-k)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _unit_support import REPO, encode, inline_ref, running_engine, subprocess_env
from PIL import Image

CATS = range(281, 286)      # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = (967, 968)         # espresso, cup


def skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def photo_bytes(name: str) -> bytes:
    return (skimage_data() / name).read_bytes()


@pytest.fixture(scope="module")
def engine(default_model):
    with running_engine(default_model) as running:
        yield running


def top(result) -> int:
    assert result.ok, result.error
    return result.predictions[0].label_id


def test_the_built_in_model_is_served_by_tflite_on_cpu(default_model):
    assert default_model.runtime.kind == "tflite"
    assert default_model.name == "efficientnet_lite0" and default_model.version == "1"
    assert (default_model.spec.resize_mode, default_model.spec.crop_fraction) == ("crop", 0.875)
    assert len(default_model.labels) == 1000


def test_chelsea_and_coffee(engine):
    chelsea, coffee = engine.classify([inline_ref(photo_bytes("chelsea.png"), "chelsea"),
                                       inline_ref(photo_bytes("coffee.png"), "coffee")])
    assert top(chelsea) in CATS, chelsea.predictions
    assert top(coffee) in COFFEE, coffee.predictions
    assert chelsea.predictions[0].label in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")
    assert chelsea.predictions[0].score > 0.3
    assert len(chelsea.predictions) == 5 and sum(p.score for p in chelsea.predictions) <= 1.0 + 1e-6
    assert (chelsea.image.format, chelsea.image.width, chelsea.image.height) == ("PNG", 451, 300)


@pytest.mark.parametrize("name", [
    "astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "motorcycle_left.png", "camera.png", "coins.png",
    "horse.png", "logo.png", "retina.jpg", "color.png", "chessboard_GRAY.png", "no_time_for_that_tiny.gif",
    "multipage.tif", "microaneurysms.png",
])
def test_other_photos_are_ok(engine, name):
    result = engine.classify_one(inline_ref(photo_bytes(name), name))
    assert result.ok, result.error
    assert len(result.predictions) == 5
    assert 0 < result.predictions[0].score <= 1
    expected = Image.open(skimage_data() / name).size
    assert (result.image.width, result.image.height) == expected


def _chelsea() -> Image.Image:
    return Image.open(skimage_data() / "chelsea.png").convert("RGB")


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# Pixels stored turned so that applying the EXIF orientation shows the cat upright again.
STORED = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180,
          2: Image.Transpose.FLIP_LEFT_RIGHT}


def test_exif_rotated_photos_classify_like_the_upright_one(engine):
    # Chelsea is a near tie between "tiger cat" and "Egyptian cat" (0.38 vs 0.37), so keep JPEG's own
    # noise down (quality 100, no chroma subsampling): a turned image compresses a little differently.
    jpeg = dict(quality=100, subsampling=0)
    upright = encode(_chelsea(), "JPEG", **jpeg)
    turned = {o: encode(_chelsea().transpose(t), "JPEG", exif=_exif(o), **jpeg) for o, t in STORED.items()}
    results = engine.classify([inline_ref(upright)] + [inline_ref(data) for data in turned.values()])
    base = results[0]
    assert top(base) in CATS
    for orientation, result in zip(turned, results[1:]):
        assert top(result) == top(base), (orientation, result.predictions[:2])
        assert (result.image.width, result.image.height) == (451, 300)
        assert result.predictions[0].score == pytest.approx(base.predictions[0].score, abs=0.03)


def test_the_model_sees_the_turned_pixels_upright(default_model):
    """Stronger than top-1: the preprocessed arrays of the upright and EXIF-6 JPEGs nearly match."""
    from shared.imaging import decode_image
    from shared.preprocess import preprocess

    def array(data):
        decoded = decode_image(data, max_bytes=10 ** 8, max_pixels=10 ** 8)
        return preprocess(decoded.image, default_model.spec).astype(np.float32)

    upright = array(encode(_chelsea(), "PNG"))
    turned = array(encode(_chelsea().transpose(Image.Transpose.ROTATE_90), "PNG", exif=_exif(6)))
    ignored = array(encode(_chelsea().transpose(Image.Transpose.ROTATE_90), "PNG"))
    assert np.abs(upright - turned).mean() < 1.0
    assert np.abs(upright - ignored).mean() > 20.0  # the check would notice a missed rotation


def test_a_phone_sized_jpeg_is_drafted_and_still_a_cat(engine):
    big = encode(_chelsea().resize((4032, 2681), Image.Resampling.BICUBIC), "JPEG", quality=90)
    result = engine.classify_one(inline_ref(big))
    assert top(result) in CATS
    assert (result.image.width, result.image.height) == (4032, 2681)  # reported at its real size


def test_the_cli_with_the_built_in_model(tmp_path):
    (tmp_path / "cat.png").write_bytes(photo_bytes("chelsea.png"))
    (tmp_path / "coffee.png").write_bytes(photo_bytes("coffee.png"))
    out = subprocess.run([sys.executable, "main.py", "classify", str(tmp_path), "--json", "--top-k", "3"],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cat, coffee = sorted((json.loads(line) for line in out.stdout.splitlines()), key=lambda r: r["source"]["object"])
    assert cat["predictions"][0]["label_id"] in CATS and len(cat["predictions"]) == 3
    assert coffee["predictions"][0]["label_id"] in COFFEE
    assert cat["model"] == {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"}
