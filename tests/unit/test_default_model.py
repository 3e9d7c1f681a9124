"""The built-in EfficientNet-Lite0: legacy-checkpoint reader, architecture, and real photos.

The model is built once into the normal cache dir (MODEL_CACHE_DIR), so later runs reuse it.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.config import Settings
from shared.models import default_model
from shared.models.torch_legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, UnsafePickleError, load_state_dict

REPO = Path(__file__).resolve().parents[2]
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


# --- legacy checkpoint reader -------------------------------------------------------------

def _legacy_file(path: Path, main_obj, persistent_id=lambda obj: None, storages=()) -> None:
    """Write main_obj the way torch.save(..., _use_new_zipfile_serialization=False) does."""
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickler = pickle.Pickler(f, protocol=2)
        pickler.persistent_id = persistent_id
        pickler.dump(main_obj)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, data in storages:
            f.write(struct.pack("<q", data.size) + data.tobytes())


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # would create the marker file if the reader executed it
        return (open, (str(self.marker), "w"))


def test_legacy_reader_refuses_unknown_globals(tmp_path):
    marker = tmp_path / "pwned"
    _legacy_file(tmp_path / "evil.pth", collections.OrderedDict(w=_Evil(marker)))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global io\.open"):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_legacy_reader_honours_offsets_strides_and_dtypes(tmp_path, monkeypatch):
    # Stand-ins for torch's globals, so a genuine legacy file can be written without torch.
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage"):
        setattr(fake_torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)

    class Storage:
        def __init__(self, key, cls, data):
            self.key, self.cls, self.data = key, cls, data

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    floats = Storage("1", fake_torch.FloatStorage, np.arange(20, dtype="<f4"))
    longs = Storage("2", fake_torch.LongStorage, np.array([7], dtype="<i8"))
    state = collections.OrderedDict(
        transposed=Tensor(floats, 2, (3, 4), (1, 3)),  # a (4,3) block starting at element 2, transposed
        counter=Tensor(longs, 0, (), ()),
    )
    def pid(o):
        return ("storage", o.cls, o.key, "cpu", o.data.size, None) if isinstance(o, Storage) else None
    _legacy_file(tmp_path / "ok.pth", state, pid, [(s.key, s.data) for s in (floats, longs)])

    loaded = load_state_dict(tmp_path / "ok.pth")
    np.testing.assert_array_equal(loaded["transposed"], np.arange(2, 14, dtype=np.float32).reshape(4, 3).T)
    assert loaded["transposed"].dtype == np.float32 and loaded["transposed"].flags.c_contiguous
    assert loaded["counter"].dtype == np.int64 and loaded["counter"] == 7


# --- architecture and weight mapping ------------------------------------------------------

@pytest.fixture(scope="session")
def state_dict():
    from shared.models.efficientnet_lite import torch_weights_path

    return load_state_dict(torch_weights_path())


def test_parameter_count():
    from shared.models.efficientnet_lite import build_efficientnet_lite0

    model = build_efficientnet_lite0()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 4_652_008  # ~4.65M; plus BN running statistics below
    assert model.count_params() == 4_694_024


def test_weight_mapping_fails_loudly(state_dict):
    from shared.models.efficientnet_lite import build_efficientnet_lite0, load_torch_weights

    model = build_efficientnet_lite0()
    with pytest.raises(ValueError, match="not used"):
        load_torch_weights(model, {**state_dict, "_extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(KeyError, match="_fc.bias"):
        load_torch_weights(model, {k: v for k, v in state_dict.items() if k != "_fc.bias"})
    with pytest.raises(ValueError, match="_fc|fc"):
        load_torch_weights(model, {**state_dict, "_fc.bias": np.zeros(999, np.float32)})


# --- the built model directory ------------------------------------------------------------

@pytest.fixture(scope="session")
def model_dir() -> Path:
    return default_model.ensure_default_model(Settings.from_env().model_cache_dir)


def _photo(name: str) -> np.ndarray:
    """skimage's bundled photo: centre crop 0.875 of the short side, bicubic to 224, uint8 RGB."""
    import skimage

    image = Image.open(Path(skimage.__file__).parent / "data" / f"{name}.png").convert("RGB")
    w, h = image.size
    side = 0.875 * min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return np.asarray(image.resize((224, 224), Image.BICUBIC, box=box), dtype=np.uint8)


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    return np.stack([_photo("chelsea"), _photo("coffee")])


@pytest.fixture(scope="session")
def saved_model_probs(model_dir, photos) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir / "saved_model")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    return serve(images=tf.constant(photos))["probabilities"].numpy()


@pytest.fixture(scope="session")
def tflite_probs(model_dir, photos) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_dir / "model.tflite"), num_threads=2)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 224, 224, 3]
    interpreter.resize_tensor_input(inp["index"], [len(photos), 224, 224, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], photos)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def test_model_dir_contents(model_dir):
    assert json.loads((model_dir / "model.json").read_text()) == default_model.METADATA
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert (labels[0], labels[281], labels[967], labels[968], labels[999]) == (
        "tench", "tabby", "espresso", "cup", "toilet tissue")


def test_reusing_a_built_model_does_not_import_tensorflow(model_dir):
    code = (
        "import sys; from shared.models.default_model import ensure_default_model as e; "
        f"print(e({str(model_dir.parent)!r})); assert 'tensorflow' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(model_dir)


@pytest.mark.parametrize("runtime", ["saved_model_probs", "tflite_probs"])
def test_real_photos_are_recognised(runtime, request):
    probs = request.getfixturevalue(runtime)
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    chelsea, coffee = probs.argmax(axis=1)
    assert chelsea in CAT_CLASSES
    assert coffee in (ESPRESSO, CUP)


def test_tflite_matches_saved_model(saved_model_probs, tflite_probs):
    assert np.abs(saved_model_probs - tflite_probs).max() < 1e-3
