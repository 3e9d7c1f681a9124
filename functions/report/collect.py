"""The report's numbers, gathered from a source with the queries of queries.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from functions.report import queries


@dataclass
class ReportData:
    source: str
    generated_at: datetime
    model_id: str | None
    threshold: float
    totals: dict
    labels: list[dict]
    status: list[dict]
    errors: list[dict]
    latency_unit: str
    latency: list[dict]
    latency_overall: dict
    scores: list[int]                      # images per score bin, SCORE_BINS bins over [0, 1]
    duplicates: list[dict]
    duplicate_totals: dict
    low_confidence: list[dict] = field(default_factory=list)


def collect(source, *, model_id: str | None = None, threshold: float = 0.3, top_labels: int = 20,
            low_confidence: int = 25, duplicates: int = 10) -> ReportData:
    params = {"model_id": model_id} if model_id else {}
    where = queries.MODEL_FILTER if model_id else ""

    def run(sql, extra=None, **parts):
        return source.query(sql, dict(params, **(extra or {})), where=where, **parts)

    totals = run(queries.TOTALS)[0]
    first, last = totals.get("first_at"), totals.get("last_at")
    span = (last - first).total_seconds() if first and last else 0.0
    unit = queries.bucket_unit(span)
    bins = [0] * queries.SCORE_BINS
    for row in run(queries.SCORES, bins=queries.SCORE_BINS, last_bin=queries.SCORE_BINS - 1):
        bins[max(0, min(int(row["bin"]), queries.SCORE_BINS - 1))] += int(row["images"])
    overall = run(queries.LATENCY_OVERALL[source.dialect])
    return ReportData(
        source=source.description, generated_at=datetime.now(UTC), model_id=model_id, threshold=threshold,
        totals=totals,
        labels=run(queries.LABELS, limit=int(top_labels)),
        status=run(queries.STATUS),
        errors=run(queries.ERRORS),
        latency_unit=unit.lower(),
        latency=run(queries.LATENCY[source.dialect], unit=unit if source.dialect == "bigquery" else unit.lower()),
        latency_overall=overall[0] if overall else {},
        scores=bins,
        duplicates=source.query(queries.DUPLICATES, limit=int(duplicates)),
        duplicate_totals=source.query(queries.DUPLICATE_TOTALS)[0],
        low_confidence=run(queries.LOW_CONFIDENCE, {"threshold": float(threshold)}, limit=int(low_confidence)),
    )
