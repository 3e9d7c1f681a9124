"""The combined server: functions-framework sends every path to one target, so this
target dispatches by path to the three triggers, the upload page and /healthz."""
from __future__ import annotations

from functions import event_endpoints, http_trigger, runtime, upload_page
from functions.routes import HEALTH_ROUTE, HTTP_ROUTE, PUBSUB_ROUTE, STORAGE_ROUTE


def dispatch(request):
    path, method = request.path, request.method
    if path == HEALTH_ROUTE:
        return health()
    if path == HTTP_ROUTE and method in ("GET", "HEAD"):
        return upload_page.page()
    if method != "POST" and path in (HTTP_ROUTE, STORAGE_ROUTE, PUBSUB_ROUTE):
        return {"error": {"code": "method_not_allowed", "message": f"{path} accepts POST"}}, 405, {"Allow": "POST"}
    if path == HTTP_ROUTE:
        return http_trigger.handle(request)
    if path == STORAGE_ROUTE:
        return outcome_response(event_endpoints.handle_storage_request(request))
    if path == PUBSUB_ROUTE:
        return outcome_response(event_endpoints.handle_pubsub_request(request))
    return {"error": {"code": "not_found", "message": f"no route {path}"}}, 404, {}


def outcome_response(outcome):
    headers = {"Retry-After": "1"} if outcome.transient else {}
    return outcome.body, outcome.status, headers


def health():
    if runtime.is_ready():
        model = runtime.engine().model
        return {"status": "ready", "model": model.info, "runtime": model.runtime.kind}, 200, {}
    error = runtime.load_error()
    if error is not None:
        return {"status": "failed", "error": error.as_dict()}, 503, {}
    return {"status": "loading"}, 503, {"Retry-After": "1"}
