"""New objects in the watched buckets -> queued `object.finalized` events.

fake-gcs-server can only announce changes to a real Pub/Sub, so the bridge polls the
JSON API listing instead; each (bucket, name, generation) it has not seen before is
recorded and its event queued in the same transaction (delivery_state)."""
from __future__ import annotations

import logging
import threading

from functions.local import gcs, messages
from functions.local.delivery_state import DeliveryState

log = logging.getLogger("bucketeye.local.watcher")


class ObjectWatcher:
    def __init__(self, gcs_url: str, buckets, state: DeliveryState, *, interval_s: float = 0.25, on_new=None):
        self.gcs_url = gcs_url
        self.buckets = tuple(buckets)
        self.state = state
        self.interval_s = interval_s
        self.on_new = on_new  # called (with the count) after new objects were queued
        self._known: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._known = self.state.known_objects()
        self._client = gcs.client(self.gcs_url)
        self._thread = threading.Thread(target=self._run, name="bucketeye-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def poll_once(self) -> int:
        new = []
        try:
            for bucket in self.buckets:
                for blob in self._client.list_blobs(bucket, timeout=10):
                    resource = blob._properties  # the JSON API's object resource, as listed
                    key = (bucket, resource["name"], str(resource.get("generation", "")))
                    if key not in self._known:
                        new.append((key, messages.storage_event(resource)))
        except Exception as exc:  # the emulator stopping or restarting must not kill the bridge
            if not self._failing:
                log.warning("listing the buckets failed (will keep trying): %s", exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("listing the buckets works again")
        self._failing = False
        if not new:
            return 0
        try:
            added = self.state.add_objects(new)
        except Exception:  # not recorded, so not known: the next poll tries again
            log.exception("recording %d new objects failed", len(new))
            return 0
        self._known.update(key for key, _ in new)
        if added and self.on_new:
            self.on_new(added)
        return added
