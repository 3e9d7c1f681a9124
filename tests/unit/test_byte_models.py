"""Byte-input models: a SavedModel whose serving input is a string tensor gets the original
bytes of each validated image (with `key` when its signature has one), and its outputs are
read as for any model. Both test models are built by tests/byte_models.py."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _unit_support import REPO, inline_ref, running_engine, settings, solid, subprocess_env
from _unit_support import encode as encode_image

from tests.byte_models import PHOTOS, built, encode, paint_boxes, photo

BOXES = {1: (20, 30, 120, 90), 2: (200, 150, 300, 290)}  # left, top, right, bottom on chelsea (451 x 300)


@pytest.fixture(scope="module")
def classifier():
    from shared.models.loader import load_model
    return load_model(settings(), str(built("classifier")))


@pytest.fixture(scope="module")
def detector():
    from shared.models.loader import load_model
    return load_model(settings(), str(built("detector")))


@pytest.fixture(scope="module")
def length_model(tmp_path_factory):
    """encoded_image -> probabilities [len(bytes) / 1e7, 0]: shows exactly what bytes the model got."""
    import tensorflow as tf

    from shared.models.loader import load_model

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        length = tf.cast(tf.strings.length(image_bytes), tf.float32) / 1e7
        return {"probabilities": tf.stack([length, tf.zeros_like(length)], axis=1)}

    module.serve = serve
    folder = tmp_path_factory.mktemp("length") / "model"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    return load_model(settings(output_kind="probabilities"), str(folder))


@pytest.fixture(scope="module")
def png_only_model(tmp_path_factory):
    """A model that reads PNG only: it refuses anything else inside its graph, as a decoder op does."""
    import tensorflow as tf

    from shared.models.loader import load_model

    module = tf.Module()

    def mean_red(encoded):
        png = tf.equal(tf.strings.substr(encoded, 0, 4), b"\x89PNG")
        with tf.control_dependencies([tf.debugging.Assert(png, ["not a PNG"])]):
            return tf.reduce_mean(tf.cast(tf.io.decode_png(encoded, channels=3)[:, :, 0], tf.float32)) / 255.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded_image")])
    def serve(encoded_image):
        red = tf.map_fn(mean_red, encoded_image, fn_output_signature=tf.float32)
        return {"probabilities": tf.stack([red, 1.0 - red], axis=1)}

    module.serve = serve
    folder = tmp_path_factory.mktemp("png_only") / "model"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    return load_model(settings(), str(folder))


def _close(box: dict, truth, tolerance: float) -> bool:
    return all(abs(box[name] - value) <= tolerance for name, value in zip(("ymin", "xmin", "ymax", "xmax"), truth))


def test_the_wrapped_classifier_agrees_with_the_built_in_model_on_real_photos(classifier, default_model):
    refs = [inline_ref(encode(photo(name)), name) for name in PHOTOS]
    with running_engine(classifier) as engine:
        wrapped = engine.classify(refs)
    with running_engine(default_model) as engine:
        builtin = engine.classify(refs)
    for name, mine, theirs in zip(PHOTOS, wrapped, builtin):
        assert mine.ok and theirs.ok, (name, mine.error, theirs.error)
        assert mine.predictions[0].label == theirs.predictions[0].label, name
        assert mine.image.format == "PNG"
    assert [r.predictions[0].label for r in wrapped][:3] == ["football helmet", "tiger cat", "espresso"]


def test_detector_boxes_match_the_painted_rectangles_with_keys_passed_through(detector):
    picture, truth = paint_boxes(photo("chelsea.png"), BOXES)
    refs = [inline_ref(encode(picture, "PNG"), "exact"), inline_ref(encode(picture, "JPEG", quality=92), "lossy"),
            inline_ref(encode(photo("coffee.png"), "PNG"), "none")]
    with running_engine(detector, score_threshold=0.5) as engine:
        exact, lossy, none = engine.classify(refs)
    for result, tolerance in ((exact, 1e-6), (lossy, 0.01)):
        assert result.ok, result.error
        record = result.to_record()
        assert record["source"]["key"] == result.ref.key
        fmt = "PNG" if result.ref.key == "exact" else "JPEG"
        assert record["image"] == {"format": fmt, "width": 451, "height": 300}
        found = {d["label_id"]: d for d in record["detections"]}
        assert set(found) == {1, 2}
        assert {d["label"] for d in found.values()} == {"magenta_box", "cyan_box"}
        for class_id, box in truth.items():
            assert _close(found[class_id]["box"], box, tolerance), (class_id, found[class_id], box)
            assert found[class_id]["score"] > 0.9
        assert record["top_label"] in ("magenta_box", "cyan_box")
    assert none.ok and none.detections == []


def test_the_model_gets_the_original_bytes_unchanged(length_model):
    turned = encode_image(solid((200, 10, 10), size=(64, 32)), "JPEG", exif=_orientation_exif(6))
    files = [turned, encode_image(solid((1, 2, 3), size=(300, 200)), "PNG"),
             encode_image(solid((9, 9, 9), size=(40, 40)), "GIF")]
    with running_engine(length_model, output_kind="probabilities") as engine:
        results = engine.classify([inline_ref(data) for data in files])
    for data, result in zip(files, results):
        assert result.ok, result.error
        assert round(result.predictions[0].score * 1e7) == len(data)  # the model saw these very bytes
        assert result.to_record()["source"]["size_bytes"] == len(data)
    assert (results[0].image.width, results[0].image.height) == (32, 64)  # recorded as shown (EXIF turn)
    assert [r.image.format for r in results] == ["JPEG", "PNG", "GIF"]


def _orientation_exif(value: int) -> bytes:
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_bad_images_are_refused_before_the_model_as_for_any_model(detector):
    jpeg = encode(photo("coffee.png"), "JPEG")
    cases = {
        "truncated": (jpeg[: len(jpeg) // 2], "corrupt_image"),
        "empty": (b"", "empty_object"),
        "text": (b"not an image at all", "unsupported_format"),
        "tiff": (encode_image(solid((5, 5, 5)), "TIFF"), "unsupported_format"),  # ours, not the model's decoder
        "big": (jpeg, "too_large"),
    }
    with running_engine(detector, max_image_bytes=len(jpeg) - 1) as engine:
        results = engine.classify([inline_ref(data, name) for name, (data, _) in cases.items()])
    for (name, (_, code)), result in zip(cases.items(), results):
        assert not result.ok and result.error.code == code, (name, result.error)
        assert result.error.retryable is False
    assert "decodes JPEG, PNG, GIF, BMP itself" in results[3].error.message


def test_a_key_the_model_does_not_echo_is_a_model_error(detector, monkeypatch):
    from shared.errors import BucketeyeError
    from shared.models.byte_input import model_input

    runtime = detector.runtime
    batch = np.stack([model_input(encode(photo("coffee.png")), "a"), model_input(encode(photo("coffee.png")), "b")])
    assert [bytes(k) for k in runtime.run(batch)["key"]] == [b"a", b"b"]
    real_call = runtime._model.call
    monkeypatch.setattr(runtime._model, "call", lambda feed: {**real_call(feed), "key": np.array([b"b", b"a"], object)})
    with pytest.raises(BucketeyeError) as caught:
        runtime.run(batch)
    assert caught.value.code == "model_error" and "echo" in caught.value.message


def test_describe_shows_the_byte_input_signature(classifier, detector):
    described = detector.describe()
    assert described["task"] == "detection" and described["runtime"] == "saved_model"
    assert described["input_spec"] == {"encoding": "encoded", "dtype": "string"}
    assert described["byte_input"]["image_input"] == "encoded_image" and described["byte_input"]["key_input"] == "key"
    assert {o["name"]: o["shape"] for o in described["outputs"]}["detection_boxes"] == [None, 100, 4]
    assert described["labels"] == 2
    assert classifier.describe()["byte_input"]["key_input"] is None
    assert classifier.scores_output == "probabilities"


def test_inspect_prints_the_byte_input_signature():
    out = subprocess.run([sys.executable, "main.py", "inspect", str(built("detector"))], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    described = json.loads(out.stdout)
    assert described["byte_input"] == {"encoding": "encoded_bytes", "image_input": "encoded_image",
                                       "key_input": "key", "model_decodes": ["JPEG", "PNG", "GIF", "BMP"]}
    assert [i["dtype"] for i in described["inputs"]] == ["string", "string"]


@pytest.mark.parametrize("extra", ["pixels", "two_images"])
def test_signatures_that_cannot_be_served_are_refused_clearly(tmp_path, extra):
    import tensorflow as tf

    from shared.errors import BucketeyeError
    from shared.models.loader import load_model

    module = tf.Module()
    if extra == "pixels":
        spec = [tf.TensorSpec([None], tf.string, name="encoded_image"), tf.TensorSpec([None, 4], tf.float32, name="px")]
    else:
        spec = [tf.TensorSpec([None], tf.string, name="front"), tf.TensorSpec([None], tf.string, name="back")]

    @tf.function(input_signature=spec)
    def serve(a, b):
        return {"scores": tf.zeros([tf.shape(a)[0], 2])}

    module.serve = serve
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": serve})
    with pytest.raises(BucketeyeError) as caught:
        load_model(settings(), str(tmp_path / "m"))
    assert caught.value.code == "model_error"
    assert ("px" in caught.value.message) if extra == "pixels" else ("front" in caught.value.message)


def test_an_image_the_models_decoder_refuses_fails_alone_and_for_good(png_only_model):
    from shared.errors import BucketeyeError
    from shared.models.byte_input import ROW_ERROR, model_input

    red_png = encode_image(solid((255, 0, 0)), "PNG")
    jpeg = encode_image(solid((255, 0, 0)), "JPEG")
    outputs = png_only_model.runtime.run(np.stack([model_input(red_png, ""), model_input(jpeg, ""),
                                                   model_input(red_png, "")]))
    assert outputs["probabilities"][[0, 2], 0].tolist() == [1.0, 1.0]
    assert outputs[ROW_ERROR][0] == "" and "could not decode" in outputs[ROW_ERROR][1]
    with pytest.raises(BucketeyeError) as alone:
        png_only_model.runtime.run(np.stack([model_input(jpeg, "")]))
    assert alone.value.code == "unsupported_format" and not alone.value.retryable

    with running_engine(png_only_model, output_kind="probabilities", batch_max_delay_ms=50) as engine:
        png_result, jpeg_result = engine.classify([inline_ref(red_png), inline_ref(jpeg)])
    assert png_result.ok and png_result.predictions[0].label_id == 0
    assert jpeg_result.error.code == "unsupported_format" and jpeg_result.error.retryable is False


def test_a_signature_taking_one_string_without_a_batch_axis(tmp_path):
    import tensorflow as tf

    from shared.models.loader import load_model

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes"),
                                  tf.TensorSpec([], tf.string, name="key")])
    def serve(image_bytes, key):
        length = tf.cast(tf.strings.length(image_bytes), tf.float32) / 1e7
        return {"scores": tf.stack([length, 0.0]), "key": key}

    module.serve = serve
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": serve})
    model = load_model(settings(), str(tmp_path / "m"))
    assert model.runtime.batchable is False and model.scores_output == "scores"
    files = [encode_image(solid((1, 2, 3)), "PNG"), encode_image(solid((1, 2, 3), size=(64, 64)), "JPEG")]
    with running_engine(model, output_kind="probabilities") as engine:
        results = engine.classify([inline_ref(data, f"k{i}") for i, data in enumerate(files)])
    assert [round(r.predictions[0].score * 1e7) for r in results] == [len(data) for data in files]
