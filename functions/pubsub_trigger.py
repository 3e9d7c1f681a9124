"""Pub/Sub messages: a pubsub Delivery -> ImageRefs.

What a message may say (a Cloud Storage notification is a storage Delivery, read by
storage_trigger):
- one or many gs:// URIs: JSON {"uri": …}, {"uris": […]}, ["gs://…", …], plain text lines,
  or an attribute "uri";
- an inline image: JSON {"b64": …} / {"image": {"b64": …}}, or the raw image bytes as data.
"""
from __future__ import annotations

from functions import parsing
from functions.delivery import Delivery
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.storage import parse_gs_uri


def refs(delivery: Delivery, *, max_images: int) -> list[ImageRef]:
    found = _refs_from_content(delivery)
    if not found:
        raise BucketeyeError("bad_message", "the message names no image: send gs:// URIs or an inline base64 image")
    if len(found) > max_images:
        raise BucketeyeError("bad_message", f"the message names {len(found)} images; at most {max_images}")
    return found


def _refs_from_content(message: Delivery) -> list[ImageRef]:
    if "uri" in message.attributes:
        return [_uri_ref(message.attributes["uri"], message)]
    data = message.data
    stripped = data.lstrip()[:1]
    if stripped in (b"{", b"["):
        try:
            payload = parsing.load_json(data, "message data")
        except BucketeyeError:
            raise BucketeyeError("bad_message", "message data looks like JSON but does not parse") from None
        return _refs_from_json(payload, message)
    if data.lstrip().lower().startswith((b"gs://", b"http://", b"https://")):
        lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
        return [_uri_ref(line, message) for line in lines]
    if data:
        return [ImageRef(trigger="pubsub", event_id=message.id, data=data,
                         content_type=message.attributes.get("contentType", ""))]
    return []


def _refs_from_json(payload, message: Delivery) -> list[ImageRef]:
    items = payload if isinstance(payload, list) else [payload]
    found: list[ImageRef] = []
    for item in items:
        if isinstance(item, str):
            found.append(_uri_ref(item, message))
        elif isinstance(item, dict) and isinstance(item.get("uris"), list):
            found += [_uri_ref(u, message) for u in item["uris"]]
        elif isinstance(item, dict) and "uri" in item:
            found.append(_uri_ref(item["uri"], message, key=item.get("key")))
        elif isinstance(item, dict) and ("b64" in item or isinstance(item.get("image"), dict)):
            b64 = item.get("b64", (item.get("image") or {}).get("b64"))
            if not isinstance(b64, str):
                raise BucketeyeError("bad_message", "an inline image needs a base64 string under b64")
            found.append(ImageRef(trigger="pubsub", event_id=message.id, key=parsing.key_text(item.get("key")),
                                  data=parsing.decode_b64(b64, "the inline image")))
        else:
            raise BucketeyeError("bad_message", 'each item must be a gs:// URI, {"uri": ...}, {"uris": [...]} '
                                 'or {"b64": ...}')
    return found


def _uri_ref(uri, message: Delivery, key=None) -> ImageRef:
    if not isinstance(uri, str):
        raise BucketeyeError("bad_message", "a URI must be a string")
    target = parse_gs_uri(uri)
    return ImageRef(trigger="pubsub", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                    object=target.name, event_id=message.id, key=parsing.key_text(key))

