"""Session fixtures for the unit tests: tiny models built once (TensorFlow is slow to
import, so each model is built at most once per run), and the built-in model.

The tiny classifiers are "probes": their three scores are 3 x the mean of each input
channel (red, green, blue). A pure red image therefore wins class 0 ("red"), and with
OUTPUT_KIND=probabilities the scores read back exactly what the model was fed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _unit_support import (
    DETECTION_BOXES,
    DETECTION_CLASSES,
    DETECTION_COUNT,
    DETECTION_SCORES,
    LABEL_MAP,
    PROBE_LABELS,
    PROBE_SCALE,
    PROBE_SIZE,
    settings,
)

# --- tiny models --------------------------------------------------------------------------

def _probe_module(shape, dtype: str, axes, output: str, divide: float = 1.0):
    """A tf.Module whose serving function returns PROBE_SCALE x the channel means."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec(shape, getattr(tf, dtype), name="images")])
    def serve(images):
        x = tf.cast(images, tf.float32) / divide
        return {output: PROBE_SCALE * tf.reduce_mean(x, axis=axes)}

    module.serve = serve
    return module


def _save_module(module, path: Path) -> Path:
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _to_tflite(saved_model: Path, target: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    target.write_bytes(converter.convert())
    return target


def _write_labels(folder: Path, labels=PROBE_LABELS, name: str = "labels.txt") -> None:
    (folder / name).write_text("\n".join(labels) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def logits_saved_model(model_root) -> Path:
    """SavedModel (tf.Module): float32 [None,8,8,3] in [0,1] -> {"logits": [None,3]}."""
    folder = model_root / "logits_sm"
    _save_module(_probe_module([None, PROBE_SIZE, PROBE_SIZE, 3], "float32", (1, 2), "logits"), folder)
    _write_labels(folder)
    return folder


@pytest.fixture(scope="session")
def tflite_model(model_root, logits_saved_model) -> Path:
    """The logits SavedModel converted to TFLite, labels.txt beside it."""
    folder = model_root / "tflite"
    folder.mkdir()
    _write_labels(folder)
    return _to_tflite(logits_saved_model, folder / "probe.tflite")


@pytest.fixture(scope="session")
def uint8_tflite_model(model_root) -> Path:
    """TFLite taking uint8 [None,8,8,3] pixels (0..255), same probe outputs."""
    folder = model_root / "tflite_uint8"
    saved = _save_module(_probe_module([None, PROBE_SIZE, PROBE_SIZE, 3], "uint8", (1, 2), "logits", divide=255.0),
                         model_root / "uint8_sm")
    folder.mkdir()
    _write_labels(folder)
    return _to_tflite(saved, folder / "probe_uint8.tflite")


@pytest.fixture(scope="session")
def nchw_saved_model(model_root) -> Path:
    """SavedModel with a channels-first float input [None,3,8,8]."""
    folder = model_root / "nchw_sm"
    _save_module(_probe_module([None, 3, PROBE_SIZE, PROBE_SIZE], "float32", (2, 3), "logits"), folder)
    _write_labels(folder)
    return folder


def _keras_probe():
    import keras

    images = keras.Input((PROBE_SIZE, PROBE_SIZE, 3), name="images")
    x = keras.layers.GlobalAveragePooling2D()(images)
    x = keras.layers.Rescaling(PROBE_SCALE)(x)
    return keras.Model(images, keras.layers.Softmax()(x))


@pytest.fixture(scope="session")
def keras_model(model_root) -> Path:
    """A .keras model ending in softmax (probabilities), labels beside it as <stem>.labels.txt."""
    folder = model_root / "keras"
    folder.mkdir()
    _keras_probe().save(folder / "probs.keras")
    _write_labels(folder, name="probs.labels.txt")
    return folder / "probs.keras"


@pytest.fixture(scope="session")
def keras_export_model(model_root) -> Path:
    """The Keras probe exported with keras' ExportArchive: a SavedModel giving 'probabilities'."""
    import keras
    import tensorflow as tf

    model = _keras_probe()
    folder = model_root / "keras_export"
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default",
                         fn=lambda images: {"probabilities": model(images, training=False)},
                         input_signature=[tf.TensorSpec([None, PROBE_SIZE, PROBE_SIZE, 3], tf.float32, name="images")])
    archive.write_out(str(folder), verbose=False)
    _write_labels(folder)
    return folder


@pytest.fixture(scope="session")
def detection_model(model_root) -> Path:
    """Object Detection API shaped SavedModel: uint8 [1,None,None,3] in, fixed boxes out."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(input_tensor):
        zero = tf.cast(tf.reduce_min(input_tensor), tf.float32) * 0.0  # depends on the input, adds nothing
        return {
            "detection_boxes": tf.constant([DETECTION_BOXES], tf.float32) + zero,
            "detection_classes": tf.constant([DETECTION_CLASSES], tf.float32),
            "detection_scores": tf.constant([DETECTION_SCORES], tf.float32),
            "num_detections": tf.constant([float(DETECTION_COUNT)], tf.float32),
        }

    module.serve = serve
    folder = _save_module(module, model_root / "detector")
    (folder / "label_map.pbtxt").write_text(LABEL_MAP, encoding="utf-8")
    return folder


@pytest.fixture
def copy_model(tmp_path):
    """Copy a model (file with its sidecars, or a directory) somewhere it may be changed."""
    def _copy(source: Path, *, sidecars: bool = True) -> Path:
        target = tmp_path / "copy"
        if source.is_dir():
            shutil.copytree(source, target / source.name)
            return target / source.name
        target.mkdir(exist_ok=True)
        shutil.copy2(source, target / source.name)
        if sidecars:
            for extra in source.parent.iterdir():
                if extra != source and extra.is_file():
                    shutil.copy2(extra, target / extra.name)
        return target / source.name
    return _copy


@pytest.fixture(scope="session")
def default_model():
    """The built-in EfficientNet-Lite0 (already built in the cache), loaded once."""
    from shared.models.loader import load_model

    return load_model(settings())
