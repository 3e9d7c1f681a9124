"""The local sink and the DuckDB warehouse: the Terraform sink's filter, BigQuery's
table shape, the README's SQL, schema growth, and a reader and a writer in two
processes at once."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest

from functions.warehouse import bq_sql, structure
from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse
from tests.local.conftest import REPO

DIAGNOSTIC = json.dumps({"logging.googleapis.com/diagnostic": {"instrumentation_source": [{"name": "python"}]},
                         "severity": "INFO"})
README_SQL = ("SELECT jsonPayload.top_label AS label, COUNT(*) AS n FROM run_googleapis_com_stdout "
              "GROUP BY label ORDER BY n DESC")


def result_line(result_id="r1", label="tabby", score=0.61, generation="7", **extra) -> str:
    """A line as the server prints it (shared.result_log through StructuredLogHandler)."""
    record = {"app": "bucketeye", "schema_version": 1, "result_id": result_id, "status": "ok",
              "source": {"trigger": "storage", "uri": f"gs://b/{result_id}.jpg", "bucket": "b",
                         "object": f"{result_id}.jpg", "generation": generation, "size_bytes": 1234},
              "image": {"format": "JPEG", "width": 640, "height": 480},
              "model": {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"},
              "predictions": [{"label": label, "label_id": 281, "score": score},
                              {"label": "lynx", "label_id": 287, "score": 0.1}],
              "detections": [], "top_label": label, "top_score": score,
              "timings_ms": {"fetch": 1.0, "decode": 2.0, "queue": 0.1, "inference": 5.0, "total": 8.1},
              "error": None, "message": f"gs://b/{result_id}.jpg: {label}", "severity": "INFO",
              "logging.googleapis.com/labels": {"python_logger": "bucketeye.results"},
              "logging.googleapis.com/trace": "", "logging.googleapis.com/spanId": "",
              "logging.googleapis.com/trace_sampled": False,
              "logging.googleapis.com/sourceLocation": {"line": 60, "file": "result_log.py", "function": "log_result"},
              "httpRequest": {}, "logging.googleapis.com/insertId": result_id}
    record.update(extra)
    return json.dumps(record)


@pytest.fixture()
def sink(state):
    running = Sink(Warehouse(state.warehouse), backlog=state.sink_backlog, interval_s=0.01).start()
    yield running
    running.stop()


def feed(sink: Sink, *lines: str) -> None:
    for line in lines:
        sink.feed(line)
    assert sink.flush()


def test_the_sink_keeps_exactly_what_the_terraform_filter_keeps(sink, state):
    feed(sink, DIAGNOSTIC, "[INFO] Booting worker with pid: 12", result_line(),
         json.dumps({"app": "other", "result_id": "x"}))
    wh = Warehouse(state.warehouse)
    _, rows = wh.query("SELECT logName, resource.type, resource.labels.service_name, severity, insertId, "
                       "labels.python_logger, labels.instanceId, trace, sourceLocation.line, typeof(timestamp), "
                       "jsonPayload.app, jsonPayload.source.size_bytes FROM run_googleapis_com_stdout")
    assert len(rows) == 1
    log_name, resource_type, service, severity, insert_id, logger, instance, trace, line, ts_type, app, size = rows[0]
    assert log_name == "projects/local/logs/run.googleapis.com%2Fstdout"
    assert (resource_type, service, severity, insert_id) == ("cloud_run_revision", "bucketeye", "INFO", "r1")
    assert logger == "bucketeye.results" and len(instance) == 32
    assert trace is None and line == 60 and ts_type == "TIMESTAMP"
    assert app == "bucketeye" and size == 1234.0  # JSON numbers are doubles, as in the BigQuery export


def test_the_readme_sql_and_the_views_run(sink, state):
    feed(sink, result_line("r1", "tabby"), result_line("r2", "tabby"), result_line("r3", "espresso", 0.9),
         result_line("r1", "tabby", 0.7))  # r1 again: a redelivery, logged twice
    wh = Warehouse(state.warehouse)
    assert wh.query(README_SQL, dialect="bigquery")[1] == [("tabby", 3), ("espresso", 1)]
    # the README's dedup query, BigQuery spelling and all
    columns, rows = wh.query("SELECT * FROM `PROJECT.bucketeye.run_googleapis_com_stdout` "
                             "WHERE jsonPayload.app = 'bucketeye' QUALIFY ROW_NUMBER() OVER "
                             "(PARTITION BY jsonPayload.result_id ORDER BY timestamp DESC) = 1", dialect="bigquery")
    assert len(rows) == 3 and "jsonPayload" in columns
    _, rows = wh.query("SELECT result_id, top_label, top_score, image_width, size_bytes FROM results ORDER BY result_id")
    assert rows == [("r1", "tabby", 0.7, 640, 1234), ("r2", "tabby", 0.61, 640, 1234), ("r3", "espresso", 0.9, 640, 1234)]
    _, rows = wh.query("SELECT rank, label, label_id FROM predictions WHERE result_id = 'r3' ORDER BY rank")
    assert rows == [(1, "espresso", 281), (2, "lynx", 287)]


def test_the_views_come_from_infra_sql(state, caplog):
    wh = Warehouse(state.warehouse)
    for name in ("results", "predictions"):
        assert wh.view_sql(name) is not None, f"infra/sql/{name}.sql is missing"
    wh.setup()
    assert "built-in" not in caplog.text  # infra's SQL ran on DuckDB; no fallback was needed
    with wh.connect(read_only=True) as con:
        sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'results'").fetchone()[0]
    assert "QUALIFY" in sql.upper()


def test_a_new_payload_field_adds_a_column_and_old_rows_read_null(sink, state):
    feed(sink, result_line("old"))
    feed(sink, result_line("new", Faces={"Count": 2, "Kinds": ["smile"]}, dominant_color="red"))
    wh = Warehouse(state.warehouse)
    _, rows = wh.query("SELECT jsonPayload.result_id, jsonPayload.faces.count, jsonPayload.faces.kinds, "
                       "jsonPayload.dominant_color FROM run_googleapis_com_stdout ORDER BY 1")
    assert rows == [("new", 2.0, ["smile"], "red"), ("old", None, None, None)]
    _, described = wh.query("DESCRIBE run_googleapis_com_stdout")
    payload_type = dict((r[0], r[1]) for r in described)["jsonPayload"]
    assert "faces STRUCT(count DOUBLE, kinds VARCHAR[])" in payload_type and "dominant_color VARCHAR" in payload_type
    # a field keeps its first type: a later string in a number column reads NULL, the insert still works
    feed(sink, result_line("odd", top_score="high"))
    assert wh.query("SELECT jsonPayload.top_score FROM run_googleapis_com_stdout "
                    "WHERE jsonPayload.result_id = 'odd'")[1] == [(None,)]
    # and the columns survive a restart of the sink
    sink.stop()
    Sink(Warehouse(state.warehouse), backlog=state.sink_backlog).start().stop()
    assert wh.query("SELECT COUNT(jsonPayload.dominant_color) FROM run_googleapis_com_stdout")[1] == [(1,)]


def test_not_a_number_never_breaks_an_insert(sink, state):
    feed(sink, result_line("nan", top_score=float("nan")))
    assert Warehouse(state.warehouse).query("SELECT jsonPayload.top_score FROM run_googleapis_com_stdout")[1] == [(None,)]


WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse
from tests.local.test_warehouse import result_line
sink = Sink(Warehouse({path!r}), backlog={backlog!r}).start()
print("ready", flush=True)
for i in range({n}):
    sink.feed(result_line(f"w{{i}}"))
    assert sink.flush(timeout_s=30)
    time.sleep(0.01)
sink.stop()
print("done", flush=True)
"""


