"""Each route's work: a carrier -> a Delivery (delivery.py) -> refs (the trigger's adapter)
-> the engine (events.py, or the request's own call) -> an Outcome (answers.py).

Handlers get the Service passed in; they never read the process's globals."""
from __future__ import annotations

import uuid

from werkzeug.exceptions import RequestEntityTooLarge

from functions import bigquery_trigger, delivery, events, http_trigger, pubsub_trigger, storage_trigger
from functions.answers import Outcome, request_error
from functions.service import Service
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.result_log import log_result


def oversize(request, limit: int) -> BucketeyeError | None:
    """A body over MAX_REQUEST_BYTES: refused before it is read when declared, or as soon as it
    passes the limit when chunked (Werkzeug silently cuts a chunked body at max_content_length:
    one byte more than the limit tells "over" from "at")."""
    request.max_content_length = limit + 1
    declared = request.content_length
    if declared is not None:
        if declared <= limit:
            return None
        return BucketeyeError("too_large", f"the request is {declared} bytes; the limit is {limit} (MAX_REQUEST_BYTES)")
    if len(request.get_data()) <= limit:
        return None
    return BucketeyeError("too_large", f"the request is over {limit} bytes (MAX_REQUEST_BYTES)")


# --- events ------------------------------------------------------------------------------

def event_request(service: Service, request, route: str) -> Outcome:
    """POST /events/storage or /events/pubsub, whatever carries the event."""
    try:
        return event(service, delivery.from_event_request(request.headers, request.get_data(), route))
    except delivery.Undeliverable as exc:
        return events.reject(service, exc.ref, exc.error)


def oversize_event(service: Service, request, route: str, error: BucketeyeError) -> Outcome:
    """An event too large to read: no redelivery can shrink it, so it is acknowledged and logged as
    a too_large result. Its ce-id or message id header identifies it when there is one (a push
    envelope's message id is inside the unread body): otherwise each one is its own row."""
    headers = request.headers
    event_id = headers.get("ce-id", "") or headers.get(delivery.PUSH_HEADER + "message-id", "")
    return events.reject(service, ImageRef(trigger=route, event_id=event_id or f"oversize-{uuid.uuid4().hex}"), error)


def cloudevent(service: Service, cloud_event, route: str) -> Outcome:
    """A standalone target's CloudEvent (functions-framework has parsed the carrier)."""
    try:
        return event(service, delivery.from_cloudevent(cloud_event, route))
    except delivery.Undeliverable as exc:
        return events.reject(service, exc.ref, exc.error)


def event(service: Service, item: delivery.Delivery) -> Outcome:
    if item.trigger == "storage":
        return _storage(service, item)
    try:
        refs = pubsub_trigger.refs(item, max_images=service.settings.max_instances)
    except BucketeyeError as exc:
        return events.reject(service, delivery.event_identity("pubsub", item.id, item.data), exc)
    return events.process(service, refs)  # a request: never too old to do


def _storage(service: Service, item: delivery.Delivery) -> Outcome:
    try:
        refs = storage_trigger.refs(item)
    except BucketeyeError as exc:
        return events.reject(service, delivery.event_identity("storage", item.id, item.data), exc)
    if not refs:  # a delete, archive or metadata update: accounted for as skipped
        return events.skip_event(service, *storage_trigger.not_finalized(item))
    return events.process(service, refs, event_time=item.time)


# --- requests ------------------------------------------------------------------------------

def http_request(service: Service, request) -> Outcome:
    """POST /: images in, predictions out; or a BigQuery remote call."""
    settings = service.settings
    try:
        item = delivery.from_http_request(request)
        if item.trigger == "bigquery":
            return _bigquery(service, item)
        work = http_trigger.parse(item, max_instances=settings.max_instances)
        engine = service.engine()
    except RequestEntityTooLarge:  # a form or JSON body read past max_content_length
        return request_error(BucketeyeError("too_large", f"the request is over {settings.max_request_bytes} bytes"))
    except BucketeyeError as exc:
        return request_error(exc)
    results = engine.classify(work.refs, top_k=work.top_k)
    records = [log_result(result) for result in results]
    return http_trigger.answer(work, records, [result.error for result in results])


def _bigquery(service: Service, item: delivery.Delivery) -> Outcome:
    try:
        calls = bigquery_trigger.parse(item, max_calls=service.settings.batch_queue_size)
        engine = service.engine()
    except BucketeyeError as exc:
        return bigquery_trigger.error(exc)
    results = bigquery_trigger.classify(engine, calls)
    for result in results:
        log_result(result)
    return bigquery_trigger.answer(results)
