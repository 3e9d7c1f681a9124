"""Stable error codes and whether retrying can help.

Every failure the engine reports carries one of these codes. Event handlers use
`retryable` to choose between acknowledging (permanent) and asking the platform to
redeliver (transient), so poison messages never loop and transient faults never lose work.
"""
from __future__ import annotations

# code -> (retryable, default message)
ERROR_CODES: dict[str, tuple[bool, str]] = {
    "unsupported_format": (False, "the data is not an image format we can decode"),
    "corrupt_image": (False, "the image data is truncated or corrupt"),
    "too_large": (False, "the image is larger than the byte limit"),
    "too_many_pixels": (False, "the image has more pixels than the limit"),
    "empty_object": (False, "the object is empty (0 bytes)"),
    "not_found": (False, "the image does not exist"),
    "bad_message": (False, "the message or request is malformed"),
    "forbidden_source": (False, "reading from this source is not allowed"),
    "stale_event": (False, "the event is older than the maximum event age"),
    "fetch_failed": (True, "the image could not be fetched; retrying may help"),
    "model_error": (True, "the model failed to run"),
    "overloaded": (True, "the service is at capacity; retry later"),
}

# Errors that depend only on the object's bytes: a retry of the same object version gives the
# same answer, so backfill counts them as done. Every other code may change on a retry (a
# stale_event, a bucket added to the allow-list, a storage hiccup).
FINAL_CODES = ("unsupported_format", "corrupt_image", "too_large", "too_many_pixels", "empty_object")

# Why an event was deliberately not classified (a `skipped` record): code -> message.
SKIP_REASONS: dict[str, str] = {
    "not_finalized": "the event is not an upload (a delete, archive or metadata update)",
    "skipped_prefix": "the object is under a skipped prefix (SKIP_PREFIXES)",
    "folder": "the object is a folder placeholder, not an image",
    "not_an_image": "the object is not an image",
}


class BucketeyeError(Exception):
    """An error with a stable code, a human message and a retry hint."""

    def __init__(self, code: str, message: str | None = None, *, retryable: bool | None = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        default_retryable, default_message = ERROR_CODES[code]
        self.code = code
        self.message = message or default_message
        self.retryable = default_retryable if retryable is None else retryable
        super().__init__(f"{code}: {self.message}")

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class Skip:
    """Why an event was deliberately not classified: a stable code and a human message."""

    def __init__(self, code: str, message: str | None = None):
        if code not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {code!r}")
        self.code = code
        self.message = message or SKIP_REASONS[code]

    @property
    def identity(self) -> str:
        """Two events skipped for different reasons (a delete, a metadata update) are two rows."""
        return f"{self.code}:{self.message}"

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": False}
