"""Load a model from a local path or gs:// URI into a ready LoadedModel.

A LoadedModel knows its runtime, its input spec (signature, then model.json beside
it, then user overrides), its labels, and its identity (name, version, id) — the id
goes into every result_id, so results of different models never collide.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.errors import BucketeyeError
from shared.models import accelerator, byte_input, runtimes
from shared.models import spec as specs
from shared.models.labels import Labels, find_labels
from shared.postprocess import OUTPUT_KINDS, is_detection

MODEL_FILE_SUFFIXES = runtimes.file_suffixes()
_SIDECARS = ("labels.txt", "model.json")


@dataclass
class LoadedModel:
    runtime: runtimes.ModelRuntime
    spec: specs.InputSpec
    labels: Labels
    name: str
    version: str
    path: Path
    task: str  # "classification" | "detection"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "id": self.id}

    @property
    def scores_output(self) -> str:
        """The classification output: a [N, classes] tensor, preferring telling names."""
        names = [o.name for o in self.runtime.outputs if o.dtype != byte_input.STRING]  # not an echoed key
        for preferred in ("probabilities", "probs", "scores", "logits", "predictions", "output_0"):
            if preferred in names:
                return preferred
        return names[0]

    def describe(self) -> dict:
        rt = self.runtime
        return {
            "model": self.info, "path": str(self.path), "runtime": rt.kind, "task": self.task,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in rt.inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in rt.outputs],
            "labels": len(self.labels), "input_spec": self.spec.describe(),
        } | ({"byte_input": rt.describe()} if isinstance(rt, byte_input.ByteInputRuntime) else {})


NULL_MODEL_URI = "null:"  # the benchmark's null model (runtimes.NullRuntime)


def load_model(settings: Settings, uri: str | None = None) -> LoadedModel:
    uri = settings.model_uri if uri is None else uri
    if uri == NULL_MODEL_URI:
        return null_model(settings)
    if not uri:
        from shared.models.default_model import ensure_default_model
        path = ensure_default_model(settings.model_cache_dir)
    elif uri.startswith("gs://"):
        path = download_model(uri, Path(settings.model_cache_dir) / "downloads")
    else:
        path = Path(uri).expanduser()
        if not path.exists():
            raise BucketeyeError("not_found", f"no model at {uri}", retryable=False)
    return open_model(path, settings)


def open_model(path: Path, settings: Settings) -> LoadedModel:
    runtime, model_path = _open_runtime(path, settings)
    accelerator.require_gpu_runtime(settings.accelerator, runtime.device)
    meta = _read_metadata(model_path)
    if isinstance(runtime, byte_input.ByteInputRuntime):
        spec = specs.encoded_spec()  # resize, colour and range settings do not apply: the model decodes
    else:
        spec = specs.spec_from_shape(runtime.input.shape, runtime.input.dtype)
        spec = specs.apply_metadata(spec, meta)
        spec = specs.apply_overrides(spec, resize_mode=settings.resize_mode, color_space=settings.color_space,
                                     input_range=settings.input_range)
    if (settings.output_kind or "auto").lower() not in OUTPUT_KINDS:  # a typo must not silently skip the softmax
        raise BucketeyeError("bad_message",
                             f"output kind {settings.output_kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    task = "detection" if is_detection([o.name for o in runtime.outputs]) else "classification"
    name = str(meta.get("name") or (model_path.stem if model_path.is_file() else model_path.name))
    version = str(meta.get("version") or _digest(model_path))
    return LoadedModel(runtime=runtime, spec=spec, labels=find_labels(model_path), name=name,
                       version=version, path=model_path, task=task)


def null_model(settings: Settings) -> LoadedModel:
    """The null model: the built-in model's input and labels, no computation."""
    from shared.models.default_model import LABELS_SOURCE, METADATA
    runtime = runtimes.NullRuntime()
    accelerator.require_gpu_runtime(settings.accelerator, runtime.device)
    spec = specs.apply_metadata(specs.spec_from_shape(runtime.input.shape, runtime.input.dtype), METADATA)
    labels = Labels.from_text(LABELS_SOURCE.read_text(encoding="utf-8"))
    return LoadedModel(runtime=runtime, spec=spec, labels=labels, name="null", version="0",
                       path=Path(NULL_MODEL_URI), task="classification")


