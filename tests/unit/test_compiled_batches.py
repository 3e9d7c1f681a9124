"""Compiled model calls: one program per allowed batch size, all built before the engine
is ready, batches padded up to them, and no compile afterwards whatever sizes arrive."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _unit_support import PROBE_SIZE, encode, inline_ref, running_engine, settings, solid

from shared.batching import Batcher, pad_batch
from shared.config import SettingError, Settings
from shared.errors import BucketeyeError
from shared.models import accelerator
from shared.models.loader import NULL_MODEL_URI, load_model, open_model

SIZES = (1, 4, 8)
ROOT = Path(__file__).resolve().parents[2]


def test_a_batch_is_padded_up_to_the_next_allowed_size():
    batch = np.arange(3 * 2, dtype=np.float32).reshape(3, 2) + 1
    padded = pad_batch(batch, [1, 4, 8])
    assert padded.shape == (4, 2)
    assert np.array_equal(padded[:3], batch) and not padded[3:].any()
    assert pad_batch(batch[:1], [1, 4, 8]) is not None and len(pad_batch(batch[:1], [1, 4, 8])) == 1
    assert len(pad_batch(np.zeros((4, 2)), [1, 4, 8])) == 4
    assert len(pad_batch(np.zeros((5, 2)), [1, 4, 8])) == 8
    assert len(pad_batch(np.zeros((5, 2)), [])) == 5  # no allowed sizes: any size runs as it is


@pytest.mark.parametrize("sizes, max_size, expected", [
    (("1", "8", "32", "64"), 64, (1, 8, 32, 64)),
    (("1", "8", "32", "64"), 8, (1, 8)),
    (("1", "8", "32", "64"), 20, (1, 8, 20)),  # the largest batch must be runnable too
    (("64", "8"), 64, (8, 64)),
    ((), 16, (16,)),
])
def test_allowed_batch_sizes_come_from_the_settings(sizes, max_size, expected):
    assert settings(batch_sizes=sizes, batch_max_size=max_size).allowed_batch_sizes == expected


@pytest.mark.parametrize("sizes", [("1", "x"), ("0", "8"), ("-4",)])
def test_bad_batch_sizes_are_refused_clearly(sizes):
    with pytest.raises(SettingError, match="invalid setting BATCH_SIZES=") as caught:
        Settings.from_env({"BATCH_SIZES": ",".join(sizes)})
    assert "whole numbers of at least 1" in str(caught.value)


def test_the_batcher_gives_the_model_only_allowed_sizes():
    seen: list[int] = []

    def model(batch):
        seen.append(len(batch))
        return {"double": batch * 2}
    batcher = Batcher(model, max_size=1, max_delay_s=0.005, queue_size=256, allowed_sizes=SIZES)
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = list(pool.map(lambda v: batcher.submit(np.array([v], np.float32)), range(100)))
        rows = [future.result(timeout=10)[0]["double"][0] for future in futures]
    finally:
        batcher.close()
    assert rows == [2.0 * v for v in range(100)]  # each image got its own row back, padding never
    assert set(seen) <= set(SIZES) and max(seen) <= 8
    assert sum(batcher.batch_sizes.values()) == len(seen) and set(batcher.batch_sizes) == set(seen)


def _photos(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(solid(tuple(int(c) for c in rng.integers(0, 256, 3)), (PROBE_SIZE + i, PROBE_SIZE)), "PNG")
            for i in range(count)]


@pytest.mark.parametrize("fixture, kind", [("keras_model", "keras"), ("logits_saved_model", "saved_model")])
def test_no_compile_after_ready_under_mixed_batch_sizes(request, fixture, kind):
    model = open_model(request.getfixturevalue(fixture), settings())
    runtime = model.runtime
    assert runtime.kind == kind and runtime.compiles == 0
    with running_engine(model, batch_sizes=tuple(map(str, SIZES)), batch_max_size=8, batch_max_delay_ms=50) as engine:
        assert engine.batch_sizes == SIZES
        assert runtime.compiles == len(SIZES)  # one program per size, built before the engine exists
        ready = runtime.compiles
        image = np.zeros((PROBE_SIZE, PROBE_SIZE, 3), np.float32)
        # Groups of every size up to 8, each queued at once so the batcher takes it whole...
        for count in (2, 3, 5, 6, 7, 1, 4, 8):
            futures = [engine.batcher.submit(image) for _ in range(count)]
            assert all(future.result(timeout=30) for future in futures)
        # ...then requests of 1 to 7 images from 8 threads at once.
        photos = _photos(40)
        requests = [photos[i:i + n] for i, n in zip(range(0, 40, 3), [1, 2, 3, 5, 7, 1, 4, 6, 2, 3, 7, 5, 1, 2])]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: engine.classify([inline_ref(d) for d in r]), requests))
        assert all(result.ok for answer in answers for result in answer)
        assert {2, 3, 5, 6, 7} <= set(engine.batcher.images_per_batch)  # sizes that had to be padded
        assert set(engine.batcher.batch_sizes) <= set(SIZES)
        assert runtime.compiles == ready, "a request waited on a compile after ready"


@pytest.mark.parametrize("fixture", ["keras_model", "logits_saved_model"])
def test_padded_outputs_equal_unpadded_ones(request, fixture):
    runtime = open_model(request.getfixturevalue(fixture), settings()).runtime
    shape = (PROBE_SIZE, PROBE_SIZE, 3)
    batch = np.random.default_rng(1).random((5, *shape), dtype=np.float32)
    padded = runtime.run(pad_batch(batch, SIZES))
    alone = runtime.run(batch)
    one_by_one = [runtime.run(batch[i:i + 1]) for i in range(len(batch))]
    for name, values in alone.items():
        assert len(padded[name]) == 8
        np.testing.assert_allclose(padded[name][:5], values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.concatenate([o[name] for o in one_by_one]), values, rtol=1e-5, atol=1e-6)


def test_a_model_that_fails_its_warm_up_fails_to_load(keras_model):
    from shared.engine import Engine
    model = open_model(keras_model, settings())
    model.runtime._call = lambda batch: 1 / 0  # what a kernel that cannot run does
    with pytest.raises(BucketeyeError, match="failed its warm-up batch of 1: ZeroDivisionError") as caught:
        Engine(settings(), model)
    assert caught.value.code == "model_error"


def test_the_null_model_answers_without_computing():
    model = load_model(settings(model_uri=NULL_MODEL_URI))
    assert model.runtime.kind == "null" and model.id == "null@0" and len(model.labels) == 1000
    assert (model.spec.width, model.spec.height, model.spec.resize_mode) == (224, 224, "crop")
    with running_engine(model) as engine:
        results = engine.classify([inline_ref(data) for data in _photos(3)])
    assert [r.ok for r in results] == [True] * 3
    assert len({r.predictions[0].label for r in results}) == 1  # the same answer whatever the image


# --- ACCELERATOR ---------------------------------------------------------------------------

def test_gpu_requested_without_a_gpu_is_an_error(monkeypatch):
    with pytest.raises(BucketeyeError, match="no GPU was found") as caught:
        accelerator.choose("gpu", None)
    assert caught.value.code == "model_error" and not caught.value.retryable


@pytest.mark.parametrize("setting, found, expected", [
    ("auto", None, False), ("auto", "NVIDIA L4", True), ("GPU", "NVIDIA L4", True)])
def test_the_accelerator_choice(setting, found, expected):
    assert accelerator.choose(setting, found) is expected


def test_cpu_hides_the_gpu_from_the_frameworks(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert accelerator.choose("cpu", "NVIDIA L4") is False
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and os.environ["JAX_PLATFORMS"] == "cpu"


def test_an_unknown_accelerator_is_refused():
    with pytest.raises(BucketeyeError, match="ACCELERATOR='tpu' must be one of auto, gpu, cpu"):
        accelerator.choose("tpu", None)


def test_gpu_requested_fails_a_model_that_runs_on_the_cpu(tflite_model):
    with pytest.raises(BucketeyeError, match="ACCELERATOR=gpu") as caught:
        open_model(tflite_model, settings(accelerator="gpu"))
    assert caught.value.code == "model_error"
    with pytest.raises(BucketeyeError, match="runs on tensorflow CPU"):
        accelerator.require_gpu_runtime("gpu", "tensorflow CPU")
    accelerator.require_gpu_runtime("gpu", "jax cuda:0")  # a GPU device passes
    accelerator.require_gpu_runtime("auto", "cpu")  # auto serves wherever the model runs


@pytest.mark.skipif(accelerator.gpu_name() is not None, reason="this machine has a GPU")
def test_no_gpu_is_found_here():
    assert accelerator.gpu_name() is None


# --- Keras 3 on JAX (the GPU host's backend), in its own process: the backend is chosen at import

JAX_CHECK = """
import json, sys
import numpy as np
from pathlib import Path
from shared.batching import pad_batch
from shared.models.runtimes import KerasRuntime
runtime = KerasRuntime(Path(sys.argv[1]))
runtime.warm_up((1, 4, 8))
ready = runtime.compiles
batch = np.random.default_rng(2).random((5, *runtime.input.shape[1:]), dtype=np.float32)
padded = runtime.run(pad_batch(batch, (1, 4, 8)))["output_0"][:5]
for size in (1, 4, 8, 4, 1):
    runtime.run(np.zeros((size, *runtime.input.shape[1:]), np.float32))
after = runtime.compiles
alone = runtime.run(batch)["output_0"]  # 5: a shape never warmed, so it compiles once more
print(json.dumps({"backend": runtime.backend, "device": runtime.device, "ready": ready, "after": after,
                  "unwarmed": runtime.compiles, "diff": float(np.abs(padded - alone).max())}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (requirements-dev.txt pins it)")
def test_keras_on_jax_compiles_once_per_size(keras_model):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", JAX_CHECK, str(keras_model)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax" and out["device"].startswith("jax cpu")
    assert out["ready"] == 3 and out["after"] == 3  # warmed sizes never compile again
    assert out["unwarmed"] == 4  # the counter sees a real compile: it is not stuck at its warm-up value
    assert out["diff"] < 1e-5
