"""Duplicates: infra/sql/duplicates.sql (the BigQuery view, and the local one through the
warehouse) over real result rows, the `duplicates` command, and the BigQuery side of
the report and the backfill check (their SQL and parameters, with a recording client)."""
from __future__ import annotations

import pytest

from functions.cli import main
from functions.local.statedir import StateDir
from functions.warehouse.store import _FALLBACK_VIEWS, Warehouse
from tests.backfill.seed import record, seed


@pytest.fixture()
def state(tmp_path) -> StateDir:
    state = StateDir(tmp_path / "state").ensure()
    seed(state.warehouse, [
        record("gs://b/a.jpg", "1", md5="SAME", size=500),
        record("gs://b/copy/a.jpg", "4", md5="SAME", size=500),
        record("gs://c/a-again.jpg", "9", md5="SAME", size=500),
        record("gs://b/a.jpg", "1", md5="SAME", size=500, model_id="m@2"),     # another model: same URI
        record("gs://b/redone.jpg", "1", md5="ONCE", size=10),
        record("gs://b/redone.jpg", "2", md5="ONCE", size=10),                # a new generation, same bytes
        record("gs://b/unhashed.jpg", "1", md5="", size=10),
        record("gs://b/twin-1.png", "1", md5="TWIN", size=20),
        record("gs://b/twin-2.png", "1", md5="TWIN", size=20),
    ])
    return state


def test_the_duplicates_view_lists_each_hash_under_several_uris(state):
    warehouse = Warehouse(state.warehouse)
    assert warehouse.view_sql("duplicates") is not None  # the view is infra/sql/duplicates.sql
    columns, rows = warehouse.query("SELECT content_md5, copies, size_bytes, wasted_bytes, uris FROM duplicates")
    assert rows == [("SAME", 3, 500, 1000, ["gs://b/a.jpg", "gs://b/copy/a.jpg", "gs://c/a-again.jpg"]),
                    ("TWIN", 2, 20, 20, ["gs://b/twin-1.png", "gs://b/twin-2.png"])]
    # the built-in stand-in (used only if the infra SQL cannot run) agrees
    fallback = warehouse.query(f"SELECT content_md5, copies, size_bytes, wasted_bytes, uris FROM "
                               f"({_FALLBACK_VIEWS['duplicates']}) ORDER BY wasted_bytes DESC")[1]
    assert fallback == rows


def test_the_duplicates_command(state, capsys):
    assert main(["duplicates", "--state-dir", str(state.root)]) == 0
    out = capsys.readouterr().out
    assert "gs://c/a-again.jpg" in out and "gs://b/twin-2.png" in out and "redone" not in out
    assert "2 images stored more than once, as 5 objects; 1,020 bytes in extra copies" in out
    assert main(["duplicates", "--state-dir", str(state.root), "--limit", "1"]) == 0
    assert "twin" not in capsys.readouterr().out.split("images stored")[0]


def test_no_duplicates_says_so(tmp_path, capsys):
    state = StateDir(tmp_path / "s").ensure()
    seed(state.warehouse, [record("gs://b/x.jpg", md5="X")])
    assert main(["duplicates", "--state-dir", str(state.root)]) == 0
    assert "no image is stored more than once" in capsys.readouterr().out


class Row(dict):
    def __getitem__(self, key):
        return list(self.values())[key] if isinstance(key, int) else super().__getitem__(key)


class RecordingClient:
    """Stands in for google.cloud.bigquery.Client: records each query, answers canned rows."""

    def __init__(self, answer=lambda sql, params: []):
        self.calls = []
        self.answer = answer

    def query_and_wait(self, sql, job_config=None):
        params = {}
        for param in job_config.query_parameters:  # as they go over the wire (the REST API's form)
            api = param.to_api_repr()
            kind, value = api["parameterType"], api["parameterValue"]
            if kind["type"] == "ARRAY":
                params[api["name"]] = ("ARRAY<" + kind["arrayType"]["type"] + ">",
                                       [v["value"] for v in value["arrayValues"]])
            else:
                params[api["name"]] = (kind["type"], value["value"])
        self.calls.append((sql, params))
        return [Row(r) for r in self.answer(sql, params)]


def test_bigquery_report_queries_name_the_dataset_views_and_type_their_parameters():
    from functions.report import queries
    from functions.report.sources import BigQuerySource
    client = RecordingClient()
    source = BigQuerySource("proj.bucketeye", client=client)
    source.query(queries.LOW_CONFIDENCE, {"threshold": 0.25, "model_id": "m@1"}, where=queries.MODEL_FILTER, limit=5)
    source.query(queries.DUPLICATES, limit=3)
    (low_sql, low_params), (dup_sql, _) = client.calls
    assert "FROM `proj.bucketeye.results`" in low_sql and "model_id = @model_id" in low_sql and "LIMIT 5" in low_sql
    assert low_params == {"threshold": ("FLOAT64", 0.25), "model_id": ("STRING", "m@1")}
    assert "FROM `proj.bucketeye.results`" in dup_sql and "ARRAY_AGG(DISTINCT uri ORDER BY uri)" in dup_sql
    assert "${" not in dup_sql


def test_bigquery_backfill_check_asks_in_chunks_and_matches_generations():
    from functions.backfill.done import BigQueryResults
    done_rows = {("gs://b/1.jpg", "1"), ("gs://b/2.jpg", "5"), ("gs://b/4.jpg", "1")}

    def answer(sql, params):
        return [{"uri": u, "generation": g} for u, g in sorted(done_rows) if u in params["uris"][1]]

    client = RecordingClient(answer)
    check = BigQueryResults("proj.ds", client=client, chunk=2)
    pairs = [(f"gs://b/{i}.jpg", "1") for i in range(5)]
    assert check.done("m@1", pairs) == {("gs://b/1.jpg", "1"), ("gs://b/4.jpg", "1")}  # 2.jpg: another generation
    assert len(client.calls) == 3
    sql, params = client.calls[0]
    assert "FROM `proj.ds.results`" in sql and "uri IN UNNEST(@uris)" in sql and "error_code IN (" in sql
    assert "'corrupt_image'" in sql and "stale_event" not in sql  # only answers no retry can change are done
    assert params["model_id"] == ("STRING", "m@1")
    assert params["uris"] == ("ARRAY<STRING>", ["gs://b/0.jpg", "gs://b/1.jpg"])