def _open_runtime(path: Path, settings: Settings) -> tuple[runtimes.ModelRuntime, Path]:
    runtime, model_path = _open_framework(path, settings)
    if byte_input.takes_bytes(runtime):
        if not isinstance(runtime, runtimes.SavedModelRuntime):
            raise BucketeyeError("model_error", f"{model_path.name} takes encoded image bytes (a string input): "
                                 "such models are served as a TensorFlow SavedModel", retryable=False)
        runtime = byte_input.ByteInputRuntime(runtime)
    return runtime, model_path


def _open_framework(path: Path, settings: Settings) -> tuple[runtimes.ModelRuntime, Path]:
    threads = settings.cpu_threads
    on_gpu = accelerator.choose(settings.accelerator, accelerator.gpu_name())
    if path.is_dir():
        tflite = path / "model.tflite"
        saved = path / "saved_model"
        # A bundle holding both (the built-in model): TFLite on CPU, the SavedModel on a GPU.
        if tflite.is_file() and not (saved.is_dir() and on_gpu):
            return runtimes.TFLiteRuntime(tflite, threads), path
        if (saved / "saved_model.pb").is_file():
            return runtimes.SavedModelRuntime(saved), path
        if (path / "saved_model.pb").is_file():
            return runtimes.SavedModelRuntime(path), path
        for suffix in MODEL_FILE_SUFFIXES:
            found = sorted(path.glob(f"*{suffix}"))
            if found:
                return _open_framework(found[0], settings)
        raise BucketeyeError("model_error", f"{path} holds no SavedModel, .keras, .tflite or .onnx model",
                             retryable=False)
    model_format = runtimes.format_of(path)
    if model_format is not None:
        return model_format.open(path, threads), path
    raise BucketeyeError("model_error", f"unknown model type {path.name!r}: use a SavedModel directory, "
                         ".keras, .tflite or .onnx", retryable=False)


def _read_metadata(model_path: Path) -> dict:
    folder = model_path if model_path.is_dir() else model_path.parent
    for candidate in (model_path.with_suffix(".json"), folder / "model.json"):
        if candidate.is_file() and candidate != model_path:
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise BucketeyeError("model_error", f"{candidate.name} is not valid JSON: {exc}",
                                     retryable=False) from None
    return {}


def _digest(model_path: Path) -> str:
    """Short content hash: a model with no stated version is identified by its bytes."""
    h = hashlib.sha256()
    files = [model_path] if model_path.is_file() else sorted(p for p in model_path.rglob("*") if p.is_file())
    for file in files:
        h.update(file.name.encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


def _inside(folder: Path, rel: str, name: str) -> Path:
    """folder/rel, refused when the object name would land outside folder: Cloud Storage names
    may hold '..' segments or start with '/', and a model bucket is not to be trusted with paths."""
    dest = folder / rel
    if rel.startswith("/") or not dest.resolve().is_relative_to(folder.resolve()):
        raise BucketeyeError("model_error", f"the model object {name[:200]!r} would be written outside the "
                             "model cache folder; refusing to download it", retryable=False)
    return dest


def download_model(uri: str, cache: Path) -> Path:
    """Copy a gs:// model (a file plus its sidecars, or a whole prefix) into the cache once."""
    from shared.storage import list_objects, parse_gs_uri
    target = parse_gs_uri(uri)
    local = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    done = local / ".complete"
    is_file = target.name.lower().endswith(MODEL_FILE_SUFFIXES)
    result = local / Path(target.name).name if is_file else local / "model"
    if done.exists():
        return result
    tmp = local.with_name(local.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    folder = target.name.rpartition("/")[0] if is_file else target.name.rstrip("/")
    prefix = folder + "/" if folder else ""  # a model file at the bucket root has no folder
    wanted = {Path(target.name).name, *_SIDECARS, Path(target.name).with_suffix(".json").name,
              Path(target.name).with_suffix(".labels.txt").name}
    count = 0
    for blob in list_objects(target.bucket, prefix):
        rel = blob.name[len(prefix):]
        if not rel or rel.endswith("/"):
            continue
        if is_file and not (rel in wanted or (rel.endswith(".pbtxt") and "/" not in rel)):
            continue
        dest = _inside(tmp if is_file else tmp / "model", rel, blob.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(dest))
        count += 1
    if count == 0:
        raise BucketeyeError("not_found", f"no model objects at {uri}", retryable=False)
    shutil.rmtree(local, ignore_errors=True)
    tmp.rename(local)
    done.touch()
    return result
