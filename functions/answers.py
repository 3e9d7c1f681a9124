"""Where outcomes become answers: the one place that sets a status and Retry-After.

Every route of the combined server and every standalone target hands its Outcome to
`respond` (or `raise_unless_acknowledged`, for functions-framework's CloudEvent
targets, which answer "OK" themselves on success). Statuses and Retry-After come from
the error table in shared/errors.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask import Response
from werkzeug.exceptions import abort

from shared.errors import BucketeyeError


@dataclass
class Outcome:
    body: dict | str  # JSON, or a page
    status: int = 200
    retry_after_s: int | None = None
    headers: dict = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429


def urgent(errors: list[BucketeyeError]) -> BucketeyeError | None:
    """The error that decides the answer: a retryable one (overloaded first: the caller should
    slow down), or None when none is retryable."""
    retryable = [e for e in errors if e.retryable]
    return next((e for e in retryable if e.code == "overloaded"), retryable[0] if retryable else None)


def settled(body: dict, errors: list[BucketeyeError]) -> Outcome:
    """An event's outcome: acknowledged (200) unless a retry can help, then that error's status."""
    error = urgent(errors)
    if error is None:
        return Outcome(body)
    return Outcome(body, error.http_status, error.retry_after_s)


def event_error(error: BucketeyeError) -> Outcome:
    """An event that names no classifiable work: a permanent problem is acknowledged."""
    outcome = settled({"error": error.as_dict()}, [error])
    outcome.body["acknowledged"] = not outcome.transient
    return outcome


def request_error(error: BucketeyeError, **headers) -> Outcome:
    """An HTTP API request that failed as a whole: the error's own status."""
    return Outcome({"error": {"code": error.code, "message": error.message}}, error.http_status,
                   error.retry_after_s, headers)


def respond(outcome: Outcome, *, streamed: bool = False):
    """The answer for Flask. Streamed: functions-framework then leaves an unread request body
    unread (it reads the whole body after every response that is not streamed)."""
    headers = dict(outcome.headers)
    if outcome.retry_after_s is not None:
        headers["Retry-After"] = str(outcome.retry_after_s)
    if not streamed:
        return outcome.body, outcome.status, headers
    if isinstance(outcome.body, str):
        return Response(iter([outcome.body.encode()]), status=outcome.status, headers=headers)
    return Response(iter([json.dumps(outcome.body).encode()]), status=outcome.status, headers=headers,
                    mimetype="application/json")


def raise_unless_acknowledged(outcome: Outcome) -> None:
    """For a CloudEvent target: a transient outcome must reach the platform as a non-2xx answer
    (so it redelivers); functions-framework answers "OK" for everything else."""
    if outcome.transient:
        body, status, headers = respond(outcome)
        abort(Response(json.dumps(body), status=status, headers=headers, mimetype="application/json"))