def test_readers_and_the_writer_share_the_file_across_processes(state):
    Warehouse(state.warehouse).setup()
    n = 40
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), path=str(state.warehouse),
                                                                  backlog=str(state.sink_backlog), n=n)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    wh = Warehouse(state.warehouse)
    counts = []
    started = time.monotonic()
    while writer.poll() is None:  # query in a loop while the other process writes
        counts.append(wh.query("SELECT COUNT(*) FROM results")[1][0][0])
        if len(counts) % 5 == 0:  # a reader holding the file a while only delays the writer, which retries
            with wh.connect(read_only=True) as con:
                con.execute("SELECT COUNT(*) FROM run_googleapis_com_stdout").fetchall()
                time.sleep(0.1)
        time.sleep(0.02)
    assert writer.wait(timeout=60) == 0 and writer.stdout.read().strip() == "done"
    assert len(counts) > 3 and counts == sorted(counts)
    assert time.monotonic() - started < 20  # neither side starves the other
    assert wh.query("SELECT COUNT(*) FROM results")[1] == [(n,)]


def test_a_sql_error_is_a_clear_message_with_exit_2(state, sink):
    from tests.local.conftest import run_cli
    feed(sink, result_line())
    sink.stop()
    ok = run_cli("query", README_SQL, state=state)
    assert ok.returncode == 0 and "tabby" in ok.stdout
    bad = run_cli("query", "SELECT nope FROM results", state=state)
    assert bad.returncode == 2 and bad.stderr.startswith("bucketeye: SQL error") and "Traceback" not in bad.stderr
    write = run_cli("query", "DELETE FROM _stdout_entries", state=state)
    assert write.returncode == 2 and "read-only" in write.stderr


def test_no_warehouse_yet_is_a_clear_message(state):
    from tests.local.conftest import run_cli
    result = run_cli("results", state=state)
    assert result.returncode == 2 and "no results yet" in result.stderr and "python main.py demo" in result.stderr


