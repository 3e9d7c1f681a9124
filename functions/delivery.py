"""One way in: every carrier normalised once, at the edge, into one typed Delivery.

Carriers of events (the storage and Pub/Sub routes, and the standalone targets):
- a CloudEvent, binary or structured (Eventarc): a Cloud Storage object event, or a
  Pub/Sub `messagePublished` whose data is the push envelope;
- a Pub/Sub push envelope `{"message": {...}, "subscription": ...}`;
- an unwrapped Pub/Sub push (payload unwrapping with write metadata): the raw message
  data as the body, `x-goog-pubsub-*` headers, attributes as headers;
- a Cloud Storage notification inside any Pub/Sub carrier (attributes eventType,
  bucketId, objectId, ...): it becomes a storage delivery, whichever route it came to.
Carriers of requests (the HTTP route): an image, a form, JSON, a BigQuery remote call.

Adapters (storage_trigger, pubsub_trigger, http_trigger, bigquery_trigger) read a
Delivery and nothing else of the carrier.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import from_http

from functions import parsing
from shared.errors import BucketeyeError
from shared.refs import MAX_EVENT_ID_CHARS, ImageRef

STORAGE_EVENT_PREFIX = "google.cloud.storage.object.v1."
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
NOTIFICATION_ATTRIBUTES = ("eventType", "bucketId", "objectId")
MAX_ATTRIBUTES = 100  # Pub/Sub's own limit; more means a forged or broken envelope
# Pub/Sub's limits on attribute keys and values, in bytes. Unbounded, a 1 MB attribute reached
# the result line (over Cloud Logging's 256 KiB: a lost row).
MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES = 256, 1024
MAX_MESSAGE_ID_CHARS = 200
# Unwrapped push: metadata headers, and the attribute names we read (HTTP headers lose their case)
PUSH_HEADER = "x-goog-pubsub-"
KNOWN_ATTRIBUTES = NOTIFICATION_ATTRIBUTES + ("objectGeneration", "payloadFormat", "notificationConfig",
                                              "eventTime", "overwroteGeneration", "overwrittenByGeneration",
                                              "uri", "contentType")
# Headers that are HTTP's or the platform's own, never a message attribute
NOT_ATTRIBUTES = {"host", "content-type", "content-length", "user-agent", "accept", "accept-encoding",
                  "authorization", "connection", "transfer-encoding", "forwarded", "from", "traceparent",
                  "tracestate", "via", "expect", "cookie"}
NOT_ATTRIBUTE_PREFIXES = ("x-forwarded-", "x-cloud-", "x-goog-", "ce-", "x-envoy-", "x-request-")


@dataclass(frozen=True)
class Upload:
    """One file of a multipart form."""
    name: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Delivery:
    trigger: str                     # which adapter reads it: storage | pubsub | http | bigquery
    id: str = ""                     # CloudEvent id, Pub/Sub message id or BigQuery requestId
    time: datetime | None = None     # when the event happened or the message was published
    attributes: dict = field(default_factory=dict)  # Pub/Sub attributes; HTTP: content_type, top_k
    data: bytes = field(default=b"", repr=False)     # object resource, message data or request body
    event_type: str = ""             # CloudEvent type or notification eventType; "" for a plain message
    document: object = None          # the data parsed as JSON, where the carrier is JSON (HTTP, BigQuery)
    uploads: tuple[Upload, ...] = ()  # the files of a multipart form

    def __post_init__(self):  # ids are logged with every result: bounded once, here
        object.__setattr__(self, "id", self.id[:MAX_EVENT_ID_CHARS])

    @property
    def is_notification(self) -> bool:
        """A Cloud Storage notification carried by Pub/Sub (rather than an Eventarc CloudEvent)."""
        return all(name in self.attributes for name in NOTIFICATION_ATTRIBUTES)


class Undeliverable(Exception):
    """A carrier that could not be read: its error, and what identifies it in the error result."""

    def __init__(self, error: BucketeyeError, trigger: str, event_id: str = "", body: bytes | object = b""):
        super().__init__(str(error))
        self.error = error
        self.ref = event_identity(trigger, event_id, _as_bytes(body))


def event_identity(trigger: str, event_id: str, body: bytes) -> ImageRef:
    """A ref for a message that could not be read: identified by its event id or bytes,
    so each bad message is its own row (and a redelivered one the same row)."""
    return ImageRef(trigger=trigger, event_id=event_id or "sha256:" + hashlib.sha256(body).hexdigest()[:32])


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return json.dumps(data, sort_keys=True, default=str).encode("utf-8", "surrogatepass")


# --- event carriers --------------------------------------------------------------------------

def from_event_request(headers, body: bytes, route: str) -> Delivery:
    """What an event route received, whatever carried it. `route` is storage or pubsub:
    which CloudEvent types it accepts."""
    if "ce-type" in headers or headers.get("content-type", "").lower().startswith("application/cloudevents+json"):
        try:
            event = from_http(dict(headers), body)
        except (CloudEventError, ValueError, TypeError, KeyError, RecursionError) as exc:  # deep JSON: a 500 loops
            raise Undeliverable(BucketeyeError("bad_message", f"not a valid CloudEvent: {type(exc).__name__}"),
                                route, headers.get("ce-id", ""), body) from None
        return from_cloudevent(event, route)
    if PUSH_HEADER + "message-id" in headers:
        return from_unwrapped_push(headers, body, route)
    try:
        envelope = parsing.load_json(body, "the body")
    except BucketeyeError as exc:
        raise Undeliverable(exc, route, body=body) from None
    return from_envelope(envelope, route)


def from_cloudevent(event, route: str) -> Delivery:
    """A CloudEvent (from the request, or as functions-framework hands it to a target)."""
    event_type, event_id = str(event["type"] or ""), str(event["id"] or "")
    if route == "storage":
        if not event_type.startswith(STORAGE_EVENT_PREFIX):
            raise Undeliverable(BucketeyeError("bad_message", f"not a Cloud Storage event: {event_type[:100]!r}"),
                                route, event_id, event.data)
        return Delivery("storage", event_id, parsing.parse_time(event.get("time")), {}, _as_bytes(event.data),
                        event_type)
    if event_type != MESSAGE_PUBLISHED:
        raise Undeliverable(BucketeyeError("bad_message",
                                           f"not a Pub/Sub messagePublished event: {event_type[:100]!r}"),
                            route, event_id, event.data)
    envelope = event.data
    if isinstance(envelope, (bytes, str)):
        try:
            envelope = parsing.load_json(envelope, "the event data")
        except BucketeyeError as exc:
            raise Undeliverable(exc, route, event_id, envelope) from None
    return from_envelope(envelope, route, fallback_id=event_id)


def from_envelope(envelope, route: str, *, fallback_id: str = "") -> Delivery:
    """A Pub/Sub push envelope (also the data of a messagePublished CloudEvent)."""
    message = envelope.get("message") if isinstance(envelope, dict) else None
    message_id = (message.get("messageId") or message.get("message_id") or "") if isinstance(message, dict) else ""
    try:
        if not isinstance(message, dict):
            raise BucketeyeError("bad_message", 'not a Pub/Sub push envelope: expected {"message": {...}}')
        raw = message.get("data") or ""
        if not isinstance(raw, str):
            raise BucketeyeError("bad_message", "message data must be a base64 string")
        return _message(message.get("attributes") or {}, parsing.decode_b64(raw, "message data"), message_id,
                        message.get("publishTime") or message.get("publish_time"))
    except BucketeyeError as exc:
        raise Undeliverable(exc, route, str(message_id) or fallback_id, envelope) from None


def from_unwrapped_push(headers, body: bytes, route: str) -> Delivery:
    """A push subscription with payload unwrapping and write metadata: the message data is the
    body, its metadata x-goog-pubsub-* headers and its attributes the remaining headers."""
    message_id = headers.get(PUSH_HEADER + "message-id", "")
    try:
        return _message(_header_attributes(headers), body, message_id, headers.get(PUSH_HEADER + "publish-time"))
    except BucketeyeError as exc:
        raise Undeliverable(exc, route, message_id, body) from None


def _header_attributes(headers) -> dict:
    known = {name.lower(): name for name in KNOWN_ATTRIBUTES}
    attributes = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in NOT_ATTRIBUTES or lower.startswith(NOT_ATTRIBUTE_PREFIXES):
            continue
        attributes[known.get(lower, lower)] = value
    return attributes


def _message(attributes, data: bytes, message_id, publish_time) -> Delivery:
    _check_attributes(attributes)
    if not isinstance(message_id, str) or parsing.utf8_size(message_id) > MAX_MESSAGE_ID_CHARS:
        raise BucketeyeError("bad_message", f"messageId must be a string of at most {MAX_MESSAGE_ID_CHARS} characters")
    notification = all(name in attributes for name in NOTIFICATION_ATTRIBUTES)
    return Delivery("storage" if notification else "pubsub", message_id, parsing.parse_time(publish_time),
                    attributes, data, attributes.get("eventType", "") if notification else "")


def _check_attributes(attributes) -> None:
    if not isinstance(attributes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in attributes.items()):
        raise BucketeyeError("bad_message", "message attributes must be a map of strings")
    if len(attributes) > MAX_ATTRIBUTES:
        raise BucketeyeError("bad_message", f"the message has {len(attributes)} attributes; at most {MAX_ATTRIBUTES}")
    if any(parsing.utf8_size(k) > MAX_ATTRIBUTE_KEY_BYTES or parsing.utf8_size(v) > MAX_ATTRIBUTE_VALUE_BYTES
           for k, v in attributes.items()):
        raise BucketeyeError("bad_message", f"attribute keys have at most {MAX_ATTRIBUTE_KEY_BYTES} bytes and values "
                             f"at most {MAX_ATTRIBUTE_VALUE_BYTES} (UTF-8)")


# --- request carriers -----------------------------------------------------------------------

def from_http_request(request) -> Delivery:
    """POST / : a BigQuery remote call, JSON instances, a multipart form or raw image bytes."""
    attributes = {"content_type": request.mimetype or "", "top_k": request.args.get("top_k", "")}
    if request.mimetype == "application/json":
        document = _json_body(request)
        if is_remote_call(document):
            return Delivery("bigquery", str(document.get("requestId") or ""), attributes=attributes,
                            document=document)
        return Delivery("http", attributes=attributes, document=document)
    if request.mimetype == "multipart/form-data":
        uploads = tuple(Upload(f.filename or "", f.mimetype or "", f.read())
                        for name in request.files for f in request.files.getlist(name))
        return Delivery("http", attributes=attributes, uploads=uploads)
    return Delivery("http", attributes=attributes, data=request.get_data())


def is_remote_call(document) -> bool:
    return isinstance(document, dict) and "calls" in document and "requestId" in document


def _json_body(request):
    """The parsed JSON body, or None when it is not JSON. Werkzeug's silent mode catches only
    ValueError: JSON nested deeper than the parser's recursion limit raised RecursionError, a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None
