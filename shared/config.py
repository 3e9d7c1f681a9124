"""Settings, read once from environment variables.

Every variable the code reads is declared in SETTINGS below, with its default and
meaning: README's table and the Terraform checks are built from this one list. A value
the code cannot use raises SettingError (one line: the variable, its value, what is
allowed); the entry points turn it into an exit status, library code never exits.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "bucketeye")


# name -> (default, description). Defaults are strings, parsed by Settings.from_env.
SETTINGS: dict[str, tuple[str, str]] = {
    "MODEL_URI": ("", "Model to serve: local path or gs:// URI (SavedModel dir, .keras, .tflite, .onnx). Empty: the built-in EfficientNet-Lite0."),
    "MODEL_CACHE_DIR": (_default_cache_dir(), "Where the built-in model is built and gs:// models are downloaded."),
    "TOP_K": ("5", "Predictions kept per image."),
    "SCORE_THRESHOLD": ("0.3", "Minimum score for a detection (object-detection models)."),
    "RESIZE_MODE": ("", "stretch, crop (centre crop) or pad (keep aspect ratio). Empty: the model's own default."),
    "COLOR_SPACE": ("", "RGB, HSV, YIQ, YUV or GRAYSCALE. Empty: derived from the model (RGB, or GRAYSCALE for 1 channel)."),
    "INPUT_RANGE": ("", "Pixel value range fed to a float model, e.g. '0,1' or '-1,1'. Empty: derived from the model."),
    "OUTPUT_KIND": ("auto", "auto, logits or probabilities: whether scores need a softmax."),
    "MAX_IMAGE_BYTES": (str(20 * 1024 * 1024), "Largest image accepted, in bytes."),
    "MAX_IMAGE_PIXELS": ("50000000", "Largest image accepted, in pixels (width x height); larger is a decompression bomb."),
    "MAX_REQUEST_BYTES": (str(32 * 1024 * 1024), "Largest HTTP request body; refused with 413 before it is read."),
    "MAX_INSTANCES": ("64", "Most images in one HTTP request or Pub/Sub message."),
    "BATCH_MAX_SIZE": ("8", "Most images the batcher runs through the model at once."),
    "BATCH_MAX_DELAY_MS": ("2", "How long the batcher waits for a batch to fill."),
    "BATCH_SIZES": ("1,8,32,64", "Batch sizes the model is compiled for, each warmed before ready; a batch is padded up to the next one. Sizes above BATCH_MAX_SIZE are dropped (BATCH_MAX_SIZE itself is added)."),
    "BATCH_QUEUE_SIZE": ("256", "Images waiting for the model before requests are refused (429/503)."),
    "INFERENCE_THREADS": ("0", "CPU cores the model uses; 0 means all. On the LiteRT path that many one-core copies run side by side under load, and a lone image uses all of them."),
    "DECODE_WORKERS": ("0", "Threads fetching and decoding images; 0 means one per CPU core. Raise it where inference is not on the CPU (a GPU)."),
    "DECODE_PIXEL_BUDGET": ("0", "Most pixels decoded at once by all decode threads together; a decode waits for room. 0: a quarter of the memory limit at 10 bytes a pixel, never below MAX_IMAGE_PIXELS."),
    "WORKERS": ("1", "Server processes, each with its own model and batcher; 0 means one per vCPU. INFERENCE_THREADS and DECODE_WORKERS left at 0 then share the vCPUs among them. More than 1 pays where the model is not on the CPU (a GPU): docs/benchmarks.md."),
    "ACCELERATOR": ("auto", "auto, gpu or cpu. gpu: a missing GPU fails readiness (logged at ERROR) instead of serving on the CPU; cpu: never use a GPU."),
    "ALLOWED_BUCKETS": ("", "Comma-separated buckets that may be read; '*' allows any. Empty allows none."),
    "REQUEST_BUCKETS": ("", "Comma-separated buckets that URIs named in a request (HTTP, Pub/Sub message, BigQuery call, backfill) may read; '*' allows any. Empty: the ALLOWED_BUCKETS. The model's bucket (MODEL_URI) is never read for a request."),
    "SKIP_PREFIXES": ("", "Comma-separated object-name prefixes never classified (e.g. outputs)."),
    "MAX_EVENT_AGE_S": ("86400", "Upload events (Cloud Storage) older than this many seconds are dropped with a stale_event error; requests (Pub/Sub messages naming work, backfill, HTTP) never are. 0 disables."),
    "DEDUP_WINDOW_S": ("600", "A redelivered event seen within this many seconds is not classified again."),
    "FETCH_TIMEOUT_S": ("30", "Timeout for one Cloud Storage read, in seconds."),
}


def non_defaults(environ: dict | None = None) -> dict[str, str]:
    """The settings set to something other than their default: what an operator needs to know."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name, (default, _) in SETTINGS.items() if name in env and env[name] != default}


