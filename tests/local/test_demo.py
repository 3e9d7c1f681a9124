"""`python main.py demo` end to end, as `make demo` runs it: a subprocess that starts
the stack, uploads real photos, waits for their rows, prints the table and its SQL,
stops everything and exits 0."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from functions.local.demo import PHOTOS as DEMO_PHOTOS
from functions.local.emulator import free_port
from functions.local.statedir import StateDir
from functions.warehouse.store import Warehouse
from tests.local.conftest import PHOTOS, REPO, run_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.functional  # real servers on loopback


def demo_argv(state: StateDir, *extra) -> list[str]:
    return [sys.executable, "main.py", "demo", "--state-dir", str(state.root), "--port", str(free_port()),
            "--gcs-port", str(free_port()), "--pubsub-port", str(free_port()), *extra]


def test_demo_runs_end_to_end_and_exits_0(state):
    started = time.monotonic()
    result = subprocess.run(demo_argv(state), cwd=REPO, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for header in ("file", "top_label", "score", "latency_ms"):
        assert header in out
    for photo in DEMO_PHOTOS:
        assert photo in out
    assert "tiger cat" in out and "espresso" in out  # chelsea.png and coffee.png, really classified
    assert "FROM results" in out and "WHERE uri LIKE 'gs://local-bucketeye-uploads/demo/" in out
    assert "Traceback" not in result.stderr
    assert state.running_stack() is None and not state.stack_info.exists()  # stopped cleanly
    print(f"\n`python main.py demo` took {elapsed:.1f} s")

    # The rows stay: the printed SQL gives the same table afterwards.
    sql = out[out.index("SELECT object AS file"):out.index("ORDER BY file") + len("ORDER BY file")]
    again = run_cli("query", sql, state=state)
    assert again.returncode == 0 and all(photo in again.stdout for photo in DEMO_PHOTOS)


def test_demo_keep_running_leaves_the_stack_up_until_ctrl_c(state):
    process = subprocess.Popen(demo_argv(state, "--keep-running"), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: state.stack_info.exists(), timeout=120, what="the stack")
        warehouse = Warehouse(state.warehouse)
        wait_for(lambda: warehouse.path.exists() and warehouse.query(
            "SELECT COUNT(*) FROM results WHERE object LIKE 'demo/%'")[1][0][0] == len(DEMO_PHOTOS),
            timeout=120, interval=0.2, what="the demo rows")
        upload = run_cli("upload", PHOTOS / "coffee.png", "--prefix", "more/", state=state)
        assert upload.returncode == 0, upload.stderr
        wait_for(lambda: warehouse.query("SELECT top_label FROM results WHERE object = 'more/coffee.png'")[1],
                 interval=0.2, what="the extra upload's row")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "more/coffee.png" in out  # the running stack printed the new result as it landed
    assert "Traceback" not in err and state.running_stack() is None
