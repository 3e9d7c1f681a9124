"""One thread owns the model; it gathers images from every caller into batches.

Callers from any trigger submit one preprocessed array and get a Future. The queue
is bounded: when it is full, submit() refuses at once with `overloaded`, so a burst
turns into 429/503 answers the platform retries, never into unbounded memory.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

from shared.errors import BucketeyeError

_STOP = object()


class Batcher:
    def __init__(self, run_batch: Callable[[np.ndarray], dict[str, np.ndarray]], *,
                 max_size: int, max_delay_s: float, queue_size: int, wait_for_more: bool = True):
        self._run_batch = run_batch
        self._max_size = max(1, max_size)
        # A runtime that runs one image per call gains nothing from a fuller batch: waiting
        # would only add latency, so it takes just what is already queued.
        self._max_delay_s = max(0.0, max_delay_s) if wait_for_more else 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._loop, name="bucketeye-batcher", daemon=True)
        self._thread.start()
        self.batches_run = 0
        self.images_run = 0

    def submit(self, array: np.ndarray) -> Future:
        """Queue one image; the Future resolves to ({output: row}, queue_ms, inference_ms)."""
        future: Future = Future()
        try:
            self._queue.put_nowait((array, future, time.perf_counter()))
        except queue.Full:
            raise BucketeyeError("overloaded", "too many images are waiting for the model; retry later") from None
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _gather(self, first) -> list:
        items = [first]
        deadline = time.perf_counter() + self._max_delay_s
        while len(items) < self._max_size:
            # Take what is already waiting at once; wait only up to the deadline for more.
            timeout = deadline - time.perf_counter()
            try:
                item = self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            items.append(item)
        return items

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = self._gather(first)
            self._run(items)

    def _run(self, items: list) -> None:
        start = time.perf_counter()
        try:
            batch = np.stack([array for array, _, _ in items])
            outputs = self._run_batch(batch)
        except BucketeyeError as exc:
            for _, future, _ in items:
                future.set_exception(exc)
            return
        except Exception as exc:  # a model failure must fail these images, not the thread
            error = BucketeyeError("model_error", f"inference failed: {type(exc).__name__}: {str(exc)[:300]}")
            for _, future, _ in items:
                future.set_exception(error)
            return
        inference_ms = (time.perf_counter() - start) * 1000.0
        self.batches_run += 1
        self.images_run += len(items)
        for i, (_, future, queued_at) in enumerate(items):
            row = {name: value[i] for name, value in outputs.items()}
            future.set_result((row, (start - queued_at) * 1000.0, inference_ms))
