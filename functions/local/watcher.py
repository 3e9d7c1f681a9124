"""New objects in the watched buckets -> queued `object.finalized` events.

fake-gcs-server can only announce changes to a real Pub/Sub, so the stack's guard in
front of it announces every object a write stores (announce), and the watcher's thread
records them in batches. A sweep that lists the buckets every `interval_s` catches any
write that was not announced (and objects from before a restart). Each (bucket, name,
generation) not seen before is recorded and its event queued in the same transaction
(delivery_state), so an object announced and also listed is sent once."""
from __future__ import annotations

import logging
import queue
import threading
import time

from functions.local import gcs, messages
from functions.local.delivery_state import DeliveryState

log = logging.getLogger("bucketeye.local.watcher")

_WAKE = object()


class ObjectWatcher:
    def __init__(self, gcs_url: str, buckets, state: DeliveryState, *, interval_s: float = 1.0, on_new=None):
        self.gcs_url = gcs_url
        self.buckets = tuple(buckets)
        self.state = state
        self.interval_s = interval_s
        self.on_new = on_new  # called (with the count) after new objects were queued
        self._known: set[tuple[str, str, str]] = set()
        self._announced: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.sweeps = 0  # sweeps done (listings that worked)

    def start(self) -> None:
        self._known = self.state.known_objects()
        self._client = gcs.client(self.gcs_url)
        self._thread = threading.Thread(target=self._run, name="bucketeye-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._announced.put(_WAKE)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def announce(self, resource: dict) -> None:
        """An object just stored (its JSON API resource); any thread may call this."""
        self._announced.put(resource)

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            wait = next_sweep - time.monotonic()
            if wait <= 0:
                self.poll_once()
                next_sweep = time.monotonic() + self.interval_s
                continue
            try:
                first = self._announced.get(timeout=wait)
            except queue.Empty:
                continue
            resources = [first]
            while True:  # everything announced meanwhile goes into one transaction
                try:
                    resources.append(self._announced.get_nowait())
                except queue.Empty:
                    break
            self._record([r for r in resources if r is not _WAKE])

    def poll_once(self) -> int:
        """Sweep: list every watched bucket and record what is new."""
        resources = []
        try:
            for bucket in self.buckets:
                for blob in self._client.list_blobs(bucket, timeout=10):
                    resources.append(blob._properties)  # the JSON API's object resource, as listed
        except Exception as exc:  # the emulator stopping or restarting must not kill the bridge
            if not self._failing:
                log.warning("listing the buckets failed (will keep trying): %s", exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("listing the buckets works again")
        self._failing = False
        self.sweeps += 1
        return self._record(resources)

    def _record(self, resources: list[dict]) -> int:
        new = {}
        for resource in resources:
            key = (resource["bucket"], resource["name"], str(resource.get("generation", "")))
            if key[0] in self.buckets and key not in self._known:
                new[key] = messages.storage_event(resource)
        if not new:
            return 0
        try:
            added = self.state.add_objects(list(new.items()))
        except Exception:  # not recorded, so not known: the next sweep tries again
            log.exception("recording %d new objects failed", len(new))
            return 0
        self._known.update(new)
        if added and self.on_new:
            self.on_new(added)
        return added
