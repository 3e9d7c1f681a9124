"""Which listed objects already have a result for the model: asked of the `results`
view, in chunks of URIs (BigQuery in the cloud, the local warehouse's DuckDB locally).

Done means a result row for (uri, generation, model id) that is `ok`, or an error no
retry can change: one that depends only on the object's bytes (a corrupt image stays
corrupt; shared/errors.py FINAL_CODES), or a `skipped` record saying its bytes are not an
image. Any other error is not done and its image is sent again: a transient one (the
object could not be read, the model was not loaded), a stale_event (the upload's event
came too late, the image was never read), a forbidden_source (the allow-list may have
changed). With redo_errors, every error result counts as not done. For --wait (which:
"any"), any row counts: the image was classified, well or not.
"""
from __future__ import annotations

from pathlib import Path

from functions.console.errors import EXIT_USAGE, CommandError
from shared.errors import FINAL_CODES

CHUNK = 1000  # URIs per query

_FINAL = ", ".join(f"'{code}'" for code in (*FINAL_CODES, "not_an_image"))
DONE_FILTER = f"(status = 'ok' OR error_code IN ({_FINAL}))"
BIGQUERY_SQL = """SELECT DISTINCT uri, generation
FROM `{results}`
WHERE model_id = @model_id
  AND uri IN UNNEST(@uris)
  AND {done}"""
DUCKDB_SQL = """SELECT DISTINCT uri, generation
FROM results
WHERE model_id = ?
  AND uri IN (SELECT UNNEST(?::VARCHAR[]))
  AND {done}"""


WHICH = {"done": DONE_FILTER, "ok": "status = 'ok'", "any": "TRUE"}


def _which(redo_errors: bool, which: str | None) -> str:
    return WHICH[which or ("ok" if redo_errors else "done")]


class Nothing:
    """--results none: nothing counts as done; everything listed is sent."""
    description = "no check (everything is sent)"

    def done(self, model_id: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return set()


class DuckDBResults:
    def __init__(self, path: Path, *, redo_errors: bool = False, which: str | None = None, chunk: int = CHUNK):
        self.path = Path(path)
        self.sql = DUCKDB_SQL.format(done=_which(redo_errors, which))
        self.chunk = chunk
        self.description = f"the results view in {self.path}"

    def done(self, model_id: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        import duckdb

        from functions.warehouse.store import Warehouse
        if not pairs or not self.path.exists():  # no warehouse yet: nothing was classified
            return set()
        wanted = set(pairs)
        found: set[tuple[str, str]] = set()
        uris = sorted({uri for uri, _ in pairs})
        for start in range(0, len(uris), self.chunk):
            try:
                rows = Warehouse(self.path).query(self.sql, [model_id, uris[start:start + self.chunk]],
                                                  timeout_s=60)[1]
            except duckdb.Error as exc:
                raise CommandError(f"asking {self.path} which images have results failed: "
                                   f"{str(exc).splitlines()[0]}") from None
            found.update((uri, str(generation or "")) for uri, generation in rows)
        return found & wanted


class BigQueryResults:
    """The `results` view of a BigQuery dataset (PROJECT.DATASET, as Terraform's `dataset` output)."""

    def __init__(self, dataset: str, *, redo_errors: bool = False, which: str | None = None, chunk: int = CHUNK,
                 client=None):
        parts = dataset.split(".")
        if len(parts) != 2 or not all(parts):
            raise CommandError(f"--results {dataset!r}: give the BigQuery dataset as PROJECT.DATASET", EXIT_USAGE)
        self.project = parts[0]
        self.table = f"{dataset}.results"
        self.sql = BIGQUERY_SQL.format(results=self.table, done=_which(redo_errors, which))
        self.chunk = chunk
        self._client = client
        self.description = f"BigQuery {self.table}"

    def client(self):
        if self._client is None:
            from google.cloud import bigquery
            self._client = bigquery.Client(project=self.project)
        return self._client

    def done(self, model_id: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        wanted = set(pairs)
        found: set[tuple[str, str]] = set()
        uris = sorted({uri for uri, _ in pairs})
        for start in range(0, len(uris), self.chunk):
            config = bigquery.QueryJobConfig(query_parameters=[
                bigquery.ScalarQueryParameter("model_id", "STRING", model_id),
                bigquery.ArrayQueryParameter("uris", "STRING", uris[start:start + self.chunk])])
            try:
                rows = self.client().query_and_wait(self.sql, job_config=config)
            except gexc.GoogleAPICallError as exc:
                raise CommandError(f"asking {self.table} which images have results failed: {exc.message}") from None
            found.update((row[0], str(row[1] or "")) for row in rows)
        return found & wanted


def open_results(spec: str, *, redo_errors: bool = False, which: str | None = None):
    """'none', a DuckDB file (*.duckdb, or any path with a slash), or PROJECT.DATASET (BigQuery)."""
    if spec == "none":
        return Nothing()
    if spec.endswith((".duckdb", ".db")) or "/" in spec:
        return DuckDBResults(Path(spec), redo_errors=redo_errors, which=which)
    return BigQueryResults(spec, redo_errors=redo_errors, which=which)
