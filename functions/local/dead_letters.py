"""The dead-letter file: one JSON line per delivery that failed every attempt, with the
cause (last status and body, or the connection error) and the request itself, so
`python main.py replay-dead-letters` can send it again."""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from functions.local.delivery_state import Delivery, DeliveryState
from functions.local.messages import Request

MAX_BODY_CHARS = 4000


class DeadLetters:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, delivery: Delivery, *, status: int | None, body: str | None, error: str | None) -> dict:
        record = {
            "delivery_id": delivery.id,
            "dead_lettered_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "kind": delivery.kind,
            "description": delivery.description,
            "attempts": delivery.attempts,
            "cause": {"status": status, "body": (body or "")[:MAX_BODY_CHARS] or None, "error": error},
            "request": {"route": delivery.route, "headers": delivery.headers,
                        "body": delivery.body.decode("utf-8", "replace")},
        }
        with self._locked(), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def replay(self, state: DeliveryState) -> list[tuple[dict, str]]:
        """Queue every dead letter again and empty the file; returns (record, outcome) pairs."""
        outcomes = []
        with self._locked():
            if not self.path.exists():
                return []
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    request = Request(record["kind"], record["request"]["route"], record["request"]["headers"],
                                      record["request"]["body"].encode("utf-8"), record["description"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    kept.append(line)  # unreadable: leave it for a person to look at
                    continue
                outcomes.append((record, state.requeue(record.get("delivery_id"), request)))
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        return outcomes
