"""Models that take the encoded image file itself and decode it inside the graph.

AI Platform's built-in object detection exports a `serving_default` that takes
`encoded_image` (DT_STRING [-1]: the JPEG/PNG bytes) and `key` (DT_STRING [-1],
echoed back as an output); CloudML image models commonly take `image_bytes` the
same way. Such a model gets the original bytes of each image, unchanged: the engine
still validates them exactly as for any model (byte limit, header, pixel limit, a
cheap reduced decode that catches truncation) and records format and size, but the
pixels it decodes are never fed to the model.

Each image reaches the batcher as a small object array [bytes, key]; a batch is
therefore an object array [N, 2], split here into the signature's two inputs.
"""
from __future__ import annotations

import numpy as np

from shared.errors import BucketeyeError
from shared.models.runtimes import Runtime, SavedModelRuntime, TensorInfo

STRING = "string"
KEY = "key"
# What TensorFlow's tf.io.decode_image (the usual first op of such a model) decodes.
MODEL_DECODES = ("JPEG", "PNG", "GIF", "BMP")
ROW_ERROR = "bucketeye_row_error"  # an output added when images ran one by one: why the model refused each


def takes_bytes(runtime: Runtime) -> bool:
    return any(t.dtype == STRING for t in runtime.inputs)


def model_input(data: bytes, key: str) -> np.ndarray:
    """One image as the batcher carries it to a byte-input model."""
    item = np.empty(2, dtype=object)
    item[0], item[1] = data, key.encode("utf-8")
    return item


def check_decodable(fmt: str, formats=MODEL_DECODES) -> None:
    """A format we accept but the model's own decoder does not would fail its whole batch."""
    if fmt not in formats:
        raise BucketeyeError("unsupported_format",
                             f"this model decodes {', '.join(formats)} itself; a {fmt} image cannot be fed to it")


class ByteInputRuntime(Runtime):
    """A SavedModel signature with an encoded-image string input and, optionally, `key`."""

    def __init__(self, model: SavedModelRuntime):
        strings = [t for t in model.inputs if t.dtype == STRING]
        others = [t.name for t in model.inputs if t.dtype != STRING]
        if others:
            raise BucketeyeError("model_error", f"the model takes encoded bytes and also {', '.join(others)}: "
                                 "only an encoded-image input (with an optional key) can be served", retryable=False)
        self.key = next((t for t in strings if t.name == KEY), None)
        images = [t for t in strings if t is not self.key]
        if len(images) != 1:
            raise BucketeyeError("model_error", f"the model has string inputs {[t.name for t in strings]}: expected "
                                 f"one encoded-image input and an optional {KEY!r}", retryable=False)
        self.image: TensorInfo = images[0]
        if len(self.image.shape) > 1 or (self.key and len(self.key.shape) != len(self.image.shape)):
            raise BucketeyeError("model_error", f"the encoded-image input has shape {list(self.image.shape)}: "
                                 "expected a batch of strings [-1] or one string []", retryable=False)
        import tensorflow as tf  # already loaded by the SavedModel
        self._refused = (tf.errors.InvalidArgumentError,)  # what a decode op raises for data it cannot read
        self._model = model
        self.kind = model.kind
        self.inputs, self.outputs = model.inputs, model.outputs
        self._scalar = len(self.image.shape) == 0  # one image per call, no batch axis
        self.batchable = not self._scalar and self.image.shape[:1] != (1,)

    @property
    def input(self) -> TensorInfo:
        return self.image

    def describe(self) -> dict:
        return {"encoding": "encoded_bytes", "image_input": self.image.name,
                "key_input": self.key.name if self.key else None, "model_decodes": list(MODEL_DECODES)}

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self._call(batch)
        except self._refused as exc:
            if len(batch) == 1:
                raise _refused_image(exc) from None
        return self._one_by_one(batch)

    def _one_by_one(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """An image the model's own decoder refuses must fail alone, not its whole batch (whose
        model_error would be retried, and so redelivered, for ever)."""
        rows, errors = [], []
        for i in range(len(batch)):
            try:
                rows.append(self._call(batch[i:i + 1]))
                errors.append("")
            except self._refused as exc:
                rows.append(None)
                errors.append(_refused_image(exc).message)
        good = next((row for row in rows if row is not None), None)
        outputs = {}
        if good is not None:
            blank = {name: np.zeros_like(value) for name, value in good.items()}
            outputs = {name: np.concatenate([(row or blank)[name] for row in rows]) for name in good}
        outputs[ROW_ERROR] = np.array(errors, dtype=object)
        return outputs

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        images, keys = batch[:, 0], batch[:, 1]
        if self._scalar:
            images, keys = images[0], keys[0]
        feed = {self.image.name: images}
        if self.key is not None:
            feed[self.key.name] = keys
        outputs = self._model.call(feed)
        if self._scalar:
            outputs = {name: np.asarray(value)[None] for name, value in outputs.items()}
        if self.key is not None and KEY in outputs:
            echoed = [bytes(k) for k in np.asarray(outputs[KEY]).reshape(-1)]
            if echoed != [bytes(k) for k in batch[:, 1]]:
                raise BucketeyeError("model_error", "the model's key output does not echo its key input, so its "
                                     "rows cannot be matched to the images", retryable=False)
        return outputs


def _refused_image(exc: Exception) -> BucketeyeError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return BucketeyeError("unsupported_format", f"the model could not decode this image ({reason})")


def raise_row_error(row: dict) -> None:
    """The error _one_by_one recorded for this image, if any."""
    message = row.get(ROW_ERROR)
    if message:
        raise BucketeyeError("unsupported_format", str(message))
