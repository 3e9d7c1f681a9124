"""Event handling shared by the storage and Pub/Sub triggers: stale and skip checks,
de-duplication, classification, logging, and the answer that tells the platform
whether to redeliver.

Permanent problems are acknowledged (200) and logged as error results; transient
ones answer 503 (429 when overloaded) so the platform redelivers. Nothing loops,
nothing is lost.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from functions import runtime
from functions.dedup import RecentResults
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.result_log import log_result
from shared.results import Result, make_result_id

log = logging.getLogger("bucketeye")
_recent_lock = threading.Lock()
_recent: dict = {}


@dataclass
class Outcome:
    status: int
    body: dict = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429


def recent() -> RecentResults:
    with _recent_lock:
        if "cache" not in _recent:
            _recent["cache"] = RecentResults(runtime.settings().dedup_window_s)
        return _recent["cache"]


def skip_reason(ref: ImageRef) -> str:
    settings = runtime.settings()
    if ref.object and ref.object.endswith("/"):
        return "a folder placeholder, not an image"
    if ref.object and settings.object_skipped(ref.object):
        return "under a skipped prefix (SKIP_PREFIXES)"
    if ref.content_type and not ref.content_type.lower().startswith("image/"):
        return f"content type {ref.content_type!r} is not an image"
    return ""


def event_identity(trigger: str, event_id: str, body: bytes) -> ImageRef:
    """A ref for a message that could not be parsed: identified by its event id or bytes,
    so each bad message is its own row (and a redelivered one the same row)."""
    identity = event_id or "sha256:" + hashlib.sha256(body).hexdigest()[:32]
    return ImageRef(trigger=trigger, event_id=identity[:200])


def reject(ref: ImageRef, error: BucketeyeError) -> Outcome:
    """A message that names no classifiable work: log one error result, acknowledge."""
    model = _model_info()
    log_result(Result(ref=ref, model=model, error=error))
    status = _status_for([error])
    return Outcome(status, {"error": error.as_dict(), "acknowledged": status < 400})


def process(refs: list[ImageRef], *, event_time: datetime | None) -> Outcome:
    settings = runtime.settings()
    age = _age_s(event_time)
    if settings.max_event_age_s > 0 and age is not None and age > settings.max_event_age_s:
        error = BucketeyeError("stale_event", f"the event is {age:.0f} s old; the limit is "
                               f"{settings.max_event_age_s:.0f} s (MAX_EVENT_AGE_S)")
        for ref in refs:
            log_result(Result(ref=ref, model=_model_info(), error=error))
        return Outcome(200, {"error": error.as_dict(), "acknowledged": True})

    skipped = [{"uri": ref.uri, "reason": reason} for ref in refs if (reason := skip_reason(ref))]
    todo = [ref for ref in refs if not skip_reason(ref)]
    for item in skipped:
        log.info("skipped %s: %s", item["uri"], item["reason"])
    if not todo:
        return Outcome(200, {"results": [], "skipped": skipped})

    try:
        engine = runtime.engine()
    except BucketeyeError as exc:
        return Outcome(_status_for([exc]), {"error": exc.as_dict()})

    cache = recent()
    fresh, duplicates = [], []
    for ref in todo:
        (duplicates if cache.seen(delivery_id(ref, engine.model.id)) else fresh).append(ref)
    results = engine.classify(fresh) if fresh else []
    summaries = []
    for ref, result in zip(fresh, results):
        record = log_result(result)
        if result.ok or not result.error.retryable:
            # Remember the id as delivered too: a URI named without a generation gets its
            # generation only when read, and its redelivery is looked up before reading.
            cache.remember(delivery_id(ref, engine.model.id))
            cache.remember(result.result_id)
        summaries.append(_summary(record))
    errors = [r.error for r in results if not r.ok]
    status = _status_for(errors)
    return Outcome(status, {"results": summaries, "skipped": skipped,
                            "duplicates": [delivery_id(r, engine.model.id) for r in duplicates]})


def delivery_id(ref: ImageRef, model_id: str) -> str:
    """How a delivery is recognised before anything is read. An event naming the object
    version: its result_id. A URI without a generation may name any version, so it is
    recognised by the message that named it: a redelivery repeats the message id, while a
    new message about an overwritten object is new work (its result_id differs anyway)."""
    if ref.bucket and ref.object and not ref.generation and ref.event_id:
        key = f"delivery|{ref.event_id}|gs://{ref.bucket}/{ref.object}|{model_id}"
        # surrogatepass: a lone surrogate in an event id (a JSON "\udc80" escape) made encode() raise, a 500
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return make_result_id(ref, model_id)


def _status_for(errors: list[BucketeyeError]) -> int:
    retryable = [e for e in errors if e.retryable]
    if not retryable:
        return 200
    return 429 if any(e.code == "overloaded" for e in retryable) else 503


def _age_s(event_time: datetime | None) -> float | None:
    if event_time is None:
        return None
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - event_time).total_seconds()


def _model_info() -> dict:
    """The model's identity when loaded; results of events rejected before load still log."""
    if runtime.is_ready():
        return runtime.engine().model.info
    return {"name": None, "version": None, "id": ""}


def _summary(record: dict) -> dict:
    return {key: record[key] for key in ("result_id", "status", "top_label", "top_score", "error")} | {
        "uri": record["source"]["uri"]}
