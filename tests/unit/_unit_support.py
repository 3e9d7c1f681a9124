"""Constants and helpers shared by the unit tests (fixtures live in conftest.py)."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from PIL import Image

from shared.config import Settings

REPO = Path(__file__).resolve().parents[2]
PROBE_SIZE = 8          # height and width of the tiny classifiers' input
PROBE_SCALE = 3.0       # logits = PROBE_SCALE * channel means
PROBE_LABELS = ("red", "green", "blue")

# The detection model's fixed outputs: four candidates, num_detections says only three count.
DETECTION_BOXES = [[0.1, 0.2, 0.5, 0.6], [-0.1, 0.0, 1.0, 1.2], [0.3, 0.3, 0.4, 0.4], [0.2, 0.2, 0.3, 0.3]]
DETECTION_CLASSES = [1.0, 3.0, 2.0, 1.0]
DETECTION_SCORES = [0.9, 0.2, 0.5, 0.95]
DETECTION_COUNT = 3
LABEL_MAP = """\
# an Object Detection API label map
item {
  id: 1
  name: "/m/01yrx"
  display_name: "cat"
}
item { id: 2 name: "dog" }
item {
  name: '/m/015p6'
  id: 3
  display_name: 'bird'
}
"""


# --- settings, engines, images ------------------------------------------------------------

def settings(**overrides) -> Settings:
    """Settings from the defaults only (never the caller's environment), plus overrides."""
    return Settings.from_env(environ={}, **overrides)


@contextlib.contextmanager
def running_engine(model, **overrides):
    """A real Engine over an already loaded model, closed afterwards."""
    from shared.engine import Engine

    engine = Engine(settings(**overrides), model)
    try:
        yield engine
    finally:
        engine.close()


def solid(color, size=(32, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def inline_ref(data: bytes, name: str = "inline"):
    from shared.refs import ImageRef

    return ImageRef(trigger="http", data=data, key=name)


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def subprocess_env(**extra) -> dict:
    from shared.config import SETTINGS

    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


# --- the result record contract -----------------------------------------------------------

_STR, _INT, _FLOAT, _BOOL = (str,), (int,), (float,), (bool,)
_OPT_STR, _OPT_INT, _OPT_FLOAT = (str, type(None)), (int, type(None)), (float, type(None))
RECORD_TYPES = {
    "app": _STR, "schema_version": _INT, "result_id": _STR, "status": _STR,
    "source": {"trigger": _STR, "uri": _OPT_STR, "bucket": _OPT_STR, "object": _OPT_STR, "generation": _OPT_STR,
               "event_id": _OPT_STR, "content_type": _OPT_STR, "size_bytes": _OPT_INT, "key": _OPT_STR,
               "content_md5": _OPT_STR},
    "image": {"format": _OPT_STR, "width": _OPT_INT, "height": _OPT_INT},
    "model": {"name": _STR, "version": _STR, "id": _STR},
    "predictions": [{"label": _STR, "label_id": _INT, "score": _FLOAT}],
    "detections": [{"label": _STR, "label_id": _INT, "score": _FLOAT,
                    "box": {"ymin": _FLOAT, "xmin": _FLOAT, "ymax": _FLOAT, "xmax": _FLOAT}}],
    "top_label": _OPT_STR, "top_score": _OPT_FLOAT,
    "timings_ms": {name: _OPT_FLOAT for name in ("fetch", "decode", "queue", "inference", "total")},
    "error": {"code": _STR, "message": _STR, "retryable": _BOOL, None: "nullable"},
}


def check_record_types(record, types=RECORD_TYPES, path="record") -> None:
    """Assert `record` has exactly the contract's keys, each of its one type (or null where allowed).
    `type(...) is` on purpose: a bool is not an int, an int is not a float."""
    if isinstance(types, dict):
        if record is None and types.get(None) == "nullable":
            return
        assert isinstance(record, dict), f"{path}: {record!r} is not an object"
        wanted = {k for k in types if k is not None}
        assert set(record) == wanted, f"{path}: keys {sorted(record)} != {sorted(wanted)}"
        for key in wanted:
            check_record_types(record[key], types[key], f"{path}.{key}")
    elif isinstance(types, list):
        assert isinstance(record, list), f"{path}: {record!r} is not a list"
        for i, item in enumerate(record):
            check_record_types(item, types[0], f"{path}[{i}]")
    else:
        assert type(record) in types, f"{path}: {record!r} is {type(record).__name__}, not {types}"
