"""Stable error codes and whether retrying can help.

Every failure the engine reports carries one of these codes. Event handlers use
`retryable` to choose between acknowledging (permanent) and asking the platform to
redeliver (transient), so poison messages never loop and transient faults never lose work.
"""
from __future__ import annotations

import logging
from typing import NamedTuple


class ErrorKind(NamedTuple):
    """One row of the error table: everything that follows from a code."""

    retryable: bool
    message: str      # the default human message
    http_status: int  # what an HTTP caller is answered (event routes acknowledge permanent errors with 200)


# The one error table: every answer, Retry-After and log severity is derived from it.
ERROR_CODES: dict[str, ErrorKind] = {
    "unsupported_format": ErrorKind(False, "the data is not an image format we can decode", 415),
    "corrupt_image": ErrorKind(False, "the image data is truncated or corrupt", 422),
    "too_large": ErrorKind(False, "the image is larger than the byte limit", 413),
    "too_many_pixels": ErrorKind(False, "the image has more pixels than the limit", 422),
    "empty_object": ErrorKind(False, "the object is empty (0 bytes)", 400),
    "not_found": ErrorKind(False, "the image does not exist", 404),
    "bad_message": ErrorKind(False, "the message or request is malformed", 400),
    "forbidden_source": ErrorKind(False, "reading from this source is not allowed", 403),
    "stale_event": ErrorKind(False, "the event is older than the maximum event age", 400),
    "method_not_allowed": ErrorKind(False, "the route does not accept this method", 405),
    "fetch_failed": ErrorKind(True, "the image could not be fetched; retrying may help", 503),
    "model_error": ErrorKind(True, "the model failed to run", 503),
    "overloaded": ErrorKind(True, "the service is at capacity; retry later", 429),
}
RETRY_AFTER_S = 1  # what a retryable answer asks the caller (Pub/Sub, Eventarc, BigQuery, a client) to wait

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
        kind = ERROR_CODES[code]
        self.code = code
        self.message = message or kind.message
        self.retryable = kind.retryable if retryable is None else retryable
        super().__init__(f"{code}: {self.message}")

    @property
    def http_status(self) -> int:
        return ERROR_CODES[self.code].http_status

    @property
    def retry_after_s(self) -> int | None:
        return RETRY_AFTER_S if self.retryable else None

    @property
    def severity(self) -> int:
        """Its log level: a transient fault pages someone (ERROR), a bad input does not (WARNING)."""
        return logging.ERROR if self.retryable else logging.WARNING

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
