"""The local log sink, standing in for Cloud Logging -> BigQuery: reads the server's
stdout, makes each line a LogEntry (log_entry), keeps what the Terraform sink's filter
keeps, and appends the rows to the warehouse in short batches.

Lines are read as they come (the server never blocks on a full pipe); a writer thread
flushes every `interval_s`. Opening the warehouse costs ~20 CPU-ms (DuckDB builds a
database instance each time), so while rows keep coming one connection serves every
flush for up to `hold_s`, then is let go for a turn so readers in other processes get in.
When the warehouse is locked by a reader the rows wait for the next turn; at shutdown
what cannot be written goes to a backlog file that the next start writes first, so no
row is lost."""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from functions.warehouse.log_entry import entry_from_line, iso, kept_by_sink
from functions.warehouse.store import Warehouse, WarehouseBusy

log = logging.getLogger("bucketeye.local.sink")


class Sink:
    def __init__(self, warehouse: Warehouse, *, backlog: Path, interval_s: float = 0.1, hold_s: float = 1.0,
                 idle_s: float = 0.25, on_rows=None):
        self.warehouse = warehouse
        self.backlog = Path(backlog)
        self.interval_s = interval_s
        self.hold_s = hold_s
        self.idle_s = idle_s
        self.on_rows = on_rows  # called with the entries just committed
        self.instance_id = secrets.token_hex(16)  # Cloud Run's per-instance label
        self.rows_written = 0
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []
        self._writer: threading.Thread | None = None
        self._failing = False

    def start(self) -> Sink:
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
        entry = entry_from_line(line, written=datetime.now(UTC), instance_id=self.instance_id)
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
            self._write_turn()
            self._stop.wait(self.interval_s)  # batches, and room for readers in between

    def _write_turn(self) -> None:
        """Flush on one connection while rows keep coming (none for `idle_s` ends the turn),
        for at most `hold_s`."""
        try:
            with self.warehouse.connect(read_only=False, timeout_s=0.5) as con:
                until = time.monotonic() + self.hold_s
                self._flush_into(con)
                while time.monotonic() < until and not self._stop.is_set():
                    if not self._wake.wait(self.idle_s):
                        break
                    self._wake.clear()
                    self._stop.wait(self.interval_s)  # let a batch gather
                    self._flush_into(con)
            self._failing = False
        except WarehouseBusy:
            self._wake.set()  # a reader has it: the rows wait for the next turn
        except Exception as exc:  # the file cannot be opened at all: keep the rows (backlog at stop)
            if not self._failing:
                log.error("the warehouse cannot be written (%s); rows are kept until it can", exc)
            self._failing = True

    def flush(self, *, timeout_s: float = 15.0) -> bool:
        """Write what is pending; False (rows kept for later) when the warehouse stayed locked."""
        with self._lock:
            if not self._pending:
                return True
        try:
            with self.warehouse.connect(read_only=False, timeout_s=timeout_s) as con:
                self._flush_into(con)
        except WarehouseBusy:
            return False
        except Exception as exc:  # cannot be opened at all
            log.error("the warehouse cannot be written (%s)", exc)
            return False
        return True

    def _flush_into(self, con) -> int:
        """Write what is pending through an open connection; returns how many rows."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        received = iso(datetime.now(UTC))
        for entry in batch:
            entry.setdefault("receiveTimestamp", received)
        try:
            self.warehouse.insert(con, batch)
        except Exception as exc:  # some entry the warehouse refuses; never block the rest
            log.warning("writing %d rows failed (%s); writing them one by one", len(batch), exc)
            batch = self._salvage(con, batch)
        self.rows_written += len(batch)
        if self.on_rows:
            try:
                self.on_rows(batch)
            except Exception:
                log.exception("on_rows callback failed")
        return len(batch)

    def _salvage(self, con, batch: list[dict]) -> list[dict]:
        written = []
        for entry in batch:
            try:
                self.warehouse.insert(con, [entry])
                written.append(entry)
            except Exception as exc:
                rejected = self.backlog.with_name("sink-rejected.jsonl")
                with open(rejected, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"error": str(exc), "entry": entry}, default=str) + "\n")
                log.error("an entry the warehouse refuses was saved to %s: %s", rejected, exc)
        return written

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
