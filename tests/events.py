"""Requests shaped exactly as the cloud sends them, for tests that drive the server's
routes directly: an Eventarc Cloud Storage `object.finalized` CloudEvent (binary mode)
and a Pub/Sub push envelope."""
from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from functions.routes import PUBSUB_ROUTE, STORAGE_ROUTE
from functions.storage_trigger import FINALIZED

PROJECT = "local"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/requests-push"
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
JSON_TYPE = "application/json; charset=utf-8"
INT64_FIELDS = ("size", "generation", "metageneration")
# Fields the JSON API returns that an event's object resource does not carry (uniform access).
NOT_IN_EVENTS = ("acl", "owner")


@dataclass
class Request:
    kind: str          # "storage" | "pubsub"
    route: str
    headers: dict
    body: bytes
    description: str   # what a person reads in logs and dead letters


def numeric_id() -> str:
    """Pub/Sub message ids (and so Eventarc event ids) are decimal strings."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def rfc3339(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def storage_event(resource: dict, *, event_id: str | None = None) -> Request:
    """The object resource (as the JSON API returns it) -> the finalized CloudEvent."""
    data = {key: value for key, value in resource.items() if key not in NOT_IN_EVENTS}
    for name in INT64_FIELDS:  # the JSON API's int64 encoding: strings
        if data.get(name) is not None:
            data[name] = str(data[name])
    bucket, name = data["bucket"], data["name"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id or numeric_id(),
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-type": FINALIZED,
        "ce-subject": "objects/" + "".join(c if c.isprintable() else quote(c) for c in name),
        "ce-time": data.get("updated") or data.get("timeCreated") or rfc3339(),
        "content-type": JSON_TYPE,
        "user-agent": USER_AGENT,
    }
    return Request("storage", STORAGE_ROUTE, headers, json.dumps(data).encode(),
                   f"gs://{bucket}/{name}#{data.get('generation', '')}")


def pubsub_push(data: bytes, attributes: dict | None = None, *, description: str,
                message_id: str | None = None, publish_time: str | None = None) -> Request:
    """A message -> the push request a subscription sends (both spellings, as Pub/Sub does)."""
    message_id = message_id or numeric_id()
    publish_time = publish_time or rfc3339()
    message = {"data": base64.b64encode(data).decode(), "attributes": dict(attributes or {}),
               "messageId": message_id, "message_id": message_id,
               "publishTime": publish_time, "publish_time": publish_time}
    body = json.dumps({"message": message, "subscription": SUBSCRIPTION}).encode()
    headers = {"content-type": JSON_TYPE, "user-agent": USER_AGENT}
    return Request("pubsub", PUBSUB_ROUTE, headers, body, description)