def _as_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    model_uri: str
    model_cache_dir: str
    top_k: int
    score_threshold: float
    resize_mode: str
    color_space: str
    input_range: str
    output_kind: str
    max_image_bytes: int
    max_image_pixels: int
    max_request_bytes: int
    max_instances: int
    batch_max_size: int
    batch_max_delay_ms: float
    batch_sizes: tuple[str, ...]
    batch_queue_size: int
    inference_threads: int
    decode_workers: int
    decode_pixel_budget: int
    workers: int
    accelerator: str
    allowed_buckets: tuple[str, ...]
    request_buckets: tuple[str, ...]
    skip_prefixes: tuple[str, ...]
    max_event_age_s: float
    dedup_window_s: float
    fetch_timeout_s: float

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = f.name.upper()
            raw = env.get(name, SETTINGS[name][0])
            values[f.name] = _parse(f.type, raw, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def bucket_allowed(self, bucket: str, *, requested: bool = False) -> bool:
        """Whether `bucket` may be read: because a trigger fired for it (ALLOWED_BUCKETS), or,
        `requested`, because a caller named it (REQUEST_BUCKETS; never the model's bucket)."""
        if not requested:
            return "*" in self.allowed_buckets or bucket in self.allowed_buckets
        if bucket == self.model_bucket:
            return False
        listed = self.request_buckets or self.allowed_buckets
        return "*" in listed or bucket in listed

    @property
    def model_bucket(self) -> str:
        """The bucket MODEL_URI names, or "" for a local or built-in model."""
        if not self.model_uri.lower().startswith("gs://"):
            return ""
        return self.model_uri[5:].partition("/")[0]

    def object_skipped(self, name: str) -> bool:
        return any(name.startswith(prefix) for prefix in self.skip_prefixes)

    @property
    def allowed_batch_sizes(self) -> tuple[int, ...]:
        """BATCH_SIZES up to BATCH_MAX_SIZE, which is always one of them, ascending
        (BATCH_SIZES was checked when the settings were read)."""
        top = max(1, self.batch_max_size)
        return tuple(sorted({int(size) for size in self.batch_sizes if int(size) <= top} | {top}))

    @property
    def cpu_threads(self) -> int:
        return self.inference_threads or os.cpu_count() or 1


class SettingError(ValueError):
    """A setting the code cannot use. str() is the one line to show the operator."""


# The smallest value each number may take (integers and floats alike); absent: no bound.
_MINIMUM = {"TOP_K": 1, "MAX_IMAGE_BYTES": 1, "MAX_IMAGE_PIXELS": 1, "MAX_REQUEST_BYTES": 1, "MAX_INSTANCES": 1,
            "BATCH_MAX_SIZE": 1, "BATCH_MAX_DELAY_MS": 0, "BATCH_QUEUE_SIZE": 1, "INFERENCE_THREADS": 0,
            "DECODE_WORKERS": 0, "DECODE_PIXEL_BUDGET": 0, "WORKERS": 0, "MAX_EVENT_AGE_S": 0, "DEDUP_WINDOW_S": 0, "SCORE_THRESHOLD": 0}


def _choices(name: str) -> tuple[str, ...] | None:
    """The words a setting may be (any case), or None for free-form settings."""
    from shared.models.accelerator import CHOICES as ACCELERATORS
    from shared.models.spec import COLOR_SPACES, RESIZE_MODES
    from shared.postprocess import OUTPUT_KINDS
    return {"RESIZE_MODE": RESIZE_MODES, "COLOR_SPACE": COLOR_SPACES, "OUTPUT_KIND": OUTPUT_KINDS,
            "ACCELERATOR": ACCELERATORS}.get(name)


def _invalid(name: str, raw: str, allowed: str) -> SettingError:
    return SettingError(f"bucketeye: invalid setting {name}={raw[:100]!r}: expected {allowed}")


def _parse(type_name: str, raw: str, name: str):
    if type_name in ("int", "float"):
        return _number(type_name, raw, name)
    if type_name.startswith("tuple"):
        items = _as_list(raw)
        if name == "BATCH_SIZES" and not all(item.isdigit() and int(item) >= 1 for item in items):
            raise _invalid(name, raw, "whole numbers of at least 1, comma-separated, e.g. 1,8,32,64")
        return items
    value = raw.strip()
    choices = _choices(name)
    if value and choices and value.lower() not in (c.lower() for c in choices):
        raise _invalid(name, raw, "one of " + ", ".join(choices) + " (or empty)")
    if value and name == "INPUT_RANGE":
        from shared.errors import BucketeyeError
        from shared.models.spec import parse_range
        try:
            parse_range(value)
        except BucketeyeError:
            raise _invalid(name, raw, "LOW,HIGH with LOW below HIGH, e.g. 0,1 or -1,1 (or empty)") from None
    return value


def _number(type_name: str, raw: str, name: str):
    low = _MINIMUM.get(name)
    kind = "an integer" if type_name == "int" else "a number"
    allowed = kind + (f" >= {low}" if low is not None else "") + (" and <= 1" if name == "SCORE_THRESHOLD" else "")
    if name == "FETCH_TIMEOUT_S":
        allowed = "a number of seconds > 0"
    try:
        value = int(raw) if type_name == "int" else float(raw)
    except ValueError:
        raise _invalid(name, raw, allowed) from None
    if type_name == "float" and not math.isfinite(value):
        raise _invalid(name, raw, allowed)
    too_low = (low is not None and value < low) or (name == "FETCH_TIMEOUT_S" and value <= 0)
    if too_low or (name == "SCORE_THRESHOLD" and value > 1):
        raise _invalid(name, raw, allowed)
    return value
