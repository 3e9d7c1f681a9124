"""The SQL of infra/sql (the BigQuery views and example queries) run on DuckDB over a
table built from the schema file.

Rows are real result records (shared/results.py), shaped as the Logging export writes
them (numbers as doubles). Runs where duckdb is installed (the main venv: it is a
runtime requirement); skipped in .venv-infra.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

duckdb = pytest.importorskip("duckdb", reason="duckdb is in the main venv, not .venv-infra")

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DUCK_TYPES = {"STRING": "VARCHAR", "FLOAT": "DOUBLE", "BOOLEAN": "BOOLEAN", "TIMESTAMP": "TIMESTAMP", "INTEGER": "BIGINT"}


def _duck_type(field: dict) -> str:
    if field["type"] == "RECORD":
        inner = ", ".join(f'"{f["name"]}" {_duck_type(f)}' for f in field["fields"])
        base = f"STRUCT({inner})"
    else:
        base = DUCK_TYPES[field["type"]]
    return base + "[]" if field.get("mode") == "REPEATED" else base


def _as_exported(value):
    """What the Logging export stores: every JSON number as a double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_exported(v) for k, v in value.items()}
    return [_as_exported(v) for v in value]


@pytest.fixture()
def db():
    schema = json.loads((INFRA / "schema" / "run_googleapis_com_stdout.json").read_text())
    con = duckdb.connect()
    columns = ", ".join(f'"{f["name"]}" {_duck_type(f)}' for f in schema)
    con.execute(f"CREATE TABLE run_googleapis_com_stdout ({columns})")
    results_sql = (INFRA / "sql" / "results.sql").read_text().replace("${source}", "run_googleapis_com_stdout")
    predictions_sql = (INFRA / "sql" / "predictions.sql").read_text().replace("${results}", "results")
    con.execute("CREATE VIEW results AS " + results_sql)
    con.execute("CREATE VIEW predictions AS " + predictions_sql)
    payload_type = _duck_type(next(f for f in schema if f["name"] == "jsonPayload"))

    def insert(record: dict, when: datetime, message: str = "m"):
        payload = _as_exported(dict(record, message=message))
        con.execute(
            "INSERT INTO run_googleapis_com_stdout (timestamp, receiveTimestamp, severity, insertId, jsonPayload) "
            f"VALUES (?, ?, ?, ?, CAST(? AS {payload_type}))",
            [when, when + timedelta(seconds=1), "INFO", record["result_id"], payload],
        )

    yield SimpleNamespace(insert=insert, execute=con.execute)
    con.close()


def _records():
    from shared.errors import BucketeyeError
    from shared.refs import ImageRef
    from shared.results import ImageInfo, Prediction, Result

    model = {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"}
    cat = ImageRef(trigger="storage", uri="gs://b/cat.jpg", bucket="b", object="cat.jpg", generation="7", size_bytes=1000)
    bad = ImageRef(trigger="pubsub", uri="gs://b/bad.jpg", bucket="b", object="bad.jpg", generation="3")
    transient = Result(ref=cat, model=model, error=BucketeyeError("fetch_failed"))
    ok = Result(ref=cat, model=model, image=ImageInfo("JPEG", 640, 480),
                predictions=[Prediction("tabby", 281, 0.7), Prediction("tiger cat", 282, 0.2), Prediction("lynx", 287, 0.05)],
                timings_ms={"total": 12.5})
    permanent = Result(ref=bad, model=model, error=BucketeyeError("corrupt_image"))
    return transient.to_record(), ok.to_record(), permanent.to_record()


def test_results_view_keeps_the_latest_row_per_result_id(db):
    transient, ok, permanent = _records()
    assert transient["result_id"] == ok["result_id"]  # a retry of the same upload
    t0 = datetime(2026, 1, 1, 12, 0, 0)
    db.insert(transient, t0)
    db.insert(ok, t0 + timedelta(minutes=1))
    db.insert(ok, t0 + timedelta(minutes=2))  # redelivered and logged again
    db.insert(permanent, t0 + timedelta(minutes=3))

    rows = db.execute(
        "SELECT result_id, status, top_label, error_code, image_width, size_bytes, total_ms FROM results ORDER BY uri"
    ).fetchall()
    assert len(rows) == 2
    bad, cat = rows
    assert bad[1:4] == ("error", None, "corrupt_image")
    assert cat[1:4] == ("ok", "tabby", None)
    assert cat[4] == 640 and isinstance(cat[4], int)      # cast back from the exported double
    assert cat[5] == 1000 and isinstance(cat[5], int)
    assert cat[6] == pytest.approx(12.5)


def test_predictions_view_flattens_top_k_in_order(db):
    _, ok, permanent = _records()
    db.insert(ok, datetime(2026, 1, 1))
    db.insert(permanent, datetime(2026, 1, 1))
    rows = db.execute("SELECT rank, label, label_id, score, uri FROM predictions ORDER BY rank").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, "tabby", 281), (2, "tiger cat", 282), (3, "lynx", 287)]
    assert all(r[4] == "gs://b/cat.jpg" for r in rows)  # the error result contributes no rows


def test_results_view_ignores_other_apps_entries(db):
    _, ok, _ = _records()
    other = dict(ok, app="someone-else", result_id="x" * 32)
    db.insert(ok, datetime(2026, 1, 1))
    db.insert(other, datetime(2026, 1, 1))
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


def _model_disagreements_sql() -> str:
    return (INFRA / "sql" / "model_disagreements.sql").read_text().replace("${results}", "results")


def test_model_disagreements_pair_the_latest_results_of_two_models(db):
    from shared.errors import BucketeyeError
    from shared.refs import ImageRef
    from shared.results import Prediction, Result

    old = {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"}
    new = {"name": "efficientnet_lite0", "version": "2", "id": "efficientnet_lite0@2"}
    cat = ImageRef(trigger="storage", uri="gs://b/cat.jpg", bucket="b", object="cat.jpg", generation="7")
    dog = ImageRef(trigger="bigquery", uri="gs://b/dog.jpg", bucket="b", object="dog.jpg")
    t0 = datetime(2026, 1, 1)

    def result(ref, model, label, score=0.6):
        return Result(ref=ref, model=model, predictions=[Prediction(label, 1, score)]).to_record()

    db.insert(result(cat, old, "tabby"), t0)
    db.insert(result(cat, new, "tiger cat", 0.7), t0 + timedelta(minutes=1))
    db.insert(result(dog, old, "beagle"), t0)
    db.insert(Result(ref=dog, model=new, error=BucketeyeError("fetch_failed")).to_record(), t0)
    db.insert(result(dog, new, "beagle"), t0 + timedelta(minutes=1))  # the retry succeeded, and agrees

    rows = db.execute(_model_disagreements_sql()).fetchall()
    assert [r[:3] + r[4:6] for r in rows] == [
        ("gs://b/cat.jpg", "efficientnet_lite0@1", "tabby", "efficientnet_lite0@2", "tiger cat"),
    ]
    assert rows[0][6] == pytest.approx(0.7)
