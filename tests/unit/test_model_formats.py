"""Model file formats come from one registry: the loader opens what a registered format names."""
from __future__ import annotations

from pathlib import Path

import pytest
from _unit_support import settings

from shared.errors import BucketeyeError
from shared.models import loader, runtimes


@pytest.mark.parametrize("name, expected", [("m.tflite", "tflite"), ("m.KERAS", "keras"), ("m.h5", "keras"),
                                            ("m.onnx", "onnx"), ("m.pb", None), ("model", None)])
def test_format_by_suffix(name, expected):
    found = runtimes.format_of(Path(name))
    assert (found.name if found else None) == expected


def test_folder_scan_follows_the_registry():
    assert loader.MODEL_FILE_SUFFIXES == (".tflite", ".keras", ".h5", ".onnx")


def test_a_registered_format_is_opened_by_the_loader(tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes, "FORMATS", dict(runtimes.FORMATS))
    opened = []

    def open_fake(path, threads):
        opened.append((path, threads))
        return runtimes.NullRuntime()

    runtimes.register(runtimes.ModelFormat("fake", (".fake",), open_fake))
    model = tmp_path / "m.fake"
    model.write_bytes(b"weights")
    runtime, path = loader._open_framework(model, settings())
    assert runtime.kind == "null" and path == model and opened[0][0] == model


def test_an_unknown_file_is_refused(tmp_path):
    model = tmp_path / "m.pb"
    model.write_bytes(b"x")
    with pytest.raises(BucketeyeError) as raised:
        loader._open_framework(model, settings())
    assert raised.value.code == "model_error" and "unknown model type" in raised.value.message
