"""Which results become training examples: the query, the filters, the split.

Rows come from the `results` view (BigQuery, or the local warehouse through the same
SQL). One example per image (its URI): the newest result wins when an image was
classified more than once. Filters on status and model run in SQL; label and score
filters in Python, since for detections they apply to each box.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

CLASSIFICATION, DETECTION = "classification", "detection"
TRAIN, VALIDATION = "train", "validation"

ROWS_SQL = """SELECT uri, bucket, object, generation, timestamp, status, model_id, top_label, top_score, detections
FROM {results}
WHERE uri IS NOT NULL AND bucket IS NOT NULL {where}
ORDER BY uri, timestamp DESC"""


@dataclass(frozen=True)
class Filters:
    status: str = "ok"               # ok | error | any
    labels: frozenset = frozenset()  # empty: every label
    min_score: float = 0.0
    model_id: str | None = None


@dataclass
class Box:
    label: str
    ymin: float
    xmin: float
    ymax: float
    xmax: float


@dataclass
class Example:
    uri: str
    bucket: str
    object: str
    generation: str
    split: str
    label: str | None = None                       # classification
    boxes: list[Box] = field(default_factory=list)  # detection


@dataclass
class Selection:
    task: str
    examples: list[Example]
    skipped: list[dict]  # {"uri", "reason"}

    @property
    def labels(self) -> list[str]:
        """Every label used, sorted: label i is id i + 1 (ids 1..N, as training jobs want)."""
        names = {e.label for e in self.examples if e.label} | {b.label for e in self.examples for b in e.boxes}
        return sorted(names)


def query(source, filters: Filters) -> list[dict]:
    where, params = [], {}
    if filters.status != "any":
        where.append("AND status = @status")
        params["status"] = filters.status
    if filters.model_id:
        where.append("AND model_id = @model_id")
        params["model_id"] = filters.model_id
    return source.query(ROWS_SQL, params, where=" ".join(where))


def split_of(uri: str, validation_share: float) -> str:
    """Deterministic: an image lands in the same split on every export, whatever else is exported."""
    point = int.from_bytes(hashlib.sha256(uri.encode("utf-8")).digest()[:8], "big") / 2 ** 64
    return VALIDATION if point < validation_share else TRAIN


def select(rows: list[dict], filters: Filters, *, task: str | None, validation_share: float) -> Selection:
    latest = {}
    for row in rows:  # newest first within a URI (ROWS_SQL's order)
        latest.setdefault(row["uri"], row)
    if task is None:
        task = DETECTION if any(row.get("detections") for row in latest.values()) else CLASSIFICATION
    examples, skipped = [], []
    for uri, row in latest.items():
        example = Example(uri=uri, bucket=row["bucket"], object=row["object"], generation=row.get("generation") or "",
                          split=split_of(uri, validation_share))
        if task == CLASSIFICATION:
            label, score = row.get("top_label"), row.get("top_score")
            reason = _classification_reason(label, score, filters)
            example.label = label
        else:
            example.boxes = [_box(d) for d in row.get("detections") or [] if _box_kept(d, filters)]
            reason = None if example.boxes else "no detection passes the label and score filters"
        if reason:
            skipped.append({"uri": uri, "reason": reason})
        else:
            examples.append(example)
    return Selection(task=task, examples=examples, skipped=skipped)


def _classification_reason(label, score, filters: Filters) -> str | None:
    if not label:
        return "no label (an error result)"
    if filters.labels and label not in filters.labels:
        return f"label {label!r} is not among the wanted labels"
    if (score or 0.0) < filters.min_score:
        return f"score {score:.3f} is below {filters.min_score}"
    return None


def _box_kept(detection: dict, filters: Filters) -> bool:
    return ((not filters.labels or detection["label"] in filters.labels)
            and float(detection["score"]) >= filters.min_score)


def _box(detection: dict) -> Box:
    box = detection["box"]
    return Box(detection["label"], *(float(box[k]) for k in ("ymin", "xmin", "ymax", "xmax")))
