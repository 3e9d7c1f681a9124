"""`python main.py demo`: the product end to end on loopback. Real photos go into the
local bucket; the bucket notification goes through the Pub/Sub emulator's push
subscription to the server, which classifies and logs; the sink writes the rows into DuckDB; one SQL query on the
`results` view prints what happened."""
from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.syntax import Syntax

from functions.console.errors import CommandError
from functions.console.ui import console, progress, table
from functions.local import client, lifecycle
from functions.local.defaults import DEFAULT_BUCKET
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from functions.local.ui import result_line, stack_card
from functions.warehouse.store import Warehouse

# Real photographs shipped with scikit-image (skimage/data), each a different ImageNet subject.
PHOTOS = ("chelsea.png", "coffee.png", "camera.png", "motorcycle_left.png", "rocket.jpg", "astronaut.png")

DEMO_SQL = """SELECT object AS file, top_label,
       ROUND(top_score, 3) AS score, ROUND(total_ms, 1) AS latency_ms
FROM results
WHERE uri LIKE '{prefix}%'
ORDER BY file"""

NEXT_STEPS = ("python main.py query \"SELECT jsonPayload.top_label AS label, COUNT(*) AS n "
              "FROM run_googleapis_com_stdout GROUP BY label ORDER BY n DESC\"")


def photo_paths() -> list[Path]:
    spec = importlib.util.find_spec("skimage")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    if folder is None or not all((folder / name).is_file() for name in PHOTOS):
        raise CommandError("the demo photos come with scikit-image, which is not installed here: "
                           "pip install -r requirements-dev.txt (make demo does it)")
    return [folder / name for name in PHOTOS]


def run(state: StateDir, config: StackConfig, *, keep_running: bool) -> int:
    started = time.monotonic()
    photos = photo_paths()
    stack = None
    finished = False
    with lifecycle.sigterm_interrupts():
        try:
            info = state.running_stack()
            if info is None:
                stack = Stack(config, on_rows=(lambda rows: [console.print(result_line(r)) for r in rows])
                              if keep_running else None)
                lifecycle.start(stack)
                info = stack.info
                console.print(f"✓ local stack up in {time.monotonic() - started:.1f} s (state: {state.root})",
                                 markup=False)
            else:
                info = client.running(state)
                console.print(f"using the local stack already running on {state.root}", markup=False)
            client.check_bucket(info, DEFAULT_BUCKET)
            run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            prefix = f"demo/{run_id}/"
            prefix_uri = f"gs://{DEFAULT_BUCKET}/{prefix}"
            pairs = [(str(path), prefix + path.name) for path in photos]

            t_upload = time.monotonic()
            with progress() as bar:
                task = bar.add_task(f"uploading to gs://{DEFAULT_BUCKET}", total=len(pairs))
                uploaded = client.upload(info, pairs, DEFAULT_BUCKET, advance=lambda _: bar.advance(task))
            warehouse = Warehouse(state.warehouse)
            client.wait_for_rows(warehouse, uploaded, failure=stack.failure if stack else None, state=state)
            elapsed = time.monotonic() - t_upload

            sql = DEMO_SQL.format(prefix=prefix_uri)
            columns, rows = warehouse.query(sql, dialect="bigquery")
            console.print()
            console.print(table(columns, rows, title=f"{len(rows)} photos, classified and queried"))
            console.print(f"upload → notification → Pub/Sub emulator → push → classified → logged → row, "
                             f"in {elapsed:.1f} s. "
                             "The SQL that produced the table:", soft_wrap=True)
            console.print(Syntax(sql, "sql", theme="ansi_dark", background_color="default", word_wrap=True))
            console.print(f"\nIn {state.warehouse}: the sink's table run_googleapis_com_stdout and the views "
                             "results and predictions. Try:", soft_wrap=True)
            console.print(f"  {NEXT_STEPS}", soft_wrap=True, markup=False)
            finished = True
            if keep_running and stack is not None:
                console.print(stack_card(stack.info, state.root))
                lifecycle.wait_until_stopped(stack)
        except KeyboardInterrupt:
            pass
        finally:
            if stack is not None:
                lifecycle.stop(stack)
    return 0 if finished else 130
