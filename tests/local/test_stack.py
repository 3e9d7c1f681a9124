"""The whole stack as people run it: `python main.py up` in one process (its own Pub/Sub
emulator), the other commands in others; uploads and publishes reach the table through
the emulator's push subscriptions; SQL runs while the stack writes; a restart re-sends
nothing; clear errors, never tracebacks."""
from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys

import pytest
import requests

from functions.local.defaults import DEFAULT_BUCKET
from functions.local.emulator import free_port
from functions.local.statedir import StateDir, read_json
from functions.warehouse.store import Warehouse
from tests.local.conftest import PHOTOS, REPO, run_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.functional  # real servers on loopback


class UpProcess:
    def __init__(self, state: StateDir, port: int, gcs_port: int, pubsub_port: int, *extra):
        self.state = state
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "up", "--state-dir", str(state.root), "--port", str(port),
             "--gcs-port", str(gcs_port), "--pubsub-port", str(pubsub_port), *extra],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: state.stack_info.exists() or self.process.poll() is not None, timeout=120,
                 what="the stack to come up")
        assert self.process.poll() is None, self.process.stderr.read()

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = StateDir(tmp_path_factory.mktemp("stack") / "state").ensure()
    ports = free_port(), free_port(), free_port()
    up = UpProcess(state, *ports, "--bucket", "second-bucket")
    yield up, ports
    if up.process.poll() is None:
        up.stop()


def rows(state: StateDir, sql: str, params=None):
    return Warehouse(state.warehouse).query(sql, params)[1]


def landed(state: StateDir, uri: str) -> list:
    return rows(state, "SELECT status, top_label, trigger FROM results WHERE uri = ? OR key = ?", [uri, uri])


def test_uploads_reach_the_table_and_sql_runs_while_the_stack_writes(stack):
    up, _ = stack
    state = up.state
    card = read_json(state.stack_info)
    assert card["gcs_url"].startswith("https://") and card["gcs_cert"] == str(state.tls / "cert.pem")  # see test_cross_origin
    upload = run_cli("upload", PHOTOS / "chelsea.png", PHOTOS / "coffee.png", "--prefix", "t1/", state=state)
    assert upload.returncode == 0, upload.stderr
    wait_for(lambda: landed(state, f"gs://{DEFAULT_BUCKET}/t1/chelsea.png")
             and landed(state, f"gs://{DEFAULT_BUCKET}/t1/coffee.png"), what="both rows")
    assert landed(state, f"gs://{DEFAULT_BUCKET}/t1/coffee.png") == [("ok", "espresso", "storage")]

    other = run_cli("upload", PHOTOS / "camera.png", "--bucket", "second-bucket", "--wait", state=state)
    assert other.returncode == 0, other.stderr
    assert "gs://second-bucket" in other.stdout and "camera.png" in other.stdout and "tripod" in other.stdout
    assert landed(state, "gs://second-bucket/camera.png") == [("ok", "tripod", "storage")]

    query = run_cli("query", "SELECT jsonPayload.top_label AS label, COUNT(*) AS n FROM run_googleapis_com_stdout "
                    "GROUP BY label ORDER BY n DESC", state=state)
    assert query.returncode == 0, query.stderr
    assert "espresso" in query.stdout and "tiger cat" in query.stdout
    results = run_cli("results", "--limit", "2", state=state)
    assert results.returncode == 0 and "2 rows" in results.stdout
    # the diagnostic line the logging library prints first never reaches the table
    assert rows(state, "SELECT COUNT(*) FROM run_googleapis_com_stdout WHERE jsonPayload.app IS NULL") == [(0,)]


def test_publishes_reach_the_table(stack):
    up, _ = stack
    state = up.state
    assert run_cli("upload", PHOTOS / "rocket.jpg", "--prefix", "t2/", state=state).returncode == 0
    uri = f"gs://{DEFAULT_BUCKET}/t2/rocket.jpg"
    published = run_cli("publish", uri, "--image", PHOTOS / "motorcycle_left.png", state=state)
    assert published.returncode == 0, published.stderr
    project = read_json(state.stack_info)["project"]
    assert "delivers it now" in published.stdout and f"projects/{project}/topics/bucketeye-requests" in published.stdout
    wait_for(lambda: ("ok", "missile", "pubsub") in landed(state, uri), what="the published URI's row")
    wait_for(lambda: landed(state, "motorcycle_left.png") == [("ok", "moped", "pubsub")], what="the inline image's row")


