"""wait_for: poll a condition until it holds or a deadline passes (tests that watch other processes)."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "a condition"):
    """The predicate's first truthy value; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
