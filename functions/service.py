"""What the handlers need, passed in: settings, the engine and the de-duplication store.

The server builds one from the process's runtime (the model loading in the background);
tests and tools build one around any engine (`Service.for_engine`)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from functions import runtime
from functions.dedup import RecentResults
from shared.config import Settings
from shared.errors import BucketeyeError

NO_MODEL = {"name": None, "version": None, "id": ""}


@dataclass
class Service:
    settings: Settings
    engine: Callable[[], object]  # the loaded Engine; waits for loading, raises BucketeyeError if it cannot
    recent: RecentResults
    is_ready: Callable[[], bool] = lambda: True
    load_error: Callable[[], BucketeyeError | None] = lambda: None
    stats: Callable[[], dict] = field(default=dict)

    @classmethod
    def for_engine(cls, settings: Settings, engine) -> Service:
        return cls(settings, lambda: engine, RecentResults(settings.dedup_window_s))

    def model_info(self) -> dict:
        """The model's identity when loaded; results of events rejected before load still log."""
        return self.engine().model.info if self.is_ready() else dict(NO_MODEL)


_lock = threading.Lock()
_process: dict = {}


def process_service() -> Service:
    """The serving process's one Service (built in the worker, on first use)."""
    with _lock:
        if "service" not in _process:
            settings = runtime.settings()
            _process["service"] = Service(settings, runtime.engine, RecentResults(settings.dedup_window_s),
                                          runtime.is_ready, runtime.load_error, runtime.stats)
        return _process["service"]
