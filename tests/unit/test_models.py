"""Tiny models built in the tests, loaded by shared.models.loader and run by shared.engine.Engine."""
from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from _unit_support import (
    DETECTION_COUNT,
    PROBE_LABELS,
    PROBE_SCALE,
    PROBE_SIZE,
    encode,
    inline_ref,
    running_engine,
    settings,
    solid,
    write_json,
)

from shared.errors import BucketeyeError
from shared.models import runtimes
from shared.models.loader import load_model, open_model

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
COLOURS = {"red": RED, "green": GREEN, "blue": BLUE}
# softmax(3 * (1, 0, 0)): a pure colour's score from the probe classifiers
PURE_SCORE = math.exp(PROBE_SCALE) / (math.exp(PROBE_SCALE) + 2)


def png(color, size=(32, 24)) -> bytes:
    return encode(solid(color, size), "PNG")


def classify(model, images: list[bytes], **overrides):
    with running_engine(model, **overrides) as engine:
        return engine.classify([inline_ref(data, f"img{i}") for i, data in enumerate(images)])


def raw_scores(result) -> list[float]:
    """The probe's per-class scores in class order (needs OUTPUT_KIND=probabilities, top_k >= 3)."""
    by_id = {p.label_id: p.score for p in result.predictions}
    return [by_id[i] for i in range(3)]


# --- loading each kind of model -----------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(request):
    """Every tiny classifier, loaded once for this module."""
    names = ("logits_saved_model", "tflite_model", "uint8_tflite_model", "nchw_saved_model", "keras_model",
             "keras_export_model")
    return {name: open_model(request.getfixturevalue(name), settings()) for name in names}


@pytest.mark.parametrize("name, kind, dtype, layout, value_range, scores_output", [
    ("logits_saved_model", "saved_model", "float32", "NHWC", (0.0, 1.0), "logits"),
    ("tflite_model", "tflite", "float32", "NHWC", (0.0, 1.0), "logits"),
    ("uint8_tflite_model", "tflite", "uint8", "NHWC", (0.0, 255.0), "logits"),
    ("nchw_saved_model", "saved_model", "float32", "NCHW", (0.0, 1.0), "logits"),
    ("keras_model", "keras", "float32", "NHWC", (0.0, 1.0), "output_0"),
    ("keras_export_model", "saved_model", "float32", "NHWC", (0.0, 1.0), "probabilities"),
])
def test_spec_is_derived_from_the_signature(loaded, name, kind, dtype, layout, value_range, scores_output):
    model = loaded[name]
    assert model.runtime.kind == kind
    assert (model.spec.height, model.spec.width, model.spec.channels) == (PROBE_SIZE, PROBE_SIZE, 3)
    assert (model.spec.dtype, model.spec.layout, model.spec.value_range) == (dtype, layout, value_range)
    assert (model.spec.color_space, model.spec.resize_mode) == ("RGB", "stretch")
    assert model.task == "classification"
    assert model.scores_output == scores_output
    assert [model.labels.name(i) for i in range(3)] == list(PROBE_LABELS)


def test_model_identity_comes_from_its_bytes(loaded, tflite_model, copy_model):
    model = loaded["tflite_model"]
    assert model.name == "probe"
    assert re.fullmatch(r"[0-9a-f]{12}", model.version)
    assert model.id == f"probe@{model.version}"
    assert model.info == {"name": "probe", "version": model.version, "id": model.id}
    copy = copy_model(tflite_model)
    assert open_model(copy, settings()).version == model.version  # same bytes, same id
    with open(copy, "ab") as fh:
        fh.write(b"\x00")
    assert open_model(copy, settings()).version != model.version
    assert loaded["logits_saved_model"].name == "logits_sm"


def test_describe_lists_inputs_outputs_and_spec(loaded):
    described = loaded["logits_saved_model"].describe()
    assert described["runtime"] == "saved_model" and described["task"] == "classification"
    assert described["inputs"] == [{"name": "images", "shape": [None, PROBE_SIZE, PROBE_SIZE, 3], "dtype": "float32"}]
    assert described["outputs"] == [{"name": "logits", "shape": [None, 3], "dtype": "float32"}]
    assert described["labels"] == 3
    assert described["input_spec"]["layout"] == "NHWC" and described["input_spec"]["range"] == [0.0, 1.0]
    json.dumps(described)  # plain JSON data


# --- the engine over each model -----------------------------------------------------------

