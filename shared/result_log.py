"""Write each Result as one structured JSON line on stdout, the shape Cloud Logging
ingests from Cloud Run: the record becomes jsonPayload, insertId is the result_id, and
severity says ok or skipped (INFO), permanent error (WARNING) or transient error (ERROR).

Operational lines (the model is ready, or failed to load) go through the same handler:
structured, with a severity, a message and an `event` naming what happened, but without
the `app` tag, so the results sink never exports them as rows."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading

from google.cloud.logging.handlers import StructuredLogHandler

from shared.results import Result

LOGGER_NAME = "bucketeye.results"
OPERATIONS_LOGGER_NAME = "bucketeye"
_INSERT_ID = "logging.googleapis.com/insertId"
_setup_lock = threading.Lock()


class _ResultHandler(StructuredLogHandler):
    """The library's handler drops insertId from payloads; add it back as the
    special field Cloud Logging reads, so a redelivered image keeps one id."""

    def format(self, record):
        line = super().format(record)
        insert_id = getattr(record, "insert_id", None)
        if insert_id and line.endswith("}"):
            line = f'{line[:-1]}, "{_INSERT_ID}": {json.dumps(insert_id)} }}'
        return line


def result_logger(stream=None) -> logging.Logger:
    """The process-wide results logger, set up once (stdout unless told otherwise)."""
    logger = logging.getLogger(LOGGER_NAME)
    with _setup_lock:
        if not logger.handlers:
            handler = _ResultHandler(stream=stream or sys.stdout,
                                     project_id=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False  # results go to stdout once, never through the root logger
    return logger


def operations_logger() -> logging.Logger:
    """The process-wide logger for operational lines, writing through the results' handler."""
    handler = result_logger().handlers[0]
    logger = logging.getLogger(OPERATIONS_LOGGER_NAME)
    with _setup_lock:
        if handler not in logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
    return logger


def log_operation(level: int, message: str, event: str, **facts) -> None:
    """One operational line: `event` names what happened, `facts` are what an operator needs."""
    fields = {"event": event, **facts}
    operations_logger().log(level, message, extra={"json_fields": fields, "http_request": None})


def severity(result: Result) -> int:
    if result.error is None:  # ok, or deliberately skipped
        return logging.INFO
    return result.error.severity


def _writable(record: dict) -> dict:
    """The record, with any lone surrogate (a JSON "\\ud800" escape in an id or key) made "?":
    stdout cannot encode one, and the logging module then drops the whole line (a lost row)."""
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
        return record
    except UnicodeEncodeError:
        return json.loads(text.encode("utf-8", "replace"))


def log_result(result: Result, *, logger: logging.Logger | None = None) -> dict:
    """Trace correlation comes from the request being served (traceparent / X-Cloud-Trace-Context),
    which the library's filter reads; the request URL itself is never logged (http_request=None)."""
    record = _writable(result.to_record())
    extra = {"json_fields": record, "insert_id": record["result_id"], "http_request": None}
    source = record["source"]
    name = source.get("uri") or source.get("key") or source.get("trigger")
    if result.ok:
        message = f"{name}: {record['top_label']}"
    elif result.skip is not None:
        message = f"{name}: skipped ({result.skip.code})"
    else:
        message = f"{name}: {result.error.code}"
    (logger or result_logger()).log(severity(result), message, extra=extra)
    return record