def test_bigquery_spellings_become_duckdb_and_strings_stay():
    sql = ("SELECT CAST(x AS FLOAT64), 'FLOAT64 `a.b`' FROM `p.d.t` AS r "
           "CROSS JOIN UNNEST(r.predictions) AS p WITH OFFSET AS pos -- FLOAT64")
    out = bq_sql.to_duckdb(sql)
    assert "CAST(x AS DOUBLE)" in out and "'FLOAT64 `a.b`'" in out and 'FROM "t" AS r' in out
    assert out.endswith("/* FLOAT64 */") and "WITH ORDINALITY" in out
    rows = duckdb.sql(bq_sql.to_duckdb(
        "SELECT p.label, pos FROM (SELECT [{'label': 'a'}, {'label': 'b'}] AS predictions) AS r "
        "CROSS JOIN UNNEST(r.predictions) AS p WITH OFFSET AS pos ORDER BY pos")).fetchall()
    assert rows == [("a", 0), ("b", 1)]
    assert bq_sql.fill_template("FROM ${source}", {"source": "t"}) == "FROM t"
    with pytest.raises(KeyError):
        bq_sql.fill_template("FROM ${nope}", {})


def test_a_field_keeps_its_first_type_and_names_are_case_insensitive():
    grown = structure.merge({"a": "DOUBLE", "s": {"x": "VARCHAR"}}, {"A": "VARCHAR", "s": {"y": "BOOLEAN"}, "b": None})
    assert grown == {"a": "DOUBLE", "s": {"x": "VARCHAR", "y": "BOOLEAN"}}
    assert structure.infer({"l": [], "n": None, "o": {}}) is None
    assert structure.infer([{"a": 1}, {"b": "x"}]) == [{"a": "DOUBLE", "b": "VARCHAR"}]
    # within one object too: the first spelling and type win; a null adds nothing yet
    assert structure.infer({"a": 1, "A": "x", "b": None, "B": True}) == {"a": "DOUBLE", "B": "BOOLEAN"}


HOLDER = """
import duckdb, sys, time
con = duckdb.connect({path!r}, read_only=True)
print("holding", flush=True)
sys.stdin.readline()
"""


def test_rows_the_sink_cannot_write_at_shutdown_are_kept_for_the_next_start(state):
    sink = Sink(Warehouse(state.warehouse), backlog=state.sink_backlog).start()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(path=str(state.warehouse))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"  # another process has the file open
        sink.feed(result_line("late"))
        sink.stop(timeout_s=0.5)
    finally:
        holder.communicate("\n", timeout=30)
    assert state.sink_backlog.exists()
    Sink(Warehouse(state.warehouse), backlog=state.sink_backlog).start().stop()
    assert not state.sink_backlog.exists()
    assert Warehouse(state.warehouse).query("SELECT jsonPayload.result_id FROM run_googleapis_com_stdout")[1] == [("late",)]


class CountingWarehouse(Warehouse):
    """Counts read-write opens: each costs ~20 CPU-ms, so the sink should not open per flush."""

    opened = 0

    def connect(self, *, read_only: bool, timeout_s: float = 15.0):
        if not read_only:
            self.opened += 1
        return super().connect(read_only=read_only, timeout_s=timeout_s)


def test_a_steady_stream_shares_one_connection_per_turn(state):
    warehouse = CountingWarehouse(state.warehouse)
    flushes = []
    sink = Sink(warehouse, backlog=state.sink_backlog, interval_s=0.05, hold_s=10.0,
                on_rows=lambda rows: flushes.append(len(rows))).start()
    opened_at_start = warehouse.opened  # setup's own
    try:
        for i in range(12):  # a row every 0.1 s: every flush finds one waiting
            sink.feed(result_line(f"s{i}"))
            time.sleep(0.1)
    finally:
        sink.stop()
    assert sum(flushes) == 12 and len(flushes) >= 8
    assert warehouse.opened - opened_at_start <= 2, (warehouse.opened, flushes)  # one turn, and stop's own
    assert Warehouse(state.warehouse).query("SELECT COUNT(*) FROM results")[1] == [(12,)]


STREAMER = """
import sys, time
sys.path.insert(0, {repo!r})
from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse
from tests.local.test_warehouse import result_line
sink = Sink(Warehouse({path!r}), backlog={backlog!r}, hold_s=0.5).start()
print("ready", flush=True)
for i in range({n}):  # the sink's own loop writes: rows never stop coming
    sink.feed(result_line(f"t{{i}}"))
    time.sleep(0.02)
sink.stop()
print("done", flush=True)
"""


def test_a_reader_gets_in_while_rows_keep_coming(state):
    """The sink lets go of the file after each turn, so a reader in another process is
    never locked out for long however steady the stream."""
    Warehouse(state.warehouse).setup()
    n = 250  # ~5 s of rows
    writer = subprocess.Popen([sys.executable, "-c", STREAMER.format(repo=str(REPO), path=str(state.warehouse),
                                                                    backlog=str(state.sink_backlog), n=n)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    wh = Warehouse(state.warehouse)
    waits, counts = [], []
    while writer.poll() is None:
        asked = time.monotonic()
        counts.append(wh.query("SELECT COUNT(*) FROM results")[1][0][0])
        waits.append(time.monotonic() - asked)
    assert writer.wait(timeout=60) == 0 and writer.stdout.read().strip() == "done"
    assert counts == sorted(counts) and any(0 < count < n for count in counts), counts  # read mid-stream
    assert max(waits) < 2.5, waits  # one turn (0.5 s) and a little, never the whole stream
    assert wh.query("SELECT COUNT(*) FROM results")[1] == [(n,)]
