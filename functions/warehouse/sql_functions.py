"""Classify from SQL, locally: the same shape as BigQuery's remote function over an
object table, on the DuckDB file.

- `uploads_objects`: a temporary table listing the stack's bucket objects, with the
  columns of a BigQuery object table (uri, generation, content_type, size, md5_hash, updated).
- `classify(uri)` / `classify_top_k(uri, k)`: DuckDB functions that send rows to the
  running server exactly as BigQuery does ({"requestId", "caller", "calls": [[uri], ...]}),
  in batches of MAX_BATCHING_ROWS, retrying 429/503 as BigQuery does, and return
  each reply as JSON.
"""
from __future__ import annotations

import getpass
import json
import time
import uuid

import requests

MAX_BATCHING_ROWS = 50      # as infra/'s remote_function_max_batching_rows default
RETRY_STATUSES = (408, 429, 500, 503, 504)  # what BigQuery retries
MAX_ATTEMPTS = 6


class RemoteFunctionError(RuntimeError):
    """The service refused the whole batch (BigQuery fails the query the same way)."""


def call_batch(server_url: str, calls: list[list], *, context: dict | None = None, timeout_s: float = 120.0) -> list:
    """One remote-function request; returns the replies in call order."""
    body = {"requestId": str(uuid.uuid4()), "caller": "//duckdb.local/bucketeye/query",
            "sessionUser": getpass.getuser(), "userDefinedContext": context or {}, "calls": calls}
    delay = 0.2
    for attempt in range(MAX_ATTEMPTS):
        try:
            response = requests.post(server_url.rstrip("/") + "/", json=body, timeout=timeout_s)
        except requests.RequestException as exc:
            raise RemoteFunctionError(f"the local server at {server_url} does not answer ({type(exc).__name__}): "
                                      "is the stack up? (python main.py up)") from None
        if response.status_code in RETRY_STATUSES and attempt + 1 < MAX_ATTEMPTS:
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200 or "replies" not in answer:
            message = answer.get("errorMessage") or answer.get("error") or response.text[:200]
            raise RemoteFunctionError(f"classify failed with HTTP {response.status_code}: {message}")
        replies = answer["replies"]
        if len(replies) != len(calls):
            raise RemoteFunctionError(f"the server sent {len(replies)} replies for {len(calls)} calls")
        return replies
    raise RemoteFunctionError("unreachable")  # the loop returns or raises


def classify_column(server_url: str, uris: list, top_ks: list | None = None) -> list[str | None]:
    """A column of URIs (and optional top-k) -> a column of JSON replies (NULL in, NULL out)."""
    out: list[str | None] = [None] * len(uris)
    rows = [i for i, uri in enumerate(uris) if uri is not None]
    for start in range(0, len(rows), MAX_BATCHING_ROWS):
        chunk = rows[start:start + MAX_BATCHING_ROWS]
        calls = [[uris[i]] + ([top_ks[i]] if top_ks is not None else []) for i in chunk]
        for i, reply in zip(chunk, call_batch(server_url, calls)):
            out[i] = json.dumps(reply)
    return out


def install(con, *, server_url: str, gcs_client, buckets: list[str]) -> None:
    """Add uploads_objects and the classify functions to one DuckDB connection."""
    import pyarrow as pa

    con.execute("CREATE OR REPLACE TEMP TABLE uploads_objects (uri VARCHAR, generation BIGINT, content_type VARCHAR, "
                "size BIGINT, md5_hash VARCHAR, updated TIMESTAMP WITH TIME ZONE)")
    rows = [(f"gs://{bucket}/{blob.name}", blob.generation, blob.content_type, blob.size, blob.md5_hash, blob.updated)
            for bucket in buckets for blob in gcs_client.list_blobs(bucket)]
    if rows:
        con.executemany("INSERT INTO uploads_objects VALUES (?, ?, ?, ?, ?, ?)", rows)

    def classify(uris):
        return pa.array(classify_column(server_url, uris.to_pylist()), type=pa.string())

    def classify_top_k(uris, top_ks):
        return pa.array(classify_column(server_url, uris.to_pylist(), top_ks.to_pylist()), type=pa.string())

    # DuckDB's Python functions return VARCHAR here; the macros make the result JSON, as in BigQuery.
    con.create_function("bucketeye_classify", classify, ["VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=True)
    con.create_function("bucketeye_classify_top_k", classify_top_k, ["VARCHAR", "BIGINT"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=True)
    con.execute("CREATE OR REPLACE TEMP MACRO classify(uri) AS CAST(bucketeye_classify(uri) AS JSON)")
    con.execute("CREATE OR REPLACE TEMP MACRO classify_top_k(uri, k) AS CAST(bucketeye_classify_top_k(uri, k) AS JSON)")
