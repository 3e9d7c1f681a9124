"""Pub/Sub messages -> ImageRefs.

The message arrives inside a `messagePublished` CloudEvent or a raw push envelope;
both carry `{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription"}`.
What the message may say:
- a Cloud Storage notification (attributes eventType, bucketId, objectId, objectGeneration);
- one or many gs:// URIs: JSON {"uri": …}, {"uris": […]}, ["gs://…", …], plain text lines,
  or an attribute "uri";
- an inline image: JSON {"b64": …} / {"image": {"b64": …}}, or the raw image bytes as data.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from functions import storage_trigger
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.storage import parse_gs_uri

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
MAX_ATTRIBUTES = 100  # Pub/Sub's own limit; more means a forged or broken envelope
# Pub/Sub's limits on attribute keys and values, in bytes; message ids are short decimal strings.
# Unbounded, a 1 MB attribute or id reached the result line (over Cloud Logging's 256 KiB: a lost row).
MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_MESSAGE_ID_CHARS = 256, 1024, 200


@dataclass
class Message:
    data: bytes
    attributes: dict
    message_id: str
    publish_time: datetime | None


def parse_envelope(body) -> Message:
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise BucketeyeError("bad_message", 'not a Pub/Sub push envelope: expected {"message": {...}}')
    message = body["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in attributes.items()):
        raise BucketeyeError("bad_message", "message attributes must be a map of strings")
    if len(attributes) > MAX_ATTRIBUTES:
        raise BucketeyeError("bad_message", f"the message has {len(attributes)} attributes; at most {MAX_ATTRIBUTES}")
    if any(_utf8_size(k) > MAX_ATTRIBUTE_KEY_BYTES or _utf8_size(v) > MAX_ATTRIBUTE_VALUE_BYTES
           for k, v in attributes.items()):
        raise BucketeyeError("bad_message", f"attribute keys have at most {MAX_ATTRIBUTE_KEY_BYTES} bytes and values "
                             f"at most {MAX_ATTRIBUTE_VALUE_BYTES} (UTF-8)")
    raw = message.get("data") or ""
    if not isinstance(raw, str):
        raise BucketeyeError("bad_message", "message data must be a base64 string")
    data = decode_b64(raw, "message data")
    message_id = message.get("messageId") or message.get("message_id") or ""
    if not isinstance(message_id, str) or _utf8_size(message_id) > MAX_MESSAGE_ID_CHARS:
        raise BucketeyeError("bad_message", f"messageId must be a string of at most {MAX_MESSAGE_ID_CHARS} characters")
    return Message(data=data, attributes=attributes, message_id=message_id,
                   publish_time=parse_time(message.get("publishTime") or message.get("publish_time")))


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so over any limit
        return 1 << 30


def decode_b64(text: str, what: str) -> bytes:
    # Standard or URL-safe alphabet, line-wrapped or unpadded; anything else is refused,
    # never decoded leniently into garbage bytes (that would be misreported as a bad image).
    compact = "".join(line.strip() for line in text.splitlines())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BucketeyeError("bad_message", f"{what} is not valid base64") from None


def parse_time(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def refs_from_message(message: Message, *, max_images: int) -> list[ImageRef]:
    attrs = message.attributes
    if storage_trigger.is_notification(attrs):
        return storage_trigger.refs_from_notification(attrs, message.data, message.message_id)
    refs = _refs_from_content(message, attrs)
    if not refs:
        raise BucketeyeError("bad_message", "the message names no image: send gs:// URIs or an inline base64 image")
    if len(refs) > max_images:
        raise BucketeyeError("bad_message", f"the message names {len(refs)} images; at most {max_images}")
    return refs


def _refs_from_content(message: Message, attrs: dict) -> list[ImageRef]:
    if "uri" in attrs:
        return [_uri_ref(attrs["uri"], message)]
    data = message.data
    stripped = data.lstrip()[:1]
    if stripped in (b"{", b"["):
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # nested too deep to parse is malformed too, not a 500
            raise BucketeyeError("bad_message", "message data looks like JSON but does not parse") from None
        return _refs_from_json(payload, message)
    if data.lstrip().lower().startswith((b"gs://", b"http://", b"https://")):
        lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
        return [_uri_ref(line, message) for line in lines]
    if data:
        return [ImageRef(trigger="pubsub", event_id=message.message_id, data=data,
                         content_type=attrs.get("contentType", ""))]
    return []


def _refs_from_json(payload, message: Message) -> list[ImageRef]:
    items = payload if isinstance(payload, list) else [payload]
    refs: list[ImageRef] = []
    for item in items:
        if isinstance(item, str):
            refs.append(_uri_ref(item, message))
        elif isinstance(item, dict) and isinstance(item.get("uris"), list):
            refs += [_uri_ref(u, message) for u in item["uris"]]
        elif isinstance(item, dict) and "uri" in item:
            refs.append(_uri_ref(item["uri"], message, key=item.get("key")))
        elif isinstance(item, dict) and ("b64" in item or isinstance(item.get("image"), dict)):
            b64 = item.get("b64", (item.get("image") or {}).get("b64"))
            if not isinstance(b64, str):
                raise BucketeyeError("bad_message", "an inline image needs a base64 string under b64")
            refs.append(ImageRef(trigger="pubsub", event_id=message.message_id, key=caller_key(item.get("key")),
                                 data=decode_b64(b64, "the inline image")))
        else:
            raise BucketeyeError("bad_message", 'each item must be a gs:// URI, {"uri": ...}, {"uris": [...]} '
                                 'or {"b64": ...}')
    return refs


MAX_KEY_CHARS = 256  # a caller's key is echoed and logged: bounded, so no result line passes 256 KiB


def caller_key(value) -> str:
    return "" if value is None else str(value)[:MAX_KEY_CHARS]


def _uri_ref(uri, message: Message, key=None) -> ImageRef:
    if not isinstance(uri, str):
        raise BucketeyeError("bad_message", "a URI must be a string")
    target = parse_gs_uri(uri)
    return ImageRef(trigger="pubsub", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                    object=target.name, event_id=message.message_id, key=caller_key(key))
