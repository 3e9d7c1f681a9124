"""The combined server: functions-framework sends every path to one target, so this
target dispatches by path to the three triggers, the upload page and /health."""
from __future__ import annotations

from flask import Flask
from flask import request as current_request

from functions import handlers, upload_page
from functions.answers import Outcome, request_error, respond
from functions.routes import HEALTH_ROUTE, HTTP_ROUTE, LEGACY_HEALTH_ROUTE, PUBSUB_ROUTE, STORAGE_ROUTE
from functions.service import Service
from shared.errors import RETRY_AFTER_S, BucketeyeError

EVENT_ROUTES = {STORAGE_ROUTE: "storage", PUBSUB_ROUTE: "pubsub"}


def dispatch(request, service: Service):
    path, method = request.path, request.method
    # Every route, not only POST /, must bound what it reads: functions-framework reads the
    # whole body after every non-streamed response (its read_request hook), so a GET /health
    # with a 1 GB Content-Length used to wait for (and buffer) that gigabyte.
    limit = service.settings.max_request_bytes
    request.max_content_length = limit + 1  # Werkzeug stops reading there
    if path == HTTP_ROUTE and method == "POST":
        return post_images(request, service)
    if path in EVENT_ROUTES and method == "POST":
        too_large = handlers.oversize(request, limit)
        if too_large is not None:  # acknowledged with a too_large result, its body never read
            return respond(handlers.oversize_event(service, request, EVENT_ROUTES[path], too_large), streamed=True)
        return respond(handlers.event_request(service, request, EVENT_ROUTES[path]))
    # The remaining routes need no body: a body sent anyway is never read (see above).
    return respond(_without_body(path, method, service), streamed=_has_body(request))


def post_images(request, service: Service):
    """POST / (also the standalone on_http_request target): an oversize body is answered unread."""
    too_large = handlers.oversize(request, service.settings.max_request_bytes)
    if too_large is not None:
        return respond(request_error(too_large), streamed=True)
    return respond(handlers.http_request(service, request))


def _without_body(path: str, method: str, service: Service) -> Outcome:
    if path == HTTP_ROUTE and method in ("GET", "HEAD"):
        return page()
    if path in (HEALTH_ROUTE, LEGACY_HEALTH_ROUTE):
        return health(service)
    if path in (HTTP_ROUTE, STORAGE_ROUTE, PUBSUB_ROUTE):
        return request_error(BucketeyeError("method_not_allowed", f"{path} accepts POST"), Allow="POST")
    return request_error(BucketeyeError("not_found", f"no route {path}"))


def page() -> Outcome:
    body, status, headers = upload_page.page()
    return Outcome(body, status, None, headers)


def _has_body(request) -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def health(service: Service) -> Outcome:
    if service.is_ready():
        model = service.engine().model
        return Outcome({"status": "ready", "model": model.info, "runtime": model.runtime.kind, **service.stats()})
    error = service.load_error()
    if error is not None:
        return Outcome({"status": "failed", "error": error.as_dict(), **service.stats()}, 503)
    return Outcome({"status": "loading", **service.stats()}, 503, RETRY_AFTER_S)


def create_app(service: Service) -> Flask:
    """A Flask app serving every route with `service`: what in-process tests drive."""
    app = Flask("bucketeye")
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    def view(path: str = ""):
        return dispatch(current_request, service)

    app.add_url_rule("/", "root", view, methods=methods)
    app.add_url_rule("/<path:path>", "any", view, methods=methods)
    return app
