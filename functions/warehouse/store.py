"""The local BigQuery dataset: one DuckDB file with the log sink's table and the views.

Schema evolution. Entries are stored whole, as JSON, in `_stdout_entries`; the table
people query, `run_googleapis_com_stdout`, is a view that turns each entry into
BigQuery's columns with json_transform() and the table's current structure (kept in
`_stdout_schema`). That structure starts as the Terraform table's schema
(infra/schema/run_googleapis_com_stdout.json) plus the fields the code's result record
has, and grows when an entry brings a new field: the view is redefined in the same
transaction as the insert, so inserts never fail on a new field, the column appears at
once, and older rows read NULL in it. A field keeps its first type, as in BigQuery.

The `results` and `predictions` views are infra/sql's, filled in and translated
(bq_sql); a built-in DuckDB version stands in only if those files are missing or fail.

Locking. DuckDB lets one process write a file, and no other process open it meanwhile.
The sink therefore opens the file for each batch and closes it right after (tens of
ms); readers (`query`, `results`, the demo) open it read-only for one query. Whoever
finds the file locked retries with backoff for a while. Inside one process a lock
serialises every open, since DuckDB refuses a read-only and a read-write connection to
one file in the same process.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from functions.console.errors import EXIT_USAGE, CommandError
from functions.warehouse import PROJECT, bq_sql, structure
from functions.warehouse.log_entry import column_names

log = logging.getLogger("bucketeye.local.warehouse")

TABLE = "run_googleapis_com_stdout"
DATASET = "bucketeye"  # the DuckDB file is bucketeye.duckdb, so `bucketeye.run_googleapis_com_stdout` works too
RAW = "_stdout_entries"
META = "_stdout_schema"
INFRA = Path(__file__).resolve().parents[2] / "infra"
VIEWS = ("results", "predictions", "duplicates")  # in dependency order
TEMPLATE_VARIABLES = {"project": PROJECT, "dataset": DATASET, "table": TABLE, "source": f'"{TABLE}"',
                      "results": '"results"', "results_view": "results", "predictions": '"predictions"'}

# The LogEntry columns Cloud Logging always writes for a Cloud Run stdout entry.
LOG_ENTRY = {
    "logName": "VARCHAR",
    "resource": {"type": "VARCHAR", "labels": {"service_name": "VARCHAR", "revision_name": "VARCHAR",
                                               "location": "VARCHAR", "project_id": "VARCHAR",
                                               "configuration_name": "VARCHAR"}},
    "jsonPayload": {},
    "timestamp": "TIMESTAMP",
    "receiveTimestamp": "TIMESTAMP",
    "severity": "VARCHAR",
    "insertId": "VARCHAR",
    "labels": {"instanceId": "VARCHAR"},
    "trace": "VARCHAR",
    "spanId": "VARCHAR",
    "traceSampled": "BOOLEAN",
    "sourceLocation": {"file": "VARCHAR", "line": "BIGINT", "function": "VARCHAR"},
}

_FALLBACK_VIEWS = {
    "results": f"""
        SELECT jsonPayload.result_id AS result_id, timestamp, jsonPayload.status AS status, severity,
               jsonPayload.source.trigger AS trigger, jsonPayload.source.uri AS uri,
               jsonPayload.source.bucket AS bucket, jsonPayload.source.object AS object,
               jsonPayload.source.generation AS generation, jsonPayload.source.key AS key,
               jsonPayload.source.event_id AS event_id,
               jsonPayload.model.id AS model_id, jsonPayload.top_label AS top_label,
               jsonPayload.top_score AS top_score, jsonPayload.predictions AS predictions,
               jsonPayload.timings_ms.total AS total_ms, jsonPayload.error.code AS error_code,
               jsonPayload.error.message AS error_message, jsonPayload.error.retryable AS error_retryable,
               jsonPayload.source.content_md5 AS content_md5,
               CAST(jsonPayload.source.size_bytes AS BIGINT) AS size_bytes
        FROM {TABLE}
        WHERE jsonPayload.app = 'bucketeye' AND jsonPayload.result_id IS NOT NULL
        QUALIFY ROW_NUMBER() OVER (PARTITION BY jsonPayload.result_id  -- infra/sql/results.sql's rule: ok wins
                                   ORDER BY CASE WHEN jsonPayload.status = 'ok' THEN 0 ELSE 1 END,
                                            timestamp DESC, receiveTimestamp DESC) = 1""",
    "predictions": """
        SELECT r.result_id, r.timestamp, r.uri, r.model_id, u.rank, u.p.label AS label,
               CAST(u.p.label_id AS BIGINT) AS label_id, u.p.score AS score
        FROM results AS r, UNNEST(r.predictions) WITH ORDINALITY AS u(p, rank)""",
    "duplicates": """
        SELECT content_md5, COUNT(DISTINCT uri) AS copies, MAX(size_bytes) AS size_bytes,
               (COUNT(DISTINCT uri) - 1) * MAX(size_bytes) AS wasted_bytes, MIN(timestamp) AS first_seen,
               MAX(timestamp) AS last_seen, LIST(DISTINCT uri ORDER BY uri) AS uris
        FROM results
        WHERE content_md5 IS NOT NULL AND uri IS NOT NULL AND status != 'skipped'
        GROUP BY content_md5
        HAVING COUNT(DISTINCT uri) > 1""",
}

_process_lock = threading.RLock()


class WarehouseBusy(CommandError):
    pass


def _sample_record() -> dict:
    """A result record with every optional part filled: its fields seed the table."""
    from shared.errors import BucketeyeError
    from shared.refs import ImageRef
    from shared.results import Detection, ImageInfo, Prediction, Result
    ref = ImageRef(trigger="storage", uri="gs://b/o", bucket="b", object="o", generation="1", event_id="1",
                   content_type="image/jpeg", size_bytes=1, key="k", md5_hash="m")
    result = Result(ref=ref, model={"name": "m", "version": "1", "id": "m@1"},
                    predictions=[Prediction("l", 1, 0.5)], detections=[Detection("l", 1, 0.5, (0, 0, 1, 1))],
                    image=ImageInfo("JPEG", 1, 1), error=BucketeyeError("model_error"),
                    timings_ms={"total": 1.0}, content_md5="m")
    return dict(result.to_record(), message="m")


def seed_structure(infra: Path = INFRA) -> dict:
    schema_file = infra / "schema" / f"{TABLE}.json"
    seed = {}
    if schema_file.is_file():
        try:
            seed = structure.from_bigquery(json.loads(schema_file.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring %s: %s", schema_file, exc)
    seed = structure.merge(seed, LOG_ENTRY)
    return structure.merge(seed, {"jsonPayload": structure.infer(column_names(_sample_record()))})


def _lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() or "different configuration" in text


def _json(entry: dict) -> str:
    try:
        return json.dumps(entry, allow_nan=False)
    except ValueError:  # NaN or Infinity: not JSON; BigQuery would store NULL
        return json.dumps(_finite(entry))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class Warehouse:
    def __init__(self, path: Path, *, infra: Path = INFRA):
        self.path = Path(path)
        self.infra = infra

    @contextmanager
    def connect(self, *, read_only: bool, timeout_s: float = 15.0):
        if read_only and not self.path.exists():
            raise CommandError(f"there are no results yet ({self.path} does not exist): "
                               "run `python main.py demo`, or `python main.py up` and upload images", EXIT_USAGE)
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        with _process_lock:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except (duckdb.IOException, duckdb.ConnectionException) as exc:
                    if not _lock_error(exc):
                        raise
                    if time.monotonic() >= deadline:
                        raise WarehouseBusy(f"{self.path} stayed locked for {timeout_s:.0f} s: {exc}") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)  # short waits: the holder is usually done within ~20 ms
            try:
                yield con
            finally:
                con.close()

    # -- writing (the sink) ---------------------------------------------------------------
    def setup(self) -> None:
        """Tables, the stdout view and the infra views; safe to run on every start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.connect(read_only=False) as con:
                con.execute(f"CREATE TABLE IF NOT EXISTS {RAW} (entry JSON NOT NULL)")
                con.execute(f"CREATE TABLE IF NOT EXISTS {META} (structure JSON NOT NULL)")
                self._set_structure(con, structure.merge(self._structure(con), seed_structure(self.infra)))
                for name in VIEWS:
                    self._create_view(con, name)
        except duckdb.Error as exc:
            raise CommandError(f"the warehouse {self.path} cannot be opened ({str(exc).splitlines()[0]}); "
                               "move it away to start a new one") from None

    def append(self, entries: list[dict], *, timeout_s: float = 15.0) -> None:
        """Insert entries in one transaction (see insert) on a connection of its own."""
        if not entries:
            return
        with self.connect(read_only=False, timeout_s=timeout_s) as con:
            self.insert(con, entries)

    def insert(self, con, entries: list[dict]) -> None:
        """Insert entries in one transaction on an open read-write connection, growing the
        table's columns first if needed."""
        if not entries:
            return
        con.execute("BEGIN TRANSACTION")
        try:
            current = self._structure(con)
            grown = structure.merge(current, structure.infer(entries[0]))
            for entry in entries[1:]:
                grown = structure.merge(grown, structure.infer(entry))
            if grown != current:
                self._set_structure(con, grown)
            con.execute(f"INSERT INTO {RAW} SELECT CAST(UNNEST(?::VARCHAR[]) AS JSON)",
                        [[_json(entry) for entry in entries]])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _structure(con):
        row = con.execute(f"SELECT structure FROM {META}").fetchone()
        return json.loads(row[0]) if row else None

    @staticmethod
    def _set_structure(con, new) -> None:
        con.execute(f"DELETE FROM {META}")
        con.execute(f"INSERT INTO {META} VALUES (?)", [json.dumps(new)])
        literal = structure.render(new).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {TABLE} AS SELECT UNNEST(json_transform(entry, '{literal}')) FROM {RAW}")

    def view_sql(self, name: str) -> str | None:
        """infra/sql/NAME.sql in DuckDB's dialect, or None when the file is absent."""
        path = self.infra / "sql" / f"{name}.sql"
        if not path.is_file():
            return None
        return bq_sql.to_duckdb(bq_sql.fill_template(path.read_text(), TEMPLATE_VARIABLES))

    def _create_view(self, con, name: str) -> None:
        try:
            sql = self.view_sql(name)
            if sql is not None:
                con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
                return
            log.info("infra/sql/%s.sql not found: using the built-in %s view", name, name)
        except (duckdb.Error, KeyError, bq_sql.SqlTranslationError) as exc:
            log.warning("infra/sql/%s.sql does not run on DuckDB (%s): using the built-in %s view",
                        name, str(exc).splitlines()[0], name)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {_FALLBACK_VIEWS[name]}")

    # -- reading --------------------------------------------------------------------------
    def query(self, sql: str, params=None, *, timeout_s: float = 15.0, prepare=None,
              dialect: str = "duckdb") -> tuple[list[str], list[tuple]]:
        """Run one read-only statement; (column names, rows). The project's own SQL is
        DuckDB's; a user's SQL (dialect="bigquery") is translated first, so the same query
        runs here and in BigQuery. `prepare(con)` may add temporary tables and functions."""
        with self.connect(read_only=True, timeout_s=timeout_s) as con:
            if prepare is not None:
                prepare(con)
            cursor = con.execute(bq_sql.to_duckdb(sql) if dialect == "bigquery" else sql, params)
            if cursor.description is None:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()
