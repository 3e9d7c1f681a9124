"""Work messages: the listed URIs, many per message, in the form the Pub/Sub route
accepts ({"uris": [...]}, functions/pubsub_trigger.py)."""
from __future__ import annotations

import json

ATTRIBUTES = {"origin": "bucketeye-backfill"}  # shows where a message came from (e.g. in a dead-letter topic)
PUBSUB_MAX_BYTES = 10_000_000                    # Pub/Sub's request limit; 50 URIs are a few KB


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def body(uris: list[str]) -> bytes:
    data = json.dumps({"uris": uris}, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > PUBSUB_MAX_BYTES:
        raise ValueError(f"a message of {len(uris)} URIs is {len(data)} bytes, over Pub/Sub's limit")
    return data


def bodies(uris: list[str], per_message: int) -> list[tuple[list[str], bytes]]:
    """(the URIs, the message body) for each message, at most per_message URIs in each."""
    return [(group, body(group)) for group in chunks(uris, per_message)]
