"""Recently finished result ids, so a redelivered event is not classified twice
inside one instance. Across instances, SQL de-duplicates on result_id."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RecentResults:
    def __init__(self, window_s: float, max_entries: int = 100_000):
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, result_id: str) -> bool:
        if self.window_s <= 0:
            return False
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            return result_id in self._seen

    def remember(self, result_id: str) -> None:
        if self.window_s <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._seen[result_id] = now
            self._seen.move_to_end(result_id)
            self._expire(now)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest_id, at = next(iter(self._seen.items()))
            if now - at <= self.window_s:
                break
            self._seen.popitem(last=False)