def test_the_pubsub_emulator_serves_the_stacks_unguessable_project_alone(stack):
    """The emulator answers any web origin (its CORS preflight allows every one), so the
    stack names a random project and starts it serving that project only: a page that knows
    the topic names but not the stack's card can neither publish nor subscribe."""
    up, _ = stack
    info = read_json(up.state.stack_info)
    assert re.fullmatch(r"local-[a-z0-9]{24}", info["project"]), info["project"]
    base, origin = f"http://{info['pubsub_host']}/v1", {"Origin": "http://page.example"}
    preflight = requests.options(f"{base}/projects/local/topics/bucketeye-requests:publish", timeout=10,
                                 headers={**origin, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "content-type"})
    assert preflight.headers.get("access-control-allow-origin") == "http://page.example"  # why the project matters
    message = {"messages": [{"data": base64.b64encode(b"gs://local-bucketeye-uploads/x.jpg").decode()}]}
    guesses = ["local", "demo", "test-project", info["project"][:-1] + "x"]
    for project in guesses:
        published = requests.post(f"{base}/projects/{project}/topics/bucketeye-requests:publish", json=message,
                                  headers=origin, timeout=10)
        subscribed = requests.put(f"{base}/projects/{project}/subscriptions/page-pull", headers=origin, timeout=10,
                                  json={"topic": f"projects/{project}/topics/bucketeye-requests"})
        assert (published.status_code, subscribed.status_code) == (404, 404), (project, published.text)
        assert "out of valid projects" in published.text
    # the stack's own project answers the same request: it is the project that is refused, not the call
    listed = requests.get(f"{base}/projects/{info['project']}/topics", headers=origin, timeout=10)
    assert listed.status_code == 200 and "bucketeye-requests" in listed.text


def test_clear_errors_never_tracebacks(stack, tmp_path):
    up, (port, gcs_port, pubsub_port) = stack
    unknown = run_cli("upload", PHOTOS / "coffee.png", "--bucket", "nope", state=up.state)
    assert unknown.returncode == 2 and "unknown bucket 'nope'" in unknown.stderr and "--bucket nope" in unknown.stderr

    down = StateDir(tmp_path / "elsewhere")
    not_up = run_cli("upload", PHOTOS / "coffee.png", state=down)
    assert not_up.returncode == 1 and "python main.py up" in not_up.stderr

    busy = run_cli("up", "--port", port, "--gcs-port", free_port(), "--pubsub-port", free_port(), state=down)
    assert busy.returncode == 1 and f"port {port}" in busy.stderr and "--port" in busy.stderr
    busy = run_cli("up", "--port", free_port(), "--gcs-port", free_port(), "--pubsub-port", pubsub_port, state=down)
    assert busy.returncode == 1 and f"port {pubsub_port}" in busy.stderr and "--pubsub-port" in busy.stderr

    twice = run_cli("up", "--port", free_port(), "--gcs-port", free_port(), "--pubsub-port", free_port(),
                    state=up.state)
    assert twice.returncode == 1 and "already running" in twice.stderr

    missing = run_cli("upload", tmp_path / "no-such.jpg", state=up.state)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    not_published = run_cli("publish", "--image", PHOTOS / "coffee.png", state=down)
    assert not_published.returncode == 1 and "python main.py up" in not_published.stderr
    for result in (unknown, not_up, busy, twice, missing, not_published):
        assert "Traceback" not in result.stderr


