"""Figure 3: end to end through the local stack — upload → finalize event → classify →
log line → row in DuckDB — against the serial bound 1/(1/d + 1/i)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from functions.local import gcs
from functions.local.emulator import free_port
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir

BUCKET = "bench-uploads"


def throughput(images: list[bytes], workdir: Path, timeout_s: float = 300.0) -> dict:
    """Start a stack, upload every image at once, and time until all rows are in the table."""
    state = StateDir(workdir / "e2e-state").ensure()
    stack = Stack(StackConfig(state=state, port=free_port(), gcs_port=free_port(), buckets=(BUCKET,))).start()
    try:
        bucket = gcs.client(stack.emulator.url).bucket(BUCKET)
        started = time.perf_counter()

        def upload(i: int) -> None:
            bucket.blob(f"e2e/{i:05d}.jpg").upload_from_string(images[i], content_type="image/jpeg")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(upload, range(len(images))))
        uploaded = time.perf_counter()
        deadline = started + timeout_s
        rows = 0
        while time.perf_counter() < deadline:
            if state.warehouse.exists():
                rows = stack.warehouse.query("SELECT COUNT(*) FROM results WHERE uri LIKE ? AND status = 'ok'",
                                             [f"gs://{BUCKET}/e2e/%"])[1][0][0]
                if rows >= len(images):
                    break
            time.sleep(0.5)  # each look opens the database: do not steal the CPU being measured
        elapsed = time.perf_counter() - started
    finally:
        stack.stop()
    return {"images": len(images), "rows": rows, "seconds": elapsed, "upload_seconds": uploaded - started,
            "img_s": rows / elapsed}