@pytest.mark.parametrize("name", ["logits_saved_model", "tflite_model", "uint8_tflite_model", "nchw_saved_model",
                                  "keras_model", "keras_export_model"])
def test_engine_classifies_pure_colours(loaded, name):
    images = [png(COLOURS[label]) for label in ("red", "green", "blue", "blue", "red", "green", "green")]
    results = classify(loaded[name], images)
    assert [r.error for r in results] == [None] * 7
    assert [r.predictions[0].label for r in results] == ["red", "green", "blue", "blue", "red", "green", "green"]
    for result in results:
        # softmax exactly once: logits get one, probabilities (keras) none on top
        assert result.predictions[0].score == pytest.approx(PURE_SCORE, abs=1e-4)
        assert [p.label_id for p in result.predictions][1:] == sorted(p.label_id for p in result.predictions[1:])
        assert result.image.format == "PNG" and (result.image.width, result.image.height) == (32, 24)
        assert set(result.timings_ms) == {"fetch", "decode", "queue", "inference", "total"}


def test_engine_keeps_each_image_with_its_own_result(loaded):
    rng = np.random.default_rng(1)
    colours = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(20)]
    results = classify(loaded["logits_saved_model"], [png(c) for c in colours], output_kind="probabilities",
                       batch_max_size=6)
    for colour, result in zip(colours, results):
        np.testing.assert_allclose(raw_scores(result), [PROBE_SCALE * v / 255 for v in colour], atol=1e-5)


def test_output_kind_override(loaded):
    logits, probs = loaded["tflite_model"], loaded["keras_model"]
    (raw,) = classify(logits, [png(RED)], output_kind="probabilities")
    assert raw_scores(raw) == pytest.approx([PROBE_SCALE, 0.0, 0.0], abs=1e-5)
    (twice,) = classify(probs, [png(RED)], output_kind="logits")
    p = np.array([PURE_SCORE, (1 - PURE_SCORE) / 2, (1 - PURE_SCORE) / 2])
    assert twice.predictions[0].score == pytest.approx(float(np.exp(p[0]) / np.exp(p).sum()), abs=1e-4)
    (upper,) = classify(logits, [png(RED)], output_kind="Probabilities")
    assert upper.predictions[0].score == pytest.approx(PROBE_SCALE, abs=1e-5)


def test_bad_output_kind_is_refused_at_load(tflite_model):
    with pytest.raises(BucketeyeError) as caught:
        open_model(tflite_model, settings(output_kind="logit"))
    assert caught.value.code == "bad_message" and "auto, logits, probabilities" in caught.value.message


def test_top_k_setting_and_argument(loaded):
    with running_engine(loaded["tflite_model"], top_k=2) as engine:
        assert len(engine.classify_one(inline_ref(png(RED))).predictions) == 2
        assert len(engine.classify_one(inline_ref(png(RED)), top_k=1).predictions) == 1
        assert len(engine.classify_one(inline_ref(png(RED)), top_k=50).predictions) == 3


# --- overrides and model.json, read back through the probe -------------------------------

@pytest.mark.parametrize("color_space, expected", [
    ("RGB", [1.0, 0.0, 0.0]),
    ("HSV", [0.0, 1.0, 1.0]),
    ("YIQ", [0.299, 0.5959, 0.2115]),
    ("YUV", [0.299, -0.14714, 0.615]),
    ("GRAYSCALE", [76 / 255] * 3),
])
def test_colour_space_override_reaches_the_model(tflite_model, color_space, expected):
    model = open_model(tflite_model, settings(color_space=color_space.lower()))
    assert model.spec.color_space == color_space
    (result,) = classify(model, [png(RED)], output_kind="probabilities")
    assert raw_scores(result) == pytest.approx([PROBE_SCALE * v for v in expected], abs=1e-4)


def test_input_range_override_reaches_the_model(tflite_model):
    model = open_model(tflite_model, settings(input_range="-1,1"))
    (result,) = classify(model, [png(RED)], output_kind="probabilities")
    assert raw_scores(result) == pytest.approx([PROBE_SCALE, -PROBE_SCALE, -PROBE_SCALE], abs=1e-5)
    assert [p.label for p in result.predictions] == ["red", "green", "blue"]  # the tie: lower id first


def test_input_range_does_not_apply_to_uint8_models(uint8_tflite_model):
    model = open_model(uint8_tflite_model, settings(input_range="-1,1"))
    (result,) = classify(model, [png((255, 0, 51))], output_kind="probabilities")
    assert raw_scores(result) == pytest.approx([PROBE_SCALE, 0.0, PROBE_SCALE * 0.2], abs=1e-5)


