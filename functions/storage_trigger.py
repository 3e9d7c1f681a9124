"""Cloud Storage uploads: a storage Delivery -> ImageRefs.

Two carriers of the same fact reach here as one Delivery: an Eventarc object CloudEvent
(data is the object resource), or a Cloud Storage notification delivered by Pub/Sub
(attributes eventType/bucketId/objectId/objectGeneration; data the object resource, or
nothing with payload format NONE). Real events carry int64 fields (size, generation) as
JSON strings.
"""
from __future__ import annotations

import json

from functions import parsing
from functions.delivery import Delivery
from shared.errors import BucketeyeError, Skip
from shared.refs import ImageRef
from shared.storage import check_names

FINALIZED = "google.cloud.storage.object.v1.finalized"
NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"
# The other object events (CloudEvent type suffix or notification eventType) -> what happened.
OTHER_EVENTS = {"deleted": "a delete", "archived": "an archive", "metadataUpdated": "a metadata update",
                "OBJECT_DELETE": "a delete", "OBJECT_ARCHIVE": "an archive", "OBJECT_METADATA_UPDATE": "a metadata update"}
MAX_CONTENT_TYPE = 256


def is_upload(delivery: Delivery) -> bool:
    return delivery.event_type in (FINALIZED, NOTIFICATION_FINALIZE)


def refs(delivery: Delivery) -> list[ImageRef]:
    """The uploaded object as a ref ([] for a delete, archive or metadata update)."""
    if not is_upload(delivery):
        return []
    if delivery.is_notification:
        resource = _resource(delivery, lenient=True)  # payload format NONE: the attributes name the object
    else:
        resource = parsing.load_json(delivery.data, "the event data")
    return [ref_from_object(resource, event_id=delivery.id)]


def not_finalized(delivery: Delivery) -> tuple[ImageRef, Skip]:
    """The skipped record's ref and reason for an event that is not an upload. The words are the
    same for both carriers, so a delete seen as a CloudEvent and as a notification is one row."""
    kind = OTHER_EVENTS.get(delivery.event_type.rpartition(".")[2] or delivery.event_type, "")
    reason = f"{kind} event, not an upload" if kind else f"a {delivery.event_type[:100]!r} event, not an upload"
    try:
        ref = ref_from_object(_resource(delivery, lenient=True), event_id=delivery.id)
    except BucketeyeError:  # it names no object: the event alone identifies its record
        ref = ImageRef(trigger="storage", event_id=delivery.id)
    return ref, Skip("not_finalized", reason)


def _resource(delivery: Delivery, *, lenient: bool) -> dict:
    """The object resource, with what notification attributes say about the object on top."""
    try:
        resource = json.loads(delivery.data) if delivery.data else {}
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        resource = {}
    resource = resource if isinstance(resource, dict) else {}
    attributes = delivery.attributes
    return {**resource, "bucket": attributes.get("bucketId") or resource.get("bucket"),
            "name": attributes.get("objectId") or resource.get("name"),
            "generation": attributes.get("objectGeneration") or resource.get("generation")}


def ref_from_object(resource, *, event_id: str, trigger: str = "storage") -> ImageRef:
    """An object resource (the JSON API's shape) -> ImageRef."""
    if not isinstance(resource, dict):
        raise BucketeyeError("bad_message", "the event data is not a Cloud Storage object resource (JSON object)")
    bucket = parsing.text(resource.get("bucket"), "bucket", required=True)
    name = parsing.text(resource.get("name"), "object name", required=True)
    check_names(bucket, name)
    generation = parsing.int64(resource.get("generation"), "generation")
    return ImageRef(
        trigger=trigger,
        uri=f"gs://{bucket}/{name}",
        bucket=bucket,
        object=name,
        generation=str(generation) if generation is not None else "",
        event_id=event_id,
        content_type=parsing.text(resource.get("contentType"), "contentType", max_chars=MAX_CONTENT_TYPE),
        size_bytes=parsing.int64(resource.get("size"), "size"),
        md5_hash=parsing.text(resource.get("md5Hash"), "md5Hash", max_chars=64),
    )

