"""The combined server: functions-framework sends every path to one target, so this
target dispatches by path to the three triggers, the upload page and /health."""
from __future__ import annotations

import json

from flask import Response

from functions import event_endpoints, http_trigger, runtime, upload_page
from functions.routes import HEALTH_ROUTE, HTTP_ROUTE, LEGACY_HEALTH_ROUTE, PUBSUB_ROUTE, STORAGE_ROUTE

EVENT_ROUTES = {STORAGE_ROUTE: "storage", PUBSUB_ROUTE: "pubsub"}


def dispatch(request):
    path, method = request.path, request.method
    # Every route, not only POST /, must bound what it reads: functions-framework reads the
    # whole body after every non-streamed response (its read_request hook), so a GET /health
    # with a 1 GB Content-Length used to wait for (and buffer) that gigabyte. Werkzeug stops
    # reading at max_content_length; one byte over the limit tells "over" from "at".
    request.max_content_length = runtime.settings().max_request_bytes + 1
    if path == HTTP_ROUTE and method == "POST":
        return http_trigger.handle(request)
    if path in EVENT_ROUTES and method == "POST":
        refused = event_endpoints.refuse_oversize(request, EVENT_ROUTES[path])
        if refused is not None:  # acknowledged with a too_large result, its body never read
            return _streamed(outcome_response(refused))
        if path == STORAGE_ROUTE:
            return outcome_response(event_endpoints.handle_storage_request(request))
        return outcome_response(event_endpoints.handle_pubsub_request(request))
    # The remaining routes need no body: a body sent anyway is never read (see above).
    answer = _route_without_body(request, path, method)
    return _streamed(answer) if _has_body(request) else answer


def _route_without_body(request, path: str, method: str):
    if path in (HEALTH_ROUTE, LEGACY_HEALTH_ROUTE):
        return health()
    if path == HTTP_ROUTE and method in ("GET", "HEAD"):
        return upload_page.page()
    if path in (HTTP_ROUTE, STORAGE_ROUTE, PUBSUB_ROUTE):
        return {"error": {"code": "method_not_allowed", "message": f"{path} accepts POST"}}, 405, {"Allow": "POST"}
    return {"error": {"code": "not_found", "message": f"no route {path}"}}, 404, {}


def _has_body(request) -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _streamed(answer):
    """A streamed response: functions-framework then leaves the request body unread."""
    body, status, headers = answer
    if isinstance(body, (dict, list)):
        body, mimetype = json.dumps(body).encode(), "application/json"
    else:
        body, mimetype = body.encode() if isinstance(body, str) else body, None
    return Response(iter([body]), status=status, headers=headers, mimetype=mimetype)


def outcome_response(outcome):
    headers = {"Retry-After": "1"} if outcome.transient else {}
    return outcome.body, outcome.status, headers


def health():
    if runtime.is_ready():
        model = runtime.engine().model
        return {"status": "ready", "model": model.info, "runtime": model.runtime.kind, **runtime.stats()}, 200, {}
    error = runtime.load_error()
    if error is not None:
        return {"status": "failed", "error": error.as_dict(), **runtime.stats()}, 503, {}
    return {"status": "loading", **runtime.stats()}, 503, {"Retry-After": "1"}
