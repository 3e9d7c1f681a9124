"""Figure 3: end to end through the local stack — upload → bucket notification → Pub/Sub
emulator → push → classify → log line → row in DuckDB — against the serial bound
1/(1/d + 1/i).

Rows are counted as the sink commits them (its on_rows callback), so the clock stops at
the last commit, then one query checks that they are all in the table. The CPU each
process used meanwhile says where the time went: the server (fetch, decode, inference,
HTTP), the GCS emulator (storing, serving reads, publishing notifications), the Pub/Sub
emulator (its Java process: topics, pushes) and this process (the
uploads and the sink)."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.cpu import cpu_seconds
from functions.local import gcs
from functions.local.emulator import free_port
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir

BUCKET = "bench-uploads"
PREFIX = f"gs://{BUCKET}/e2e/"


class RowCounter:
    def __init__(self, expected: int):
        self.expected, self.rows = expected, 0
        self.done = threading.Event()

    def __call__(self, entries: list[dict]) -> None:
        for entry in entries:
            payload = entry.get("jsonPayload") or {}
            if payload.get("status") == "ok" and str((payload.get("source") or {}).get("uri", "")).startswith(PREFIX):
                self.rows += 1
        if self.rows >= self.expected:
            self.done.set()


def throughput(images: list[bytes], workdir: Path, timeout_s: float = 300.0) -> dict:
    """Start a stack, upload every image at once, and time until all rows are in the table."""
    state = StateDir(workdir / "e2e-state").ensure()
    counter = RowCounter(len(images))
    stack = Stack(StackConfig(state=state, port=free_port(), gcs_port=free_port(), pubsub_port=free_port(),
                              buckets=(BUCKET,)), on_rows=counter).start()
    try:
        bucket = gcs.client(stack.emulator.url, stack.emulator.cert).bucket(BUCKET)
        # This process's own CPU only: the server and both emulators are its children.
        processes = {"server": (stack.server.process.pid, True), "gcs_emulator": (stack.emulator.pid, True),
                     "pubsub_emulator": (stack.pubsub_emulator.pid, True), "uploads_and_sink": (os.getpid(), False)}
        cpu_before = {name: cpu_seconds(pid, tree=tree) for name, (pid, tree) in processes.items()}
        started = time.perf_counter()

        def upload(i: int) -> None:
            bucket.blob(f"e2e/{i:05d}.jpg").upload_from_string(images[i], content_type="image/jpeg")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(upload, range(len(images))))
        uploaded = time.perf_counter()
        counter.done.wait(timeout_s)
        elapsed = time.perf_counter() - started
        cpu_ms = {name: 1000.0 * (cpu_seconds(pid, tree=tree) - cpu_before[name]) / len(images)
                  for name, (pid, tree) in processes.items()}
        rows = stack.warehouse.query("SELECT COUNT(*) FROM results WHERE uri LIKE ? AND status = 'ok'",
                                     [PREFIX + "%"])[1][0][0]
    finally:
        stack.stop()
    return {"images": len(images), "rows": rows, "seconds": elapsed, "upload_seconds": uploaded - started,
            "img_s": rows / elapsed, "cpu_ms_per_image": cpu_ms}
