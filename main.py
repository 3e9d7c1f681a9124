"""bucketeye entry points.

functions-framework targets (each runnable alone with `functions-framework --target NAME`):
  on_storage_event   Cloud Storage object.finalized CloudEvent
  on_pubsub_message  Pub/Sub messagePublished CloudEvent
  on_http_request    HTTP: images in, {"predictions": [...]} out
  bucketeye          all three on one server, dispatched by path (python main.py serve)

Also the command line: python main.py --help
"""
import sys

if __name__ == "__main__":
    from functions.cli import main

    sys.exit(main())

import functions_framework  # noqa: E402  (the CLI above must not pay for the server's imports)

from functions import app, handlers, runtime  # noqa: E402
from functions.answers import raise_unless_acknowledged, respond  # noqa: E402
from functions.service import process_service  # noqa: E402
from shared.config import SettingError  # noqa: E402

try:  # settings are validated once, at start: a bad value stops every target with one clear line
    runtime.settings()
except SettingError as exc:
    import logging

    from shared.result_log import log_operation
    log_operation(logging.ERROR, str(exc), "bad_setting")
    sys.exit(1)
runtime.load_after_fork()  # the model loads as the worker starts; /health says when it is ready


@functions_framework.cloud_event
def on_storage_event(cloud_event):
    raise_unless_acknowledged(handlers.cloudevent(process_service(), cloud_event, "storage"))


@functions_framework.cloud_event
def on_pubsub_message(cloud_event):
    raise_unless_acknowledged(handlers.cloudevent(process_service(), cloud_event, "pubsub"))


@functions_framework.http
def on_http_request(request):
    if request.method in ("GET", "HEAD"):
        return respond(app.page())
    return app.post_images(request, process_service())


@functions_framework.http
def bucketeye(request):
    return app.dispatch(request, process_service())
