"""What happens to the work an event names: skip checks, de-duplication, the age check,
classification and logging, ending in the Outcome that tells the platform whether to redeliver.

Every event ends as at least one record: a result (`ok` or `error`), or a `skipped` record
saying why it was deliberately not classified. Permanent problems are acknowledged (200);
transient ones answer with the error's status (503, or 429 when overloaded) so the platform
redelivers.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

from functions.answers import Outcome, event_error, settled
from functions.service import Service
from shared.errors import BucketeyeError, Skip
from shared.imaging import is_generic_type
from shared.refs import ImageRef
from shared.result_log import log_result
from shared.results import Result, make_result_id


def skip_reason(service: Service, ref: ImageRef) -> Skip | None:
    """Why a named object is not classified at all, or None. A generic or missing content type
    says nothing: such an object is read and identified by its bytes (ref.only_images)."""
    if ref.object and ref.object.endswith("/"):
        return Skip("folder")
    if ref.object and service.settings.object_skipped(ref.object):
        return Skip("skipped_prefix")
    if not is_generic_type(ref.content_type) and not ref.content_type.lower().startswith("image/"):
        return Skip("not_an_image", f"content type {ref.content_type!r} is not an image")
    return None


def reject(service: Service, ref: ImageRef, error: BucketeyeError) -> Outcome:
    """A message that names no classifiable work: log one error result, acknowledge."""
    log_result(Result(ref=ref, model=service.model_info(), error=error))
    return event_error(error)


def skip(service: Service, ref: ImageRef, reason: Skip) -> dict:
    """Log the `skipped` record of an event deliberately not classified; its summary."""
    record = log_result(Result(ref=ref, model=service.model_info(), skip=reason))
    return _skip_summary(ref, reason, record)


def _skip_summary(ref: ImageRef, reason: Skip, record: dict) -> dict:
    return {"uri": ref.uri or None, "reason": reason.code, "message": reason.message, "result_id": record["result_id"]}


def _by_bytes(ref: ImageRef) -> ImageRef:
    """An uploaded object whose content type says nothing is classified only if its bytes are an image."""
    generic_upload = ref.trigger == "storage" and ref.bucket and is_generic_type(ref.content_type)
    return replace(ref, only_images=True) if generic_upload else ref


def skip_event(service: Service, ref: ImageRef, reason: Skip) -> Outcome:
    return Outcome({"results": [], "skipped": [skip(service, ref, reason)]})


def process(service: Service, refs: list[ImageRef], *, event_time: datetime | None = None) -> Outcome:
    """Classify the refs an event names. `event_time` is given for storage events only: what
    a user asked for (a Pub/Sub request, a backfill message) is never too old to do."""
    todo, skipped = [], []
    for ref in refs:
        reason = skip_reason(service, ref)
        if reason is not None:
            skipped.append(skip(service, ref, reason))
        else:
            todo.append(_by_bytes(ref))
    if not todo:
        return Outcome({"results": [], "skipped": skipped})

    try:
        engine = service.engine()
    except BucketeyeError as exc:
        return event_error(exc)

    # De-duplication first: a late redelivery of finished work is a no-op, not a stale_event.
    cache = service.recent
    fresh, duplicates = [], []
    for ref in todo:
        (duplicates if cache.seen(delivery_id(ref, engine.model.id)) else fresh).append(ref)
    duplicate_ids = [delivery_id(r, engine.model.id) for r in duplicates]
    stale = _stale_error(service, event_time)
    if stale is not None and fresh:
        for ref in fresh:
            log_result(Result(ref=ref, model=engine.model.info, error=stale))
        return Outcome({"error": stale.as_dict(), "acknowledged": True, "skipped": skipped,
                        "duplicates": duplicate_ids})

    results = engine.classify(fresh) if fresh else []
    summaries = []
    for ref, result in zip(fresh, results):
        record = log_result(result)
        if result.error is None or not result.error.retryable:
            # Remember the id as delivered too: a URI named without a generation gets its
            # generation only when read, and its redelivery is looked up before reading.
            cache.remember(delivery_id(ref, engine.model.id))
            cache.remember(result.result_id)
        if result.skip is not None:  # its bytes were not an image
            skipped.append(_skip_summary(ref, result.skip, record))
        else:
            summaries.append(_summary(record))
    return settled({"results": summaries, "skipped": skipped, "duplicates": duplicate_ids},
                   [r.error for r in results if r.error is not None])


def _stale_error(service: Service, event_time: datetime | None) -> BucketeyeError | None:
    limit = service.settings.max_event_age_s
    age = _age_s(event_time)
    if limit <= 0 or age is None or age <= limit:
        return None
    return BucketeyeError("stale_event", f"the event is {age:.0f} s old; the limit is {limit:.0f} s (MAX_EVENT_AGE_S)")


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


def _age_s(event_time: datetime | None) -> float | None:
    if event_time is None:
        return None
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    return (datetime.now(UTC) - event_time).total_seconds()


def _summary(record: dict) -> dict:
    return {key: record[key] for key in ("result_id", "status", "top_label", "top_score", "error")} | {
        "uri": record["source"]["uri"]}
