"""Cloud Storage uploads -> ImageRefs.

Two carriers of the same fact: an Eventarc `object.finalized` CloudEvent (data is the
object resource), or a Cloud Storage notification delivered by a Pub/Sub push
(attributes eventType/bucketId/objectId/objectGeneration, data the object resource).
Real events carry int64 fields (size, generation) as JSON strings.
"""
from __future__ import annotations

import json

from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.storage import check_names

FINALIZED = "google.cloud.storage.object.v1.finalized"
NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"
# The other object events (CloudEvent type suffix or notification eventType) -> what happened.
OTHER_EVENTS = {"deleted": "a delete", "archived": "an archive", "metadataUpdated": "a metadata update",
                "OBJECT_DELETE": "a delete", "OBJECT_ARCHIVE": "an archive", "OBJECT_METADATA_UPDATE": "a metadata update"}
MAX_CONTENT_TYPE = 256


def _int64(value, field: str) -> int | None:
    """int64 fields arrive as strings in real events, as ints from some tools."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BucketeyeError("bad_message", f"{field} must be an integer or a string of digits")
    if isinstance(value, int) and not 0 <= value < 2 ** 63:  # str() of a 5000-digit int raises ValueError
        raise BucketeyeError("bad_message", f"{field} must be a non-negative int64")
    text = str(value).strip()
    # isascii/len: "²" and 5000-digit strings pass isdigit() but make int() raise ValueError (a 500);
    # an int64 has at most 19 digits
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise BucketeyeError("bad_message", f"{field} must be a non-negative integer, got {text[:40]!r}")
    return int(text)


def _text(value, field: str, *, required: bool, max_chars: int | None = None) -> str:
    if value is None or value == "":
        if required:
            raise BucketeyeError("bad_message", f"the event has no {field}")
        return ""
    if not isinstance(value, str):
        raise BucketeyeError("bad_message", f"{field} must be a string")
    if max_chars is not None and len(value) > max_chars:  # it would be logged: keep result lines small
        raise BucketeyeError("bad_message", f"{field} has more than {max_chars} characters")
    return value


def ref_from_object(resource, *, trigger: str, event_id: str) -> ImageRef:
    """An object resource (the JSON API's shape) -> ImageRef."""
    if not isinstance(resource, dict):
        raise BucketeyeError("bad_message", "the event data is not a Cloud Storage object resource (JSON object)")
    bucket = _text(resource.get("bucket"), "bucket", required=True)
    name = _text(resource.get("name"), "object name", required=True)
    check_names(bucket, name)
    generation = _int64(resource.get("generation"), "generation")
    return ImageRef(
        trigger=trigger,
        uri=f"gs://{bucket}/{name}",
        bucket=bucket,
        object=name,
        generation=str(generation) if generation is not None else "",
        event_id=event_id,
        content_type=_text(resource.get("contentType"), "contentType", required=False, max_chars=MAX_CONTENT_TYPE),
        size_bytes=_int64(resource.get("size"), "size"),
        md5_hash=_text(resource.get("md5Hash"), "md5Hash", required=False, max_chars=64),
    )


def refs_from_cloudevent(event_type: str, event_id: str, data) -> list[ImageRef]:
    """A storage CloudEvent -> refs ([] for event types that need no work, e.g. deletes)."""
    if not event_type.startswith("google.cloud.storage.object.v1."):
        raise BucketeyeError("bad_message", f"not a Cloud Storage event: {event_type[:100]!r}")
    if event_type != FINALIZED:
        return []
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # nested too deep to parse is malformed too, not a 500
            raise BucketeyeError("bad_message", "the event data is not JSON") from None
    return [ref_from_object(data, trigger="storage", event_id=event_id)]


def refs_from_notification(attributes: dict, data: bytes, message_id: str) -> list[ImageRef]:
    """A Cloud Storage notification carried by Pub/Sub -> refs ([] for non-finalize events)."""
    if attributes.get("eventType") != NOTIFICATION_FINALIZE:
        return []
    resource = {}
    if data:
        try:
            resource = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            resource = {}  # payload format NONE or unreadable: the attributes still name the object
    if not isinstance(resource, dict):
        resource = {}
    resource = {**resource, "bucket": attributes.get("bucketId") or resource.get("bucket"),
                "name": attributes.get("objectId") or resource.get("name"),
                "generation": attributes.get("objectGeneration") or resource.get("generation")}
    return [ref_from_object(resource, trigger="storage", event_id=message_id)]


def is_notification(attributes: dict) -> bool:
    return "eventType" in attributes and "bucketId" in attributes and "objectId" in attributes


def not_finalized_reason(event_type: str) -> str:
    """How a skipped record names a non-upload event: the same words for both carriers, so a
    delete seen as a CloudEvent and as a notification is one row."""
    kind = OTHER_EVENTS.get(event_type.rpartition(".")[2] or event_type, "")
    return f"{kind} event, not an upload" if kind else f"a {event_type[:100]!r} event, not an upload"


def unfinalized_ref(data, *, event_id: str, trigger: str = "storage", attributes: dict | None = None) -> ImageRef:
    """The object a delete/archive/metadata event is about, as far as the event says; the event
    id alone when it names no object (its skipped record is then identified by the event)."""
    attributes = attributes or {}
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data) if data else {}
        except (ValueError, RecursionError):
            data = {}
    resource = data if isinstance(data, dict) else {}
    resource = {**resource, "bucket": attributes.get("bucketId") or resource.get("bucket"),
                "name": attributes.get("objectId") or resource.get("name"),
                "generation": attributes.get("objectGeneration") or resource.get("generation")}
    try:
        return ref_from_object(resource, trigger=trigger, event_id=event_id)
    except BucketeyeError:
        return ImageRef(trigger=trigger, event_id=event_id)
