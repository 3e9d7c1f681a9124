"""The local log sink, standing in for Cloud Logging -> BigQuery: reads the server's
stdout, makes each line a LogEntry (log_entry), keeps what the Terraform sink's filter
keeps, and appends the rows to the warehouse in short batches.

Lines are read as they come (the server never blocks on a full pipe); a writer thread
flushes every `interval_s`. When the warehouse is locked by a reader the batch waits
for the next flush; at shutdown what cannot be written goes to a backlog file that the
next start writes first, so no row is lost."""
from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path

from functions.local.log_entry import entry_from_line, iso, kept_by_sink
from functions.local.warehouse import Warehouse, WarehouseBusy

log = logging.getLogger("bucketeye.local.sink")


class Sink:
    def __init__(self, warehouse: Warehouse, *, backlog: Path, interval_s: float = 0.1, on_rows=None):
        self.warehouse = warehouse
        self.backlog = Path(backlog)
        self.interval_s = interval_s
        self.on_rows = on_rows  # called with the entries just committed
        self.instance_id = secrets.token_hex(16)  # Cloud Run's per-instance label
        self.rows_written = 0
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []
        self._writer: threading.Thread | None = None

    def start(self) -> "Sink":
        self.warehouse.setup()
        self._load_backlog()
        self._writer = threading.Thread(target=self._write_loop, name="bucketeye-sink", daemon=True)
        self._writer.start()
        return self

    def attach(self, stream) -> None:
        """Read a binary stream (the server's stdout) line by line until it closes."""
        thread = threading.Thread(target=self._read, args=(stream,), name="bucketeye-sink-reader", daemon=True)
        self._readers.append(thread)
        thread.start()

    def feed(self, line: str) -> bool:
        """One stdout line; True when the sink's filter keeps it."""
        entry = entry_from_line(line, written=datetime.now(timezone.utc), instance_id=self.instance_id)
        if not kept_by_sink(entry):
            return False
        with self._lock:
            self._pending.append(entry)
        self._wake.set()
        return True

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.feed(raw.decode("utf-8", "replace"))
        stream.close()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush(timeout_s=0.5)
            self._stop.wait(self.interval_s)  # batches, and room for readers in between

    def flush(self, *, timeout_s: float = 15.0) -> bool:
        """Write what is pending; False (rows kept for later) when the warehouse stayed locked."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return True
        received = iso(datetime.now(timezone.utc))
        for entry in batch:
            entry.setdefault("receiveTimestamp", received)
        try:
            self.warehouse.append(batch, timeout_s=timeout_s)
        except WarehouseBusy:
            self._requeue(batch)
            return False
        except Exception as exc:  # not a lock: some entry the warehouse refuses; never block the rest
            log.warning("writing %d rows failed (%s); writing them one by one", len(batch), exc)
            batch = self._salvage(batch)
        self.rows_written += len(batch)
        if self.on_rows:
            try:
                self.on_rows(batch)
            except Exception:
                log.exception("on_rows callback failed")
        return True

    def _salvage(self, batch: list[dict]) -> list[dict]:
        written = []
        for entry in batch:
            try:
                self.warehouse.append([entry])
                written.append(entry)
            except WarehouseBusy:
                self._requeue([entry])
            except Exception as exc:
                rejected = self.backlog.with_name("sink-rejected.jsonl")
                with open(rejected, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"error": str(exc), "entry": entry}, default=str) + "\n")
                log.error("an entry the warehouse refuses was saved to %s: %s", rejected, exc)
        return written

    def _requeue(self, batch: list[dict]) -> None:
        with self._lock:
            self._pending[:0] = batch
        self._wake.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        """After the server exited: read what is left in the pipe, write it, stop."""
        for thread in self._readers:
            thread.join(timeout=timeout_s)
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=60)  # its flush gives up after 0.5 s; then it sees the stop
        if not self.flush(timeout_s=timeout_s):
            self._save_backlog()

    def _save_backlog(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            with open(self.backlog, "a", encoding="utf-8") as handle:
                for entry in batch:
                    handle.write(json.dumps(entry) + "\n")
            log.warning("the warehouse stayed locked: %d rows saved to %s for the next start", len(batch), self.backlog)

    def _load_backlog(self) -> None:
        if not self.backlog.exists():
            return
        entries = []
        for line in self.backlog.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        if entries:
            self.warehouse.append(entries)
            self.rows_written += len(entries)
        self.backlog.unlink()
