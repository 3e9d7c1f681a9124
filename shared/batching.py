"""Threads that own the model; they gather images from every caller into batches.

Callers from any trigger submit one preprocessed array and get a Future. The queue
is bounded: when it is full, submit() refuses at once with `overloaded`, so a burst
turns into 429/503 answers the platform retries, never into unbounded memory.

A model that batches (a GPU) gets one thread, which waits up to max_delay for a fuller
batch. A CPU model that runs one image per call can instead be given lanes: copies of
it that use one core each, one thread per lane. Under load they run side by side,
which beats one copy spreading each image over every core (its threads wait for each
other at every layer, and decode threads interrupt them); a lone image, with no other
lane busy and nothing queued, still runs on the every-core model for the lowest
latency.

A compiled model builds one program per batch shape. Given allowed sizes (as TF
Serving's allowed_batch_sizes), the batcher pads every batch up to the next of them,
so the model only ever sees shapes that were compiled and warmed before ready.
"""
from __future__ import annotations

import bisect
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from shared.errors import BucketeyeError

_STOP = object()

RunBatch = Callable[[np.ndarray], dict[str, np.ndarray]]


class Batcher:
    def __init__(self, run_batch: RunBatch, *, max_size: int, max_delay_s: float, queue_size: int,
                 lanes: Sequence[RunBatch] = (), allowed_sizes: Sequence[int] = ()):
        self._run_batch = run_batch
        self._allowed_sizes = sorted(set(allowed_sizes))
        self._max_size = max(1, max(self._allowed_sizes, default=max_size))
        self._max_delay_s = max(0.0, max_delay_s)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        self._busy_lanes = 0
        self._whole_model_busy = False
        self.batches_run = 0
        self.images_run = 0
        self.lone_runs = 0  # batches that ran on run_batch while lanes existed
        self.batch_sizes = Counter()  # size the model ran (after padding) -> batches
        self.images_per_batch = Counter()  # real images in a batch (before padding) -> batches
        runners = list(lanes) or [run_batch]
        self._threads = [threading.Thread(target=self._loop, args=(run,), name=f"bucketeye-batcher-{n}", daemon=True)
                         for n, run in enumerate(runners)]
        self._has_lanes = bool(lanes)
        for thread in self._threads:
            thread.start()

    def submit(self, array: np.ndarray) -> Future:
        """Queue one image; the Future resolves to ({output: row}, queue_ms, inference_ms)."""
        future: Future = Future()
        try:
            self._queue.put_nowait((array, future, time.perf_counter()))
        except queue.Full:
            raise BucketeyeError("overloaded", "too many images are waiting for the model; retry later") from None
        return future

    def size_counts(self) -> dict[str, dict[int, int]]:
        """Batches run by size after padding, and by real images in them (a copy)."""
        with self._lock:
            return {"batch_sizes": dict(sorted(self.batch_sizes.items())),
                    "images_per_batch": dict(sorted(self.images_per_batch.items()))}

    def close(self) -> None:
        self._queue.put(_STOP)  # each thread passes it on to the next
        for thread in self._threads:
            thread.join(timeout=10)

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

    def _loop(self, lane_run: RunBatch) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.put(_STOP)
                return
            items = self._gather(first)
            with self._lock:
                self._busy_lanes += 1
                lone = (self._has_lanes and self._busy_lanes == 1 and self._queue.empty()
                        and not self._whole_model_busy)
                self._whole_model_busy |= lone
            try:
                self._run(items, self._run_batch if lone else lane_run)
            finally:
                with self._lock:
                    self._busy_lanes -= 1
                    if lone:
                        self._whole_model_busy = False
                        self.lone_runs += 1

    def _run(self, items: list, run_batch: RunBatch) -> None:
        start = time.perf_counter()
        try:
            batch = pad_batch(np.stack([array for array, _, _ in items]), self._allowed_sizes)
            outputs = run_batch(batch)
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
        with self._lock:
            self.batches_run += 1
            self.images_run += len(items)
            self.batch_sizes[len(batch)] += 1
            self.images_per_batch[len(items)] += 1
        for i, (_, future, queued_at) in enumerate(items):
            row = {name: value[i] for name, value in outputs.items()}
            future.set_result((row, (start - queued_at) * 1000.0, inference_ms))


def pad_batch(batch: np.ndarray, allowed_sizes: Sequence[int]) -> np.ndarray:
    """The batch with zero images appended up to the smallest allowed size that holds it
    (unchanged without allowed sizes). The padding's outputs are never read."""
    index = bisect.bisect_left(allowed_sizes, len(batch))
    if index == len(allowed_sizes) or allowed_sizes[index] == len(batch):
        return batch
    padding = np.zeros((allowed_sizes[index] - len(batch), *batch.shape[1:]), batch.dtype)
    return np.concatenate([batch, padding])
