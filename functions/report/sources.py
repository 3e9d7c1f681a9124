"""Where the report's SQL runs: the local warehouse (DuckDB) or a BigQuery dataset.

Queries are written once, in BigQuery's spelling with @name parameters and {results} /
{duplicates} placeholders for the views; each source fills those in and runs them
(DuckDB through the warehouse's BigQuery-to-DuckDB translation, with $name parameters).
A few functions differ between the engines; those queries come per dialect (queries.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from functions.console.errors import EXIT_USAGE, CommandError

_PARAM = re.compile(r"@(\w+)")
REPO = Path(__file__).resolve().parents[2]
DUPLICATES_SQL = REPO / "infra" / "sql" / "duplicates.sql"


def duplicates_sql(results: str) -> str:
    """infra/sql/duplicates.sql for this source, so a warehouse made before the view existed works too."""
    from functions.warehouse.bq_sql import fill_template
    return fill_template(DUPLICATES_SQL.read_text(), {"results": results})


class DuckDBSource:
    dialect = "duckdb"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.description = str(self.path)
        self.names = {"results": "results", "duplicates": f"({duplicates_sql('results')})"}

    def query(self, sql: str, params: dict | None = None, **parts) -> list[dict]:
        from functions.warehouse.store import Warehouse
        sql = _PARAM.sub(r"$\1", sql.format(**self.names, **parts))
        import duckdb
        used = {name: value for name, value in (params or {}).items() if f"${name}" in sql}
        try:
            columns, rows = Warehouse(self.path).query(sql, used or None, timeout_s=60)
        except duckdb.Error as exc:
            raise CommandError(f"querying {self.path} failed: {str(exc).splitlines()[0]}") from None
        return [dict(zip(columns, row)) for row in rows]


class BigQuerySource:
    dialect = "bigquery"

    def __init__(self, dataset: str, *, client=None):
        parts = dataset.split(".")
        if len(parts) != 2 or not all(parts):
            raise CommandError(f"--bigquery {dataset!r}: give the dataset as PROJECT.DATASET", EXIT_USAGE)
        self.project = parts[0]
        self.description = f"BigQuery {dataset}"
        results = f"`{dataset}.results`"
        self.names = {"results": results, "duplicates": f"({duplicates_sql(results)})"}
        self._client = client

    def client(self):
        if self._client is None:
            from google.cloud import bigquery
            self._client = bigquery.Client(project=self.project)
        return self._client

    def query(self, sql: str, params: dict | None = None, **parts) -> list[dict]:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        types = {str: "STRING", float: "FLOAT64", int: "INT64", bool: "BOOL"}
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter(name, types[type(value)], value) for name, value in (params or {}).items()])
        try:
            rows = self.client().query_and_wait(sql.format(**self.names, **parts), job_config=config)
        except gexc.GoogleAPICallError as exc:
            raise CommandError(f"the BigQuery query failed: {exc.message}") from None
        return [dict(row.items()) for row in rows]
