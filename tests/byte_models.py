"""Two byte-input SavedModels built by the tests with TensorFlow, and photos to check them on.

- `classifier`: the built-in EfficientNet-Lite0 behind one `encoded_image` input
  (DT_STRING [-1]). The graph decodes each file, centre-crops 87.5 % of the short side,
  resizes to 224 x 224 (bicubic) and runs the built-in SavedModel: `probabilities`.
- `detector`: exactly AI Platform's object-detection signature: `encoded_image` and
  `key` (DT_STRING [-1]) in; `detection_boxes` [-1, 100, 4] (ymin, xmin, ymax, xmax in
  [0, 1]), `detection_classes` (1-based, float), `detection_scores`, `num_detections`
  and `key` out. It finds rectangles painted in pure colours (BOX_COLOURS): each
  colour's bounding box, scored by the share of that box the colour fills. Boxes drawn
  with `paint_boxes` are therefore its ground truth.

Both are built once into MODEL_CACHE_DIR/test-models/<hash of this file>, so a change
here builds them anew and an unchanged file costs nothing on the next run.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

MAX_DETECTIONS = 100
TOLERANCE = 40  # per channel: JPEG's chroma blur at a box's edge stays within it
BOX_COLOURS = {1: ("magenta_box", (255, 0, 255)), 2: ("cyan_box", (0, 255, 255))}
LABEL_MAP = "".join(f'item {{\n  id: {i}\n  name: "{name}"\n}}\n' for i, (name, _) in BOX_COLOURS.items())
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def photo_path(name: str) -> Path:
    import skimage
    return Path(skimage.__file__).parent / "data" / name


def photo(name: str) -> Image.Image:
    return Image.open(photo_path(name)).convert("RGB")


def encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def paint_boxes(img: Image.Image, boxes: dict[int, tuple[int, int, int, int]]) -> tuple[Image.Image, dict]:
    """Paint {class id: (left, top, right, bottom)} (right/bottom exclusive) onto a copy of img.
    Returns the picture and its ground truth {class id: (ymin, xmin, ymax, xmax)} normalised."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    truth = {}
    for class_id, (left, top, right, bottom) in boxes.items():
        draw.rectangle([left, top, right - 1, bottom - 1], fill=BOX_COLOURS[class_id][1])
        truth[class_id] = (top / out.height, left / out.width, bottom / out.height, right / out.width)
    return out, truth


# --- building -----------------------------------------------------------------------------

def cache_root() -> Path:
    from shared.config import Settings
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Path(Settings.from_env().model_cache_dir).expanduser() / "test-models" / digest


def built(name: str) -> Path:
    """The model `name` ("classifier" or "detector"), built on first use."""
    root = cache_root()
    target = root / name
    if (target / "model.json").is_file():  # written last
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
        if not (target / "model.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
            try:
                BUILDERS[name](tmp)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_classifier(folder: Path) -> None:
    import tensorflow as tf

    from shared.config import Settings
    from shared.models.default_model import METADATA, ensure_default_model

    builtin = ensure_default_model(Settings.from_env().model_cache_dir)
    spec = METADATA["input"]
    size, fraction = spec["height"], spec["crop_fraction"]
    module = tf.Module()
    module.builtin = tf.saved_model.load(str(builtin / "saved_model"))
    run_builtin = module.builtin.signatures["serving_default"]

    def prepare(encoded):
        img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        height, width = tf.shape(img)[0], tf.shape(img)[1]
        side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * fraction, tf.int32)
        img = tf.image.crop_to_bounding_box(img, (height - side) // 2, (width - side) // 2, side, side)
        img = tf.image.resize(img, [size, size], method="bicubic", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded_image")])
    def serve(encoded_image):
        pixels = tf.map_fn(prepare, encoded_image, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return {"probabilities": run_builtin(images=pixels)["probabilities"]}

    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    shutil.copy2(builtin / "labels.txt", folder / "labels.txt")
    (folder / "model.json").write_text(json.dumps({"name": "efficientnet_lite0_bytes", "version": "1"}))


def _build_detector(folder: Path) -> None:
    import tensorflow as tf

    colours = tf.constant([colour for _, (_, colour) in sorted(BOX_COLOURS.items())], tf.int32)  # [C, 3]
    classes = tf.constant(sorted(BOX_COLOURS), tf.float32)

    def boxes_of(mask, height, width):
        """Bounding box (normalised) of a [H, W] mask, and the share of it the mask fills."""
        rows = tf.reduce_any(mask, axis=1)
        cols = tf.reduce_any(mask, axis=0)
        found = tf.reduce_any(rows)
        ys = tf.range(height, dtype=tf.float32)
        xs = tf.range(width, dtype=tf.float32)
        big = tf.constant(1e9)
        ymin = tf.reduce_min(tf.where(rows, ys, big))
        ymax = tf.reduce_max(tf.where(rows, ys + 1, 0.0))
        xmin = tf.reduce_min(tf.where(cols, xs, big))
        xmax = tf.reduce_max(tf.where(cols, xs + 1, 0.0))
        area = tf.maximum((ymax - ymin) * (xmax - xmin), 1.0)
        score = tf.where(found, tf.reduce_sum(tf.cast(mask, tf.float32)) / area, 0.0)
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        box = tf.where(found, tf.stack([ymin / h, xmin / w, ymax / h, xmax / w]), tf.zeros([4]))
        return box, score

    def detect(encoded):
        img = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.int32)
        height, width = tf.shape(img)[0], tf.shape(img)[1]
        found = [boxes_of(tf.reduce_all(tf.abs(img - colours[i]) <= TOLERANCE, axis=-1), height, width)
                 for i in range(len(BOX_COLOURS))]
        boxes = tf.stack([box for box, _ in found])
        scores = tf.stack([score for _, score in found])
        order = tf.argsort(scores, direction="DESCENDING", stable=True)
        boxes, scores, labels = tf.gather(boxes, order), tf.gather(scores, order), tf.gather(classes, order)
        pad = MAX_DETECTIONS - len(BOX_COLOURS)
        count = tf.reduce_sum(tf.cast(scores > 0, tf.float32))
        return (tf.pad(boxes, [[0, pad], [0, 0]]), tf.pad(labels, [[0, pad]]), tf.pad(scores, [[0, pad]]), count)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded_image"),
                                  tf.TensorSpec([None], tf.string, name="key")])
    def serve(encoded_image, key):
        boxes, labels, scores, count = tf.map_fn(
            detect, encoded_image,
            fn_output_signature=(tf.TensorSpec([MAX_DETECTIONS, 4], tf.float32),
                                 tf.TensorSpec([MAX_DETECTIONS], tf.float32),
                                 tf.TensorSpec([MAX_DETECTIONS], tf.float32), tf.TensorSpec([], tf.float32)))
        return {"detection_boxes": boxes, "detection_classes": labels, "detection_scores": scores,
                "num_detections": count, "key": tf.identity(key)}

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    (folder / "label_map.pbtxt").write_text(LABEL_MAP, encoding="utf-8")
    (folder / "model.json").write_text(json.dumps({"name": "box_detector", "version": "1"}))


BUILDERS = {"classifier": _build_classifier, "detector": _build_detector}
