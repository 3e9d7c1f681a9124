"""The result record: one per image, the jsonPayload of one log entry.

Rules that keep the BigQuery export healthy: snake_case lowercase names, every field
keeps one type forever (the first exported row fixes a column's type), no lists of
lists, free-form values as strings. Absent values are null, never a different type.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from shared import APP_NAME, SCHEMA_VERSION
from shared.errors import BucketeyeError, Skip
from shared.refs import ImageRef

# Fixed set, so the exported timings_ms column never changes shape.
TIMING_NAMES = ("fetch", "decode", "queue", "inference", "total")


def source_identity(ref: ImageRef) -> str:
    """What makes an image 'the same upload': its object version, or its content."""
    if ref.bucket and ref.object:
        return f"gs://{ref.bucket}/{ref.object}#{ref.generation}"
    if ref.data is not None:
        return "sha256:" + hashlib.sha256(ref.data).hexdigest()
    if ref.uri:
        return ref.uri
    # A message that names no image (unparseable, oversize): the event itself is the identity,
    # so each bad message is its own row and its redelivery the same row.
    return f"{ref.trigger}-event:{ref.event_id}"


def make_result_id(ref: ImageRef, model_id: str, skipped: str = "") -> str:
    """Deterministic id: redeliveries of one upload share it, so SQL can de-duplicate. A skipped
    event has an id of its own (per reason), so it never competes with the image's result."""
    identity = f"{source_identity(ref)}|{model_id}" + (f"|skipped:{skipped}" if skipped else "")
    # surrogatepass: a lone surrogate in an event id (a JSON "\udc80" escape) must not raise
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:32]


@dataclass
class Prediction:
    label: str
    label_id: int
    score: float


@dataclass
class Detection:
    label: str
    label_id: int
    score: float
    box: tuple[float, float, float, float]  # ymin, xmin, ymax, xmax, normalised to [0, 1]


@dataclass
class ImageInfo:
    format: str
    width: int
    height: int


@dataclass
class Result:
    ref: ImageRef
    model: dict  # {"name", "version", "id"}
    predictions: list[Prediction] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    image: ImageInfo | None = None
    error: BucketeyeError | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    content_md5: str = ""
    skip: Skip | None = None  # deliberately not classified, and why

    @property
    def ok(self) -> bool:
        return self.error is None and self.skip is None

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "skipped" if self.skip is not None else "ok"

    @property
    def result_id(self) -> str:
        return make_result_id(self.ref, self.model.get("id", ""), self.skip.identity if self.skip else "")

    def to_record(self) -> dict:
        ref = self.ref
        best = self.predictions or self.detections
        top = best[0] if best else None
        return {
            "app": APP_NAME,
            "schema_version": SCHEMA_VERSION,
            "result_id": self.result_id,
            "status": self.status,
            "source": {
                "trigger": ref.trigger,
                "uri": ref.uri or None,
                "bucket": ref.bucket or None,
                "object": ref.object or None,
                "generation": ref.generation or None,
                "event_id": ref.event_id or None,
                "content_type": ref.content_type or None,
                "size_bytes": ref.size_bytes,
                "key": ref.key or None,
                "content_md5": self.content_md5 or ref.md5_hash or None,
            },
            "image": (
                {"format": self.image.format, "width": self.image.width, "height": self.image.height}
                if self.image else {"format": None, "width": None, "height": None}
            ),
            "model": {
                "name": self.model.get("name"),
                "version": self.model.get("version"),
                "id": self.model.get("id"),
            },
            "predictions": [
                {"label": p.label, "label_id": p.label_id, "score": round(float(p.score), 6)}
                for p in self.predictions
            ],
            "detections": [
                {
                    "label": d.label,
                    "label_id": d.label_id,
                    "score": round(float(d.score), 6),
                    "box": dict(zip(("ymin", "xmin", "ymax", "xmax"), (round(float(v), 6) for v in d.box))),
                }
                for d in self.detections
            ],
            "top_label": top.label if top else None,
            "top_score": round(float(top.score), 6) if top else None,
            "timings_ms": {
                name: round(float(self.timings_ms[name]), 3) if name in self.timings_ms else None
                for name in TIMING_NAMES
            },
            # a skipped record says why here, with the same shape (code, message, retryable)
            "error": self.error.as_dict() if self.error else self.skip.as_dict() if self.skip else None,
        }
