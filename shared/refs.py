"""ImageRef: where an image's bytes are, plus what is known about its source.

Trigger adapters build these from their payloads; the engine turns each into a Result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Ids and keys come from callers and are logged with every result: bounded here, once, so no
# result line passes Cloud Logging's 256 KiB entry limit (a lost row). Ids: Pub/Sub message ids
# and CloudEvent ids are short; keys: a caller's label for an instance.
MAX_EVENT_ID_CHARS = 200
MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class ImageRef:
    trigger: str                      # "storage" | "pubsub" | "http" | "cli" | "bigquery"
    uri: str = ""                     # gs://bucket/object, or a local path for the CLI
    bucket: str = ""
    object: str = ""
    generation: str = ""              # int64 as a string, as Cloud Storage sends it
    event_id: str = ""
    content_type: str = ""
    size_bytes: int | None = None
    md5_hash: str = ""                # base64 MD5 from object metadata, when known
    data: bytes | None = field(default=None, repr=False)  # inline bytes (HTTP body, base64 message)
    key: str = ""                     # caller's key, echoed back (HTTP instances)
    local_path: str = ""              # a file on this machine: set by the CLI only, never by a trigger
    only_images: bool = False         # the type said nothing: classify only bytes with an image signature

    def __post_init__(self):
        object.__setattr__(self, "event_id", self.event_id[:MAX_EVENT_ID_CHARS])
        object.__setattr__(self, "key", self.key[:MAX_KEY_CHARS])

    @property
    def is_inline(self) -> bool:
        return self.data is not None
