"""Model runtimes behind one small interface: describe the input, run a batch.

Each runtime imports its framework lazily, so serving a TFLite model never pays
for importing TensorFlow.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.errors import BucketeyeError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple
    dtype: str


class ModelRuntime(Protocol):
    """What the engine and batcher need of a model, whatever its framework."""

    kind: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batchable: bool
    device: str
    builds_programs: bool
    compiles: int

    @property
    def input(self) -> TensorInfo: ...

    def warm_up(self, sizes: Sequence[int]) -> None: ...

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def single_core_copies(self, count: int) -> list[ModelRuntime]: ...


class Runtime:
    """The shared behaviour of the runtimes below (each implements ModelRuntime)."""

    kind = "?"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batchable = True  # False: the model takes exactly one image per call
    device = "cpu"  # where the model runs, as its framework names it (logged at start)
    builds_programs = False  # True: a program is traced (and compiled) per batch shape
    compiles = 0  # programs built for a new batch shape; none may happen after warm-up

    def warm_up(self, sizes: Sequence[int]) -> None:
        """Run one batch of each size, so every program is built (and compiled) before the
        service says it is ready. A model that cannot run them fails to load."""
        if not self.builds_programs or None in self.input.shape[1:]:  # a free spatial size: nothing fixed to build
            return
        shape, dtype = self.input.shape[1:], np.dtype(self.input.dtype)
        for size in sizes if self.batchable else (1,):
            try:
                self.run(np.zeros((size, *shape), dtype))
            except Exception as exc:
                raise _model_error(exc, f"the model failed its warm-up batch of {size}") from None

    def _count_compile(self) -> None:
        """Called from inside a traced function: its Python body runs once per new shape."""
        self.compiles += 1

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A batch (first axis) in, every output (first axis = batch) out."""
        if self.batchable or len(batch) == 1:
            return self._run(batch)
        parts = [self._run(batch[i:i + 1]) for i in range(len(batch))]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def single_core_copies(self, count: int) -> list[Runtime]:
        """Copies of the model using one core each, to run side by side (see batching);
        none for a runtime that batches instead."""
        return []


def _model_error(exc: Exception, what: str) -> BucketeyeError:
    return BucketeyeError("model_error", f"{what}: {type(exc).__name__}: {str(exc)[:300]}", retryable=False)


class TFLiteRuntime(Runtime):
    """LiteRT (TFLite) with XNNPACK: the fastest CPU path here. Run one image per
    call: a fixed shape keeps XNNPACK's plan, and batching buys nothing on a CPU."""
    kind = "tflite"
    batchable = False

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter
        self.path = path
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise _model_error(exc, f"cannot load TFLite model {path.name}") from None
        signatures = self._interpreter.get_signature_list()
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._runner = self._interpreter.get_signature_runner(key)
            ins, outs = self._runner.get_input_details(), self._runner.get_output_details()
            self.inputs = [_tflite_info(name, d) for name, d in ins.items()]
            self.outputs = [_tflite_info(name, d) for name, d in outs.items()]
        else:
            self._runner = None
            self._interpreter.allocate_tensors()
            self.inputs = [_tflite_info(d["name"], d) for d in self._interpreter.get_input_details()]
            self.outputs = [_tflite_info(d["name"], d) for d in self._interpreter.get_output_details()]

    def single_core_copies(self, count: int) -> list[Runtime]:
        return [TFLiteRuntime(self.path, 1) for _ in range(count)] if count > 1 else []

    def _run(self, batch):
        if self._runner is not None:
            return self._runner(**{self.input.name: batch})
        interp = self._interpreter
        interp.set_tensor(interp.get_input_details()[0]["index"], batch)
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}


def _tflite_info(name: str, detail: dict) -> TensorInfo:
    shape = detail.get("shape_signature", detail["shape"])
    return TensorInfo(name, tuple(int(d) if d > 0 else None for d in shape), np.dtype(detail["dtype"]).name)