def test_classify_from_sql_over_the_local_object_table(stack):
    """The issue's SQL shape on the DuckDB file: a local object table and classify(uri),
    which calls the running server with BigQuery's remote-function protocol."""
    up, _ = stack
    state = up.state
    upload = run_cli("upload", PHOTOS / "chelsea.png", PHOTOS / "coffee.png", "--prefix", "sql/", state=state)
    assert upload.returncode == 0, upload.stderr
    query = run_cli("query", "SELECT uri, json_extract_string(classify(uri), '$.top_label') AS label "
                    "FROM uploads_objects WHERE uri LIKE '%/sql/%' ORDER BY uri", state=state)
    assert query.returncode == 0, query.stderr
    assert "espresso" in query.stdout and "tiger cat" in query.stdout and "2 rows" in query.stdout
    verbatim = run_cli("query", "SELECT uri, classify(uri) FROM uploads_objects WHERE uri LIKE '%/sql/coffee%'",
                       state=state)
    assert verbatim.returncode == 0 and "1 row" in verbatim.stdout, verbatim.stderr
    # every call is also a result record, so the sink and SQL stay the single source of truth
    wait_for(lambda: rows(state, "SELECT COUNT(*) FROM results WHERE trigger = 'bigquery' AND uri LIKE '%/sql/%'")
             [0][0] >= 2, what="the remote calls' result rows")
    # a bad row answers with its error instead of failing the whole query, as in BigQuery
    bad = run_cli("query", "SELECT json_extract_string(classify_top_k(uri, 0), '$.error.code') AS code "
                  "FROM uploads_objects WHERE uri LIKE '%/sql/%'", state=state)
    assert bad.returncode == 0 and bad.stdout.count("bad_message") == 2, bad.stdout + bad.stderr


def test_classify_from_sql_needs_the_stack(tmp_path):
    state = StateDir(tmp_path / "idle").ensure()
    result = run_cli("query", "SELECT classify('gs://b/o.jpg')", state=state)
    assert result.returncode != 0 and "python main.py up" in (result.stderr + result.stdout)
    assert "Traceback" not in result.stderr


def test_sigterm_stops_every_part_and_a_restart_resends_nothing(stack):
    up, ports = stack
    state = up.state
    assert run_cli("upload", PHOTOS / "astronaut.png", "--prefix", "t3/", state=state).returncode == 0
    wait_for(lambda: landed(state, f"gs://{DEFAULT_BUCKET}/t3/astronaut.png"), what="the row")

    code, out, err = up.stop()
    assert code == 0, err
    assert "local stack stopped" in out and "Traceback" not in err
    assert not state.stack_info.exists() and state.running_stack() is None
    for freed in ports:  # every part is gone, the Pub/Sub emulator's java too: the ports can be bound again
        import socket
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", freed))
    before = rows(state, "SELECT COUNT(*) FROM run_googleapis_com_stdout")[0][0]

    again = UpProcess(state, *ports, "--bucket", "second-bucket")
    try:
        assert run_cli("upload", PHOTOS / "coffee.png", "--prefix", "t4/", state=state).returncode == 0
        wait_for(lambda: landed(state, f"gs://{DEFAULT_BUCKET}/t4/coffee.png"), what="a new upload's row")
        after = rows(state, "SELECT COUNT(*) FROM run_googleapis_com_stdout")[0][0]
        assert after == before + 1  # what was delivered before the restart was not sent again
    finally:
        code, _, err = again.stop()
    assert code == 0, err


def test_the_demo_takes_a_free_port_when_a_default_one_is_taken(tmp_path):
    import argparse
    import socket

    from functions.local.commands import _config
    from functions.local.defaults import DEFAULT_PORT
    from functions.local.stack import port_is_free
    with socket.socket() as taken:
        if port_is_free(DEFAULT_PORT):
            taken.bind(("127.0.0.1", DEFAULT_PORT))
            taken.listen()
        args = argparse.Namespace(port=None, gcs_port=None, pubsub_port=None, buckets=[], state_dir=str(tmp_path))
        config = _config(args, any_free_port=True)
        assert config.port != DEFAULT_PORT and port_is_free(config.port)
        assert _config(args).port == DEFAULT_PORT  # `up` keeps its fixed port (and says when it is taken)

