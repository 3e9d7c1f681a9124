"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def rate(fn: Callable[[], None], *, min_calls: int, min_seconds: float) -> float:
    """Calls per second of `fn`, after one warm-up call, over at least min_calls and min_seconds."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of pairwise ratios: each pair was measured back to back."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))