@pytest.mark.parametrize("mode, mean", [("stretch", 1.0), ("crop", 1.0), ("pad", 0.5)])
def test_resize_mode_override_reaches_the_model(tflite_model, mode, mean):
    model = open_model(tflite_model, settings(resize_mode=mode))
    (result,) = classify(model, [png(RED, size=(200, 100))], output_kind="probabilities")
    # pad: the 2:1 image fills half the square, the rest is black bars
    assert raw_scores(result)[0] == pytest.approx(PROBE_SCALE * mean, abs=1e-5)


@pytest.mark.parametrize("overrides, fragment", [
    (dict(resize_mode="zoom"), "zoom"), (dict(color_space="CIELAB"), "CIELAB"), (dict(input_range="1,-1"), "LOW"),
])
def test_bad_overrides_fail_the_load_clearly(tflite_model, overrides, fragment):
    with pytest.raises(BucketeyeError) as caught:
        open_model(tflite_model, settings(**overrides))
    assert caught.value.code == "bad_message" and fragment in caught.value.message


def test_model_json_beside_the_model(tflite_model, copy_model):
    model_path = copy_model(tflite_model)
    write_json(model_path.parent / "model.json",
               {"name": "probe-net", "version": "7", "input": {"range": [-1, 1], "resize_mode": "pad"}})
    model = open_model(model_path, settings())
    assert model.info == {"name": "probe-net", "version": "7", "id": "probe-net@7"}
    assert (model.spec.value_range, model.spec.resize_mode) == ((-1.0, 1.0), "pad")
    (result,) = classify(model, [png(RED, size=(100, 100))], output_kind="probabilities")
    assert raw_scores(result) == pytest.approx([PROBE_SCALE, -PROBE_SCALE, -PROBE_SCALE], abs=1e-5)
    # <stem>.json is the model's own file and wins over a shared model.json
    write_json(model_path.with_suffix(".json"), {"version": "8"})
    assert open_model(model_path, settings()).version == "8"
    # and user overrides win over both
    assert open_model(model_path, settings(input_range="0,2")).spec.value_range == (0.0, 2.0)


def test_model_json_inside_a_saved_model_dir(logits_saved_model, copy_model):
    folder = copy_model(logits_saved_model)
    write_json(folder / "model.json", {"input": {"color_space": "GRAYSCALE"}})
    model = open_model(folder, settings())
    assert model.spec.color_space == "GRAYSCALE" and model.name == "logits_sm"


def test_invalid_model_json_is_a_model_error(tflite_model, copy_model):
    model_path = copy_model(tflite_model)
    (model_path.parent / "model.json").write_text("{not json")
    with pytest.raises(BucketeyeError) as caught:
        open_model(model_path, settings())
    assert caught.value.code == "model_error" and "model.json" in caught.value.message


# --- models that cannot be loaded ---------------------------------------------------------

def test_onnx_needs_onnxruntime(tmp_path):
    with pytest.raises(ImportError):  # onnxruntime is deliberately not installed here
        import onnxruntime  # noqa: F401
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07")
    for attempt in (lambda: open_model(path, settings()), lambda: load_model(settings(), str(path))):
        with pytest.raises(BucketeyeError) as caught:
            attempt()
        assert caught.value.code == "model_error" and not caught.value.retryable
        assert "onnxruntime" in caught.value.message


