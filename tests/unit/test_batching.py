"""The Batcher: concurrent submits gathered into batches, bounded queue, failures kept per batch."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shared.batching import Batcher
from shared.errors import BucketeyeError


class Recorder:
    """A fake model: remembers each batch, can hold the first call, fails on a poison value."""

    def __init__(self, hold_first: bool = False, poison: float | None = None):
        self.batches: list[list[float]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.poison = poison
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.batches.append([float(v) for v in batch[:, 0]])
        self.started.set()
        assert self.release.wait(10)
        if self.poison is not None and self.poison in batch[:, 0]:
            raise RuntimeError("poisoned batch")
        return {"double": batch * 2, "sum": batch.sum(axis=1)}

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


@pytest.fixture
def make_batcher():
    made = []

    def _make(run, **kwargs):
        options = dict(max_size=4, max_delay_s=0.0, queue_size=64)
        options.update(kwargs)
        batcher = Batcher(run, **options)
        made.append((batcher, run))
        return batcher
    yield _make
    for batcher, run in made:
        if isinstance(run, Recorder):
            run.release.set()
        batcher.close()


def item(value: float) -> np.ndarray:
    return np.array([value, 1.0], dtype=np.float32)


def test_queued_images_are_gathered_up_to_max_size(make_batcher):
    run = Recorder(hold_first=True)
    batcher = make_batcher(run, max_size=4)
    first = batcher.submit(item(0))
    assert run.started.wait(5)  # the model is busy with [0]; the next ten wait in the queue
    rest = [batcher.submit(item(v)) for v in range(1, 11)]
    run.release.set()
    results = [f.result(timeout=10) for f in [first] + rest]
    assert run.sizes == [1, 4, 4, 2]
    assert [v for batch in run.batches for v in batch] == list(range(11))  # first come, first served
    for value, (row, queue_ms, inference_ms) in zip(range(11), results):
        assert row["double"].tolist() == [2 * value, 2.0] and row["sum"] == pytest.approx(value + 1)
        assert queue_ms >= 0 and inference_ms >= 0
    assert (batcher.batches_run, batcher.images_run) == (4, 11)


def test_concurrent_callers_share_batches(make_batcher):
    run = Recorder()
    batcher = make_batcher(run, max_size=8, max_delay_s=0.2)
    barrier = threading.Barrier(16)

    def call(value):
        barrier.wait()
        return batcher.submit(item(value)).result(timeout=10)[0]["double"][0]

    with ThreadPoolExecutor(16) as pool:
        doubled = list(pool.map(call, range(16)))
    assert doubled == [2.0 * v for v in range(16)]
    assert max(run.sizes) <= 8 and sum(run.sizes) == 16
    assert len(run.sizes) <= 4  # gathered, not one model call per caller


def test_max_delay_is_honoured(make_batcher):
    run = Recorder()
    batcher = make_batcher(run, max_size=4, max_delay_s=0.4)
    start = time.perf_counter()
    row, queue_ms, _ = batcher.submit(item(5)).result(timeout=5)
    waited = time.perf_counter() - start
    assert 0.35 <= waited < 1.5  # a lone image waits for company, but no longer than the delay
    assert queue_ms >= 350 and run.sizes == [1]


def test_a_full_batch_does_not_wait_for_the_delay(make_batcher):
    run = Recorder()
    batcher = make_batcher(run, max_size=4, max_delay_s=2.0)
    start = time.perf_counter()
    futures = [batcher.submit(item(v)) for v in range(4)]
    [f.result(timeout=5) for f in futures]
    assert time.perf_counter() - start < 1.5
    assert run.sizes == [4]


def test_a_full_queue_refuses_at_once(make_batcher):
    run = Recorder(hold_first=True)
    batcher = make_batcher(run, max_size=2, queue_size=3)
    busy = batcher.submit(item(0))
    assert run.started.wait(5)
    waiting = [batcher.submit(item(v)) for v in (1, 2, 3)]
    start = time.perf_counter()
    with pytest.raises(BucketeyeError) as caught:
        batcher.submit(item(4))
    assert time.perf_counter() - start < 0.5  # no waiting for room
    assert (caught.value.code, caught.value.retryable) == ("overloaded", True)
    run.release.set()
    assert [f.result(timeout=5)[0]["double"][0] for f in [busy] + waiting] == [0.0, 2.0, 4.0, 6.0]
    assert batcher.submit(item(9)).result(timeout=5)[0]["double"][0] == 18.0  # room again


def test_a_model_exception_fails_only_that_batch(make_batcher):
    run = Recorder(hold_first=True, poison=13.0)
    batcher = make_batcher(run, max_size=3)
    first = batcher.submit(item(0))
    assert run.started.wait(5)
    doomed = [batcher.submit(item(v)) for v in (11, 13, 12)]      # one batch, holding the poison
    spared = [batcher.submit(item(v)) for v in (21, 22)]           # the next batch
    run.release.set()
    assert first.result(timeout=5)[0]["double"][0] == 0.0
    for future in doomed:
        with pytest.raises(BucketeyeError) as caught:
            future.result(timeout=5)
        assert caught.value.code == "model_error" and caught.value.retryable
        assert "RuntimeError" in caught.value.message and "poisoned batch" in caught.value.message
    assert [f.result(timeout=5)[0]["double"][0] for f in spared] == [42.0, 44.0]
    # the thread keeps serving afterwards
    assert batcher.submit(item(7)).result(timeout=5)[0]["double"][0] == 14.0
    assert run.sizes == [1, 3, 2, 1]


def test_a_bucketeye_error_from_the_model_is_passed_through(make_batcher):
    def run(batch):
        raise BucketeyeError("model_error", "no such signature", retryable=False)

    batcher = make_batcher(run)
    with pytest.raises(BucketeyeError) as caught:
        batcher.submit(item(1)).result(timeout=5)
    assert (caught.value.message, caught.value.retryable) == ("no such signature", False)
    with pytest.raises(BucketeyeError):
        batcher.submit(item(2)).result(timeout=5)


def test_mismatched_shapes_fail_their_batch_not_the_thread(make_batcher):
    run = Recorder(hold_first=True)
    batcher = make_batcher(run, max_size=2)
    first = batcher.submit(item(0))
    assert run.started.wait(5)
    odd = [batcher.submit(item(1)), batcher.submit(np.zeros(5, np.float32))]  # cannot be stacked together
    run.release.set()
    first.result(timeout=5)
    for future in odd:
        with pytest.raises(BucketeyeError, match="model_error"):
            future.result(timeout=5)
    assert batcher.submit(item(3)).result(timeout=5)[0]["double"][0] == 6.0


def test_close_stops_the_thread(make_batcher):
    batcher = make_batcher(Recorder())
    batcher.submit(item(1)).result(timeout=5)
    batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads)


class Lane:
    """A fake one-core model copy that records its calls. Given a barrier, its first call
    waits there for the other lane's first call: a test only passes when lanes really run
    side by side."""

    def __init__(self, name: str, calls: list, barrier: threading.Barrier | None = None):
        self.name, self.calls, self.barrier = name, calls, barrier

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(self.name)
        if self.barrier is not None:
            barrier, self.barrier = self.barrier, None
            barrier.wait(timeout=5)
        return {"double": batch * 2}


def test_a_lone_image_runs_on_the_whole_model_and_a_crowd_on_the_lanes(make_batcher):
    calls: list[str] = []
    barrier = threading.Barrier(2)
    batcher = make_batcher(Lane("whole", calls), max_size=1,
                           lanes=[Lane("lane-a", calls, barrier), Lane("lane-b", calls, barrier)])
    batcher.submit(item(1)).result(timeout=5)
    assert calls == ["whole"]  # alone: the copy that uses every core, for the lowest latency

    calls.clear()
    # A crowd: a lane's first image waits at the barrier for the other lane's, so this
    # only finishes if both lanes run at once (the first image may still run alone).
    values = range(2, 8)
    futures = [batcher.submit(item(v)) for v in values]
    assert [future.result(timeout=10)[0]["double"][0] for future in futures] == [2.0 * v for v in values]
    assert {"lane-a", "lane-b"} <= set(calls)
    assert batcher.images_run == 7


def test_without_lanes_one_thread_runs_everything(make_batcher):
    model = Recorder(hold_first=True)
    batcher = make_batcher(model, max_delay_s=0.0)
    first = batcher.submit(item(1))
    assert model.started.wait(5)
    rest = [batcher.submit(item(v)) for v in (2, 3, 4)]
    model.release.set()
    for future in [first, *rest]:
        future.result(timeout=5)
    assert model.sizes == [1, 3]  # images queued behind a running batch go together
    assert len(batcher._threads) == 1 and batcher.lone_runs == 0
