"""The process's one Engine: loaded once, in the background, shared by every trigger.

Threads do not survive fork, and gunicorn imports main.py in its master and then
forks the worker: so loading starts in the worker right after the fork (or on the
first request, for servers that do not fork). /health answers "not ready" meanwhile.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from shared.config import Settings
from shared.errors import BucketeyeError

_lock = threading.Lock()
_ready = threading.Event()
_state: dict = {"engine": None, "error": None, "thread": None, "settings": None}

LOAD_WAIT_S = 120.0  # a request that arrives during loading waits this long for the model


def settings() -> Settings:
    with _lock:
        if _state["settings"] is None:
            _state["settings"] = Settings.from_env()
        return _state["settings"]


def start_loading() -> None:
    """Begin loading the model on a background thread (idempotent)."""
    with _lock:
        if _state["thread"] is not None:
            return
        thread = threading.Thread(target=_load, name="bucketeye-model-loader", daemon=True)
        _state["thread"] = thread
    thread.start()


def load_after_fork() -> None:
    """Load in any forked child (the gunicorn worker) as soon as it exists."""
    os.register_at_fork(after_in_child=_reset_and_load)


def _reset_and_load() -> None:
    global _lock, _ready
    _lock, _ready = threading.Lock(), threading.Event()
    _state.update(engine=None, error=None, thread=None)
    _write_log_diagnostic()
    start_loading()


def _write_log_diagnostic() -> None:
    """The logging library writes a diagnostic entry just before its first record; written
    inside a request, that entry carries the request's URL, query string and all (a push
    endpoint's ?token=, a signed URL). Write it now, outside any request."""
    import google.cloud.logging_v2 as logging_v2

    from shared.result_log import result_logger
    if getattr(logging_v2, "_instrumentation_emitted", True):
        return
    for handler in result_logger().handlers:
        if hasattr(handler, "emit_instrumentation_info"):
            handler.emit_instrumentation_info()
            return


def _load() -> None:
    from shared.config import non_defaults
    from shared.engine import Engine
    from shared.models.accelerator import gpu_name
    from shared.result_log import log_operation
    _write_log_diagnostic()  # servers that do not fork start loading here, still outside a request
    gpu = gpu_name()
    started = time.monotonic()
    try:
        engine = Engine(settings())
        _state["engine"] = engine
        model, load_s = engine.model, round(time.monotonic() - started, 3)
        runtime, sizes = model.runtime, list(engine.batch_sizes)
        device = "gpu" if any(word in runtime.device.lower() for word in ("gpu", "cuda")) else "cpu"
        log_operation(logging.INFO, f"model {model.id} ready in {load_s:.1f} s: {runtime.kind} on {runtime.device}, "
                      f"batch sizes {','.join(map(str, sizes))} built and warmed ({runtime.compiles} compiles); "
                      f"GPU: {gpu or 'none found'}", "model_ready", model_id=model.id, load_s=load_s,
                      runtime=runtime.kind, device=device, device_name=runtime.device, gpu=gpu, batch_sizes=sizes,
                      compiles=runtime.compiles, settings=non_defaults())
    except Exception as exc:  # any load failure must surface as not-ready (503 with the reason), not kill the server
        error = exc if isinstance(exc, BucketeyeError) else BucketeyeError(
            "model_error", f"model failed to load: {type(exc).__name__}: {exc}")
        _state["error"] = error
        log_operation(logging.ERROR, f"model failed to load: {error.code}: {error.message}", "model_load_failed",
                      error=error.as_dict(), gpu=gpu, settings=non_defaults())
    finally:
        _ready.set()


def is_ready() -> bool:
    start_loading()
    return _ready.is_set() and _state["engine"] is not None


def load_error() -> BucketeyeError | None:
    return _state["error"]


def engine():
    """The loaded Engine; waits for loading. A load failure is transient to callers:
    the platform redelivers, and a fixed deployment then processes the work."""
    start_loading()
    if not _ready.wait(LOAD_WAIT_S):
        raise BucketeyeError("overloaded", "the model is still loading; retry shortly")
    if _state["engine"] is None:
        error = _state["error"]
        raise BucketeyeError("model_error", error.message if error else "the model is not loaded", retryable=True)
    return _state["engine"]


def stats() -> dict:
    """This worker process's counters (each process has its own model and batcher): what
    a benchmark reads to see batch sizes, and that nothing compiled after ready."""
    engine = _state["engine"]
    if engine is None:
        return {"worker": os.getpid()}
    counts = {name: {str(size): n for size, n in by_size.items()}
              for name, by_size in engine.batcher.size_counts().items()}
    return {"worker": os.getpid(), "device": engine.model.runtime.device, "compiles": engine.model.runtime.compiles,
            **counts}
