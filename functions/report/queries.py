"""The report's SQL. {results} and {duplicates} name the views (sources.py fills them in);
@name are query parameters; {where} is the optional model filter. Portable SQL where
possible; the time buckets and percentiles per dialect."""
from __future__ import annotations

TOTALS = """SELECT COUNT(*) AS results,
       SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
       SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors,
       COUNT(DISTINCT uri) AS images,
       COUNT(DISTINCT model_id) AS models,
       MIN(timestamp) AS first_at,
       MAX(timestamp) AS last_at,
       AVG(top_score) AS mean_score
FROM {results}
WHERE TRUE {where}"""

LABELS = """SELECT top_label AS label, COUNT(*) AS images, AVG(top_score) AS mean_score
FROM {results}
WHERE status = 'ok' AND top_label IS NOT NULL {where}
GROUP BY top_label
ORDER BY images DESC, label
LIMIT {limit}"""

STATUS = """SELECT status, COUNT(*) AS results
FROM {results}
WHERE TRUE {where}
GROUP BY status
ORDER BY results DESC, status"""

ERRORS = """SELECT error_code, error_retryable, COUNT(*) AS results, MAX(timestamp) AS last_at
FROM {results}
WHERE status = 'error' {where}
GROUP BY error_code, error_retryable
ORDER BY results DESC, error_code"""

LATENCY = {
    "bigquery": """SELECT TIMESTAMP_TRUNC(timestamp, {unit}) AS period, COUNT(*) AS images,
       APPROX_QUANTILES(total_ms, 100)[OFFSET(50)] AS p50_ms,
       APPROX_QUANTILES(total_ms, 100)[OFFSET(95)] AS p95_ms
FROM {results}
WHERE total_ms IS NOT NULL {where}
GROUP BY period
ORDER BY period""",
    "duckdb": """SELECT date_trunc('{unit}', timestamp) AS period, COUNT(*) AS images,
       quantile_cont(total_ms, 0.5) AS p50_ms,
       quantile_cont(total_ms, 0.95) AS p95_ms
FROM {results}
WHERE total_ms IS NOT NULL {where}
GROUP BY period
ORDER BY period""",
}

LATENCY_OVERALL = {
    "bigquery": """SELECT APPROX_QUANTILES(total_ms, 100)[OFFSET(50)] AS p50_ms,
       APPROX_QUANTILES(total_ms, 100)[OFFSET(95)] AS p95_ms,
       APPROX_QUANTILES(total_ms, 100)[OFFSET(99)] AS p99_ms
FROM {results}
WHERE total_ms IS NOT NULL {where}""",
    "duckdb": """SELECT quantile_cont(total_ms, 0.5) AS p50_ms, quantile_cont(total_ms, 0.95) AS p95_ms,
       quantile_cont(total_ms, 0.99) AS p99_ms
FROM {results}
WHERE total_ms IS NOT NULL {where}""",
}

SCORE_BINS = 20
SCORES = """SELECT LEAST(CAST(FLOOR(top_score * {bins}) AS INT64), {last_bin}) AS bin, COUNT(*) AS images
FROM {results}
WHERE status = 'ok' AND top_score IS NOT NULL {where}
GROUP BY bin
ORDER BY bin"""

DUPLICATES = """SELECT content_md5, copies, size_bytes, wasted_bytes, uris
FROM {duplicates}
ORDER BY wasted_bytes DESC, copies DESC, content_md5
LIMIT {limit}"""

DUPLICATE_TOTALS = """SELECT COUNT(*) AS hashes, SUM(copies) AS objects, SUM(wasted_bytes) AS wasted_bytes
FROM {duplicates}"""

LOW_CONFIDENCE = """SELECT timestamp, uri, key, top_label, top_score, model_id, predictions
FROM {results}
WHERE status = 'ok' AND top_score < @threshold {where}
ORDER BY timestamp DESC
LIMIT {limit}"""

MODEL_FILTER = "AND model_id = @model_id"


def bucket_unit(span_s: float) -> str:
    """A time bucket that gives a readable number of points over the span."""
    if span_s <= 2 * 3600:
        return "MINUTE"
    if span_s <= 5 * 86400:
        return "HOUR"
    return "DAY"