class SavedModelRuntime(Runtime):
    """TensorFlow SavedModel through its serving signature (the GPU path)."""
    kind = "saved_model"
    builds_programs = True

    def __init__(self, path: Path, signature: str = "serving_default"):
        import tensorflow as tf
        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for a bad SavedModel
            raise _model_error(exc, f"cannot load SavedModel {path}") from None
        if signature not in loaded.signatures:
            available = ", ".join(loaded.signatures) or "none"
            raise BucketeyeError("model_error", f"SavedModel has no {signature!r} signature (has: {available})",
                                 retryable=False)
        self._loaded = loaded  # keep variables alive
        self._fn = loaded.signatures[signature]
        _, kwargs = self._fn.structured_input_signature
        self.inputs = [TensorInfo(n, tuple(s.shape.as_list()), s.dtype.name) for n, s in sorted(kwargs.items())]
        outs = self._fn.structured_outputs
        self.outputs = [TensorInfo(n, tuple(s.shape.as_list()), s.dtype.name) for n, s in sorted(outs.items())]
        self.batchable = self.input.shape[:1] != (1,)
        self.device = _tf_device(tf)
        signature_fn, input_name = self._fn, self.input.name

        def program(batch):
            self._count_compile()
            return signature_fn(**{input_name: batch})
        # Traced once per batch shape (the batcher only forms the allowed sizes). Not with
        # XLA: a model with an op XLA lacks would then fail to load, and its gain on a GPU
        # is unmeasured here (JAX, below, is XLA by nature).
        self._program = tf.function(program, reduce_retracing=False)

    def _run(self, batch):
        result = self._program(self._tf.constant(batch))
        return {name: tensor.numpy() for name, tensor in result.items()}

    def call(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature on several named inputs (e.g. encoded bytes and a key; see byte_input)."""
        result = self._fn(**{name: self._tf.constant(value) for name, value in inputs.items()})
        return {name: tensor.numpy() for name, tensor in result.items()}


def _tf_device(tf) -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return f"tensorflow {gpus[0].name}" if gpus else "tensorflow CPU"


class KerasRuntime(Runtime):
    """A Keras 3 model on whichever backend is installed (KERAS_BACKEND): the call is
    compiled once per batch shape, jax.jit on JAX and tf.function on TensorFlow, so the
    model never runs op by op. PyTorch runs it eagerly under inference mode."""
    kind = "keras"
    builds_programs = True

    def __init__(self, path: Path):
        import keras
        try:
            self._model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise _model_error(exc, f"cannot load Keras model {path.name}") from None
        model = self._model
        self.inputs = [TensorInfo(getattr(t, "name", f"input_{i}"), tuple(t.shape), _dtype_name(t.dtype))
                       for i, t in enumerate(model.inputs)]
        self._output_names = [f"output_{i}" for i in range(len(model.outputs))]
        if len(model.outputs) == 1:
            self._output_names = ["output_0"]
        self.outputs = [TensorInfo(n, tuple(t.shape), _dtype_name(t.dtype))
                        for n, t in zip(self._output_names, model.outputs)]
        self.backend = keras.backend.backend()
        self._call = {"jax": self._jax_program, "tensorflow": self._tf_program}.get(self.backend, self._eager)()

    def _jax_program(self):
        import jax
        model = self._model
        # Weights go in as arguments, not as constants baked into every compiled program.
        weights = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

        def program(trainable, non_trainable, batch):
            self._count_compile()
            outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
            return outputs
        compiled = jax.jit(program)
        self.device = f"jax {jax.devices()[0]}"
        return lambda batch: compiled(*weights, batch)

    def _tf_program(self):
        import tensorflow as tf
        model = self._model

        def program(batch):
            self._count_compile()
            return model(batch, training=False)
        self.device = _tf_device(tf)
        return tf.function(program, reduce_retracing=False)

    def _eager(self):
        if self.backend != "torch":
            self.device = f"{self.backend} (eager)"
            return lambda batch: self._model(batch, training=False)
        import torch
        self.device = f"torch {'cuda' if torch.cuda.is_available() else 'cpu'} (eager)"

        def call(batch):
            with torch.inference_mode():
                return self._model(batch, training=False)
        return call

    def _run(self, batch):
        out = self._call(batch)
        if not isinstance(out, (list, tuple)):
            out = [out]
        return {name: np.asarray(_to_numpy(t)) for name, t in zip(self._output_names, out)}


def _to_numpy(tensor):
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor  # a torch tensor on any device


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


class OnnxRuntime(Runtime):
    kind = "onnx"
    _TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
              "tensor(float16)": "float16", "tensor(double)": "float64"}

    def __init__(self, path: Path, threads: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BucketeyeError("model_error", "ONNX models need onnxruntime: pip install onnxruntime",
                                 retryable=False) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), options, providers=ort.get_available_providers())
        except Exception as exc:
            raise _model_error(exc, f"cannot load ONNX model {path.name}") from None
        self.inputs = [self._info(t) for t in self._session.get_inputs()]
        self.outputs = [self._info(t) for t in self._session.get_outputs()]
        self.batchable = self.input.shape[:1] != (1,)

    def _info(self, t) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in t.shape)
        return TensorInfo(t.name, shape, self._TYPES.get(t.type, t.type))

    def _run(self, batch):
        values = self._session.run(None, {self.input.name: batch})
        return {info.name: value for info, value in zip(self.outputs, values)}


class NullRuntime(Runtime):
    """The null model (MODEL_URI=null:), for the serving-ceiling benchmark only: it costs
    nothing per batch and answers the same scores for every image, so a benchmark run
    against it measures everything around the model (HTTP, fetch, decode, preprocessing,
    result logging) as the real model's input shape makes it."""
    kind = "null"
    device = "no device (the null model)"

    def __init__(self, height: int = 224, width: int = 224, classes: int = 1000):
        self.inputs = [TensorInfo("images", (None, height, width, 3), "uint8")]
        self.outputs = [TensorInfo("probabilities", (None, classes), "float32")]
        scores = np.linspace(1.0, 0.0, classes, dtype=np.float32)
        self._row = scores / scores.sum()

    def _run(self, batch):
        return {"probabilities": np.broadcast_to(self._row, (len(batch), len(self._row)))}


@dataclass(frozen=True)
class ModelFormat:
    """A model file format: the name suffixes that mark it and how to open one."""

    name: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, int], ModelRuntime]  # (path, CPU threads) -> runtime


# The model file formats by name, in the order a folder's files are tried.
FORMATS: dict[str, ModelFormat] = {}


def register(model_format: ModelFormat) -> None:
    FORMATS[model_format.name] = model_format


register(ModelFormat("tflite", (".tflite",), lambda path, threads: TFLiteRuntime(path, threads)))
register(ModelFormat("keras", (".keras", ".h5"), lambda path, threads: KerasRuntime(path)))
register(ModelFormat("onnx", (".onnx",), lambda path, threads: OnnxRuntime(path, threads)))


def file_suffixes() -> tuple[str, ...]:
    return tuple(suffix for model_format in FORMATS.values() for suffix in model_format.suffixes)


def format_of(path: Path) -> ModelFormat | None:
    """The registered format a model file's name says, or None."""
    suffix = path.suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)
