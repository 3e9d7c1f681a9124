"""Settings, read once from environment variables.

Every variable the code reads is declared in SETTINGS below, with its default and
meaning: README's table and the Terraform checks are built from this one list.
"""
from __future__ import annotations

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
    "WORKERS": ("1", "Server processes, each with its own model and batcher; 0 means one per vCPU. INFERENCE_THREADS and DECODE_WORKERS left at 0 then share the vCPUs among them. More than 1 pays where the model is not on the CPU (a GPU): docs/benchmarks.md."),
    "ACCELERATOR": ("auto", "auto, gpu or cpu. gpu: a missing GPU fails readiness (logged at ERROR) instead of serving on the CPU; cpu: never use a GPU."),
    "ALLOWED_BUCKETS": ("", "Comma-separated buckets that may be read; '*' allows any. Empty allows none."),
    "SKIP_PREFIXES": ("", "Comma-separated object-name prefixes never classified (e.g. outputs)."),
    "MAX_EVENT_AGE_S": ("86400", "Events older than this many seconds are dropped with a stale_event error. 0 disables."),
    "DEDUP_WINDOW_S": ("600", "A redelivered event seen within this many seconds is not classified again."),
    "FETCH_TIMEOUT_S": ("30", "Timeout for one Cloud Storage read, in seconds."),
}


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
    workers: int
    accelerator: str
    allowed_buckets: tuple[str, ...]
    skip_prefixes: tuple[str, ...]
    max_event_age_s: float
    dedup_window_s: float
    fetch_timeout_s: float

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = f.name.upper()
            raw = env.get(name, SETTINGS[name][0])
            values[f.name] = _parse(f.type, raw, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def bucket_allowed(self, bucket: str) -> bool:
        return "*" in self.allowed_buckets or bucket in self.allowed_buckets

    def object_skipped(self, name: str) -> bool:
        return any(name.startswith(prefix) for prefix in self.skip_prefixes)

    @property
    def allowed_batch_sizes(self) -> tuple[int, ...]:
        """BATCH_SIZES up to BATCH_MAX_SIZE, which is always one of them, ascending."""
        from shared.errors import BucketeyeError
        top = max(1, self.batch_max_size)
        try:
            sizes = {int(size) for size in self.batch_sizes}
        except ValueError:
            sizes = {0}
        if min(sizes, default=1) < 1:
            raise BucketeyeError("model_error", f"BATCH_SIZES={','.join(self.batch_sizes)!r} must list whole "
                                 "numbers of at least 1, e.g. 1,8,32,64", retryable=False)
        return tuple(sorted({size for size in sizes if size <= top} | {top}))

    @property
    def cpu_threads(self) -> int:
        return self.inference_threads or os.cpu_count() or 1


def _parse(type_name: str, raw: str, name: str):
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name.startswith("tuple"):
            return _as_list(raw)
        return raw.strip()
    except ValueError:
        raise SystemExit(f"bucketeye: environment variable {name}={raw!r} is not a valid {type_name}") from None