def test_a_directory_holding_an_onnx_model_says_the_same(tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(BucketeyeError, match="onnxruntime"):
        open_model(tmp_path, settings())


@pytest.mark.parametrize("setup, code, fragment", [
    (lambda p: p / "missing.tflite", "not_found", "no model"),
    (lambda p: _file(p / "weights.bin", b"x"), "model_error", "unknown model type"),
    (lambda p: p, "model_error", "holds no SavedModel"),
    (lambda p: _file(p / "broken.tflite", b"not a flatbuffer at all"), "model_error", "broken.tflite"),
    (lambda p: _file(p / "broken.keras", b"not a zip"), "model_error", "broken.keras"),
    (lambda p: _file(p / "sm" / "saved_model.pb", b"garbage"), "model_error", "SavedModel"),
])
def test_unloadable_models_give_clear_errors(tmp_path, setup, code, fragment):
    target = setup(tmp_path)
    with pytest.raises(BucketeyeError) as caught:
        load_model(settings(), str(target))
    assert caught.value.code == code and fragment in caught.value.message
    assert not caught.value.retryable


def _file(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.parent if path.name == "saved_model.pb" else path


def test_a_saved_model_without_the_serving_signature(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"other": module.f})
    with pytest.raises(BucketeyeError) as caught:
        open_model(tmp_path / "sm", settings())
    assert caught.value.code == "model_error" and "'serving_default'" in caught.value.message
    assert "other" in caught.value.message


# --- per-image failures never break the batch ---------------------------------------------

def test_bad_images_become_error_results_in_order(loaded, tmp_path):
    good = png(BLUE)
    missing = str(tmp_path / "nope.png")
    from shared.refs import ImageRef
    refs = [inline_ref(good), inline_ref(b""), inline_ref(b"plain text"), inline_ref(good[:60]),
            ImageRef(trigger="cli", uri=missing, local_path=missing), ImageRef(trigger="http"),
            ImageRef(trigger="storage", bucket="private", object="x.png"), inline_ref(good)]
    with running_engine(loaded["tflite_model"]) as engine:
        results = engine.classify(refs)
    codes = [r.error.code if r.error else r.predictions[0].label for r in results]
    assert codes == ["blue", "empty_object", "unsupported_format", "corrupt_image", "not_found", "bad_message",
                     "forbidden_source", "blue"]
    assert all("total" in r.timings_ms for r in results)


def test_limits_come_from_the_settings(loaded):
    data = png(RED, size=(100, 100))
    (small,) = classify(loaded["tflite_model"], [data], max_image_bytes=len(data) - 1)
    (few,) = classify(loaded["tflite_model"], [data], max_image_pixels=9999)
    assert (small.error.code, few.error.code) == ("too_large", "too_many_pixels")


def test_a_failing_model_gives_model_error_results(loaded):
    class Broken(runtimes.Runtime):
        kind = "broken"
        inputs = outputs = loaded["tflite_model"].runtime.inputs

        def _run(self, batch):
            raise RuntimeError("kernel exploded")

    model = dataclasses.replace(loaded["tflite_model"], runtime=Broken())
    results = classify(model, [png(RED), png(GREEN)])
    for result in results:
        assert result.error.code == "model_error" and result.error.retryable
        assert "kernel exploded" in result.error.message
        assert result.to_record()["status"] == "error"


def test_classify_iter_streams_in_order(loaded):
    colours = ["red", "green", "blue"] * 5
    with running_engine(loaded["tflite_model"]) as engine:
        results = list(engine.classify_iter((inline_ref(png(COLOURS[c])) for c in colours), window=4))
    assert [r.predictions[0].label for r in results] == colours


# --- detection ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detector(detection_model):
    return open_model(detection_model, settings())


def test_detection_model_is_recognised(detector):
    assert detector.task == "detection"
    assert detector.runtime.batchable is False  # [1,None,None,3]: one image per call
    assert (detector.spec.dtype, detector.spec.value_range) == ("uint8", (0.0, 255.0))
    assert detector.labels.names == {1: "cat", 2: "dog", 3: "bird"}


def test_detections_through_the_engine(detector):
    results = classify(detector, [png(RED, size=(640, 480)), encode(solid(GREEN, (50, 80)), "JPEG")])
    for result in results:
        assert result.ok and result.predictions == []
        record = result.to_record()
        assert record["detections"] == [
            {"label": "cat", "label_id": 1, "score": pytest.approx(0.9),
             "box": {"ymin": pytest.approx(0.1), "xmin": pytest.approx(0.2), "ymax": pytest.approx(0.5),
                     "xmax": pytest.approx(0.6)}},
            {"label": "dog", "label_id": 2, "score": pytest.approx(0.5),
             "box": {"ymin": pytest.approx(0.3), "xmin": pytest.approx(0.3), "ymax": pytest.approx(0.4),
                     "xmax": pytest.approx(0.4)}},
        ]
        assert (record["top_label"], record["top_score"]) == ("cat", pytest.approx(0.9))


def test_score_threshold_setting(detector):
    (low,) = classify(detector, [png(RED)], score_threshold=0.1)
    assert [d.label for d in low.detections] == ["cat", "dog", "bird"]  # the 4th (0.95) is past num_detections
    assert low.detections[2].box == pytest.approx((0.0, 0.0, 1.0, 1.0))  # clipped into [0, 1]
    assert len(low.detections) == DETECTION_COUNT
    (high,) = classify(detector, [png(RED)], score_threshold=0.95)
    assert high.ok and high.detections == [] and high.to_record()["top_label"] is None
