"""Requests and CloudEvents on the event routes -> Outcomes.

The storage route takes an Eventarc CloudEvent or a Pub/Sub push carrying a Cloud
Storage notification; the Pub/Sub route takes a messagePublished CloudEvent or a
raw push envelope. Anything unparseable is acknowledged with a bad_message result.
"""
from __future__ import annotations

import json
import uuid

from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import from_http

from functions import events, pubsub_trigger, runtime, storage_trigger
from shared.errors import BucketeyeError, Skip
from shared.refs import ImageRef


def _attrs(event) -> tuple[str, str, object]:
    # the id is logged with every result: bounded as event_identity bounds it (a structured
    # event's 1 MB id made a result line over Cloud Logging's 256 KiB limit, a lost row)
    return str(event["type"] or ""), str(event["id"] or "")[:200], event.data


def handle_storage_cloudevent(event) -> events.Outcome:
    event_type, event_id, data = _attrs(event)
    try:
        refs = storage_trigger.refs_from_cloudevent(event_type, event_id, data)
    except BucketeyeError as exc:
        return events.reject(events.event_identity("storage", event_id, _bytes(data)), exc)
    if not refs:  # a delete, archive or metadata update: accounted for as skipped
        return events.skip_event(storage_trigger.unfinalized_ref(data, event_id=event_id),
                                 Skip("not_finalized", storage_trigger.not_finalized_reason(event_type)))
    return events.process(refs, event_time=pubsub_trigger.parse_time(event.get("time")))


def handle_pubsub_cloudevent(event) -> events.Outcome:
    event_type, event_id, data = _attrs(event)
    if event_type != pubsub_trigger.MESSAGE_PUBLISHED:
        return events.reject(events.event_identity("pubsub", event_id, _bytes(data)),
                             BucketeyeError("bad_message", f"not a Pub/Sub messagePublished event: {event_type[:100]!r}"))
    return _handle_envelope("pubsub", data, event_id)


def _handle_envelope(trigger: str, body, event_id: str = "") -> events.Outcome:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):  # too deeply nested to parse: was a 500, redelivered forever
            return events.reject(events.event_identity(trigger, event_id, _bytes(body)),
                                 BucketeyeError("bad_message", "the body is not JSON"))
    try:
        message = pubsub_trigger.parse_envelope(body)
        refs = pubsub_trigger.refs_from_message(message, max_images=runtime.settings().max_instances)
    except BucketeyeError as exc:
        message_id = ((body.get("message") or {}).get("messageId") if isinstance(body, dict)
                      and isinstance(body.get("message"), dict) else "") or event_id
        return events.reject(events.event_identity(trigger, str(message_id), _bytes(body)), exc)
    attributes = message.attributes
    if not storage_trigger.is_notification(attributes):  # a request: never too old to do
        return events.process(refs)
    if not refs:  # a delete, archive or metadata update notification: accounted for as skipped
        reason = storage_trigger.not_finalized_reason(attributes.get("eventType", ""))
        ref = storage_trigger.unfinalized_ref(message.data, event_id=message.message_id, attributes=attributes)
        return events.skip_event(ref, Skip("not_finalized", reason))
    return events.process(refs, event_time=message.publish_time)


def _bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data, sort_keys=True, default=str).encode()


def refuse_oversize(request, trigger: str) -> events.Outcome | None:
    """A body over MAX_REQUEST_BYTES, refused before it is read (declared) or as soon as it
    passes the limit (chunked). Neither Pub/Sub push (10 MB messages) nor Eventarc sends such
    a body under the default limit, and retrying cannot shrink it: a permanent problem, so it is
    acknowledged (2xx, no redelivery loop) and logged as a too_large error result. Its ce-id
    identifies it when there is one; a push envelope's message id is inside the unread body."""
    limit = runtime.settings().max_request_bytes
    request.max_content_length = limit + 1  # Werkzeug stops reading there
    declared = request.content_length
    if declared is not None:
        if declared <= limit:
            return None
        message = f"the request is {declared} bytes; the limit is {limit} (MAX_REQUEST_BYTES)"
    elif len(request.get_data()) <= limit:
        return None
    else:
        message = f"the request is over {limit} bytes (MAX_REQUEST_BYTES)"
    event_id = request.headers.get("ce-id", "")[:200] or f"oversize-{uuid.uuid4().hex}"
    return events.reject(ImageRef(trigger=trigger, event_id=event_id), BucketeyeError("too_large", message))


def _is_cloudevent(request) -> bool:
    return "ce-type" in request.headers or request.mimetype == "application/cloudevents+json"


def _from_request(request, trigger: str):
    """A CloudEvent from a request, or an Outcome rejecting it."""
    body = request.get_data()
    try:
        return from_http(dict(request.headers), body), None
    except (CloudEventError, ValueError, TypeError, KeyError, RecursionError) as exc:  # deep JSON: a 500 loops
        error = BucketeyeError("bad_message", f"not a valid CloudEvent: {type(exc).__name__}")
        return None, events.reject(events.event_identity(trigger, request.headers.get("ce-id", ""), body), error)


def handle_storage_request(request) -> events.Outcome:
    if _is_cloudevent(request):
        event, rejected = _from_request(request, "storage")
        return rejected or handle_storage_cloudevent(event)
    return _handle_envelope("storage", request.get_data())


def handle_pubsub_request(request) -> events.Outcome:
    if _is_cloudevent(request):
        event, rejected = _from_request(request, "pubsub")
        return rejected or handle_pubsub_cloudevent(event)
    return _handle_envelope("pubsub", request.get_data())
