"""Every SQL example the project prints (README, docs/, infra/outputs.tf) runs on the local
warehouse, as written for BigQuery: the rows come from a real server's log lines through
the local sink, and classify() calls that server as BigQuery's remote function would."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from _functional_support import new_id

from functions.warehouse import bq_sql, sql_functions
from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse

REPO = Path(__file__).resolve().parents[2]
BUCKET = "sql-examples"

# What Terraform interpolates into outputs.tf's heredocs, spelled as BigQuery would see it.
TERRAFORM_VALUES = {
    "local.bq_prefix": "PROJECT.bucketeye",
    "google_bigquery_table.stdout.table_id": "run_googleapis_com_stdout",
    "local.sql_classify": "`PROJECT.bucketeye.classify`",
    "local.sql_classify_top_k": "`PROJECT.bucketeye.classify_top_k`",
    "local.sql_object_table": "`PROJECT.bucketeye.uploads_objects`",
    "local.sql_results": "`PROJECT.bucketeye.results`",
}


def _statements(block: str) -> list[str]:
    parts = re.split(r";\s*(?:\n|$)", block)
    return [part.strip() for part in parts if re.sub(r"--[^\n]*", "", part).strip()]


def _markdown_examples(path: Path) -> list[str]:
    text = path.read_text()
    found = [s for block in re.findall(r"```sql\n(.*?)```", text, re.S) for s in _statements(block)]
    found += re.findall(r'main\.py query "(.*?)"', text, re.S)
    return found


def _terraform_examples(path: Path) -> list[str]:
    def value(match):
        name = match.group(1).strip()
        assert name in TERRAFORM_VALUES, f"{path.name}: no local value for ${{{name}}}; add it to TERRAFORM_VALUES"
        return TERRAFORM_VALUES[name]
    heredocs = re.findall(r"<<-EOT\n(.*?)\n\s*EOT", path.read_text(), re.S)
    return [re.sub(r"\$\{([^}]*)\}", value, doc) for doc in heredocs]


def examples() -> list[tuple[str, str]]:
    sources = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [(path.name, sql) for path in sources for sql in _markdown_examples(path)]
    return found + [("outputs.tf", sql) for sql in _terraform_examples(REPO / "infra" / "outputs.tf")]


def test_the_examples_are_found_in_every_source():
    counts: dict[str, int] = {}
    for source, _ in examples():
        counts[source] = counts.get(source, 0) + 1
    assert counts.get("README.md", 0) >= 3 and counts.get("deploy.md", 0) >= 10 and counts.get("outputs.tf", 0) >= 8, counts


@pytest.fixture(scope="module")
def warehouse(start_server, gcs, images, tmp_path_factory):
    """A warehouse holding a real server's result lines for two photos in their own bucket."""
    gcs.client.create_bucket(BUCKET)
    server = start_server("sql-examples", env={"ALLOWED_BUCKETS": BUCKET})
    uris = []
    for which in ("chelsea", "coffee"):
        name = f"uploads/{new_id()}.png"
        gcs.upload(images.unique(which), name=name, bucket=BUCKET)
        uris.append(f"gs://{BUCKET}/{name}")
    mark = server.log.mark()
    assert all(reply["status"] == "ok" for reply in sql_functions.call_batch(server.url, [[u] for u in uris]))
    server.log.wait_results(mark, len(uris))
    path = tmp_path_factory.mktemp("warehouse") / "bucketeye.duckdb"
    sink = Sink(Warehouse(path), backlog=path.with_suffix(".backlog"), interval_s=0.01).start()
    for line in server.log.raw_lines():
        sink.feed(line)
    assert sink.flush()
    sink.stop()
    return {"path": path, "server": server, "uris": uris}


def test_every_example_runs_on_the_local_warehouse(warehouse, gcs):
    con = duckdb.connect(str(warehouse["path"]))
    sql_functions.install(con, server_url=warehouse["server"].url, gcs_client=gcs.client, buckets=[BUCKET])
    # A table of the user's own that the join example names.
    con.execute("CREATE TABLE products AS SELECT * FROM (VALUES ('sku-1', 'Mug', ?)) AS t(sku, title, image_uri)",
                [warehouse["uris"][1]])
    failures, answers = [], {}
    for source, sql in examples():
        try:
            answers[sql] = con.execute(bq_sql.to_duckdb(sql)).fetchall()
        except (duckdb.Error, bq_sql.SqlTranslationError) as exc:
            failures.append(f"{source}: {str(exc).splitlines()[0]}\n{sql}")
    assert not failures, "\n\n".join(failures)
    # Not only do they run: they find the rows, with BigQuery's meaning (offsets from 0).
    unnested = next(rows for sql, rows in answers.items() if "JSON_QUERY_ARRAY" in sql and "rank + 1" in sql)
    assert sorted({row[1] for row in unnested}) == [1, 2, 3, 4, 5]
    latest = next(rows for sql, rows in answers.items() if "TIMESTAMP_SUB" in sql and ".results`" in sql)
    assert {row[1] for row in latest} >= set(warehouse["uris"])
    percentiles = next(rows for sql, rows in answers.items() if "APPROX_QUANTILES" in sql)
    assert percentiles and all(row[2] is not None and row[2] > 0 for row in percentiles)
