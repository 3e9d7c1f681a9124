"""The HTTP API: images in, {"predictions": [...]} out, in request order.

Accepted bodies: raw image bytes; multipart/form-data with one or many files; JSON
{"instances": [{"image": {"b64": …}, "key": …}]} (CloudML/Vertex), {"instances":
[{"b64": …}]} (TF Serving) and {"instances": [{"uri": "gs://…"}]}. `?top_k=N`.
BigQuery remote-function calls ({"requestId", "calls": …}) are handed to bigquery_trigger.
Errors are {"error": {"code", "message"}} with a 4xx (5xx/429 when a retry can help).
"""
from __future__ import annotations

import json

from flask import Response
from werkzeug.exceptions import RequestEntityTooLarge

from functions import bigquery_trigger, runtime
from functions.pubsub_trigger import caller_key, decode_b64
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.result_log import log_result
from shared.storage import parse_gs_uri

MAX_TOP_K = 100
STATUS = {
    "bad_message": 400, "empty_object": 400, "forbidden_source": 403, "not_found": 404,
    "too_large": 413, "unsupported_format": 415, "corrupt_image": 422, "too_many_pixels": 422,
    "stale_event": 400, "overloaded": 429, "fetch_failed": 503, "model_error": 503,
}
JSON_TYPES = ("application/json",)
IMAGE_FIELDS = ("image", "image_bytes", "encoded_image")  # CloudML and AI Platform names for {"b64": ...}


def error_response(error: BucketeyeError):
    headers = {"Retry-After": "1"} if error.retryable else {}
    return {"error": {"code": error.code, "message": error.message}}, STATUS.get(error.code, 400), headers


def handle(request):
    """POST /: classify what the body holds."""
    settings = runtime.settings()
    limit = settings.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        return _unread(error_response(BucketeyeError("too_large", f"the request is {request.content_length} bytes; "
                                                     f"the limit is {limit}")))
    # Werkzeug silently cuts a chunked body at max_content_length: read one byte more than
    # the limit, so a body over it shows by its length instead of passing on truncated.
    request.max_content_length = limit + 1
    try:
        if request.content_length is None and len(request.get_data()) > limit:
            raise BucketeyeError("too_large", f"the request is over {limit} bytes")
        if request.mimetype in JSON_TYPES and bigquery_trigger.is_remote_call(_json_body(request)):
            answer, status = bigquery_trigger.handle(_json_body(request))
            return answer, status, ({"Retry-After": "1"} if status in (429, 503) else {})
        top_k = _top_k(request.args.get("top_k"))
        refs, single = _refs(request, settings.max_instances)
        engine = runtime.engine()
    except RequestEntityTooLarge:
        return error_response(BucketeyeError("too_large", f"the request is over {settings.max_request_bytes} bytes"))
    except BucketeyeError as exc:
        return error_response(exc)

    results = engine.classify(refs, top_k=top_k)
    records = [log_result(result) for result in results]
    retryable = [r.error for r in results if r.error is not None and r.error.retryable]
    if retryable:
        return error_response(retryable[0])
    if single and not results[0].ok:
        return error_response(results[0].error)
    return {"predictions": [_prediction(record) for record in records]}, 200, {}


def _unread(answer):
    """functions-framework reads the whole request body after every response that is not
    streamed (its read_request hook): stream this one, so the oversize body is never read."""
    body, status, headers = answer
    return Response(iter([json.dumps(body).encode()]), status=status, headers=headers, mimetype="application/json")


def _json_body(request):
    """The parsed JSON body, or None when it is not JSON. Werkzeug's silent mode catches only
    ValueError: JSON nested deeper than the parser's recursion limit raised RecursionError, a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _top_k(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    # isascii: str.isdigit() accepts "²", which int() refuses (a ValueError, so a 500); len: a
    # 5000-digit number passes isdigit() and int() refuses it too (Python's 4300-digit limit)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_TOP_K:
        raise BucketeyeError("bad_message", f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return int(raw)


def _refs(request, max_instances: int) -> tuple[list[ImageRef], bool]:
    """The request's images, and whether it was a single bare image (errors then become the status)."""
    if request.mimetype in JSON_TYPES:
        return _json_refs(_json_body(request), max_instances), False
    if request.mimetype == "multipart/form-data":
        files = [f for name in request.files for f in request.files.getlist(name)]
        if not files:
            raise BucketeyeError("bad_message", "the form holds no files")
        if len(files) > max_instances:
            raise BucketeyeError("bad_message", f"{len(files)} files; at most {max_instances} per request")
        refs = [ImageRef(trigger="http", key=caller_key(f.filename), content_type=f.mimetype or "", data=f.read())
                for f in files]
        return refs, len(refs) == 1
    data = request.get_data()
    if not data:
        raise BucketeyeError("empty_object", "the request body is empty: send image bytes, a form or JSON")
    return [ImageRef(trigger="http", data=data, content_type=request.mimetype or "")], True


def _json_refs(body, max_instances: int) -> list[ImageRef]:
    if not isinstance(body, dict):
        raise BucketeyeError("bad_message", 'the body is not a JSON object like {"instances": [...]}')
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BucketeyeError("bad_message", '"instances" must be a non-empty list')
    if len(instances) > max_instances:
        raise BucketeyeError("bad_message", f"{len(instances)} instances; at most {max_instances} per request")
    return [_instance_ref(item, i) for i, item in enumerate(instances)]


def _instance_ref(item, index: int) -> ImageRef:
    if not isinstance(item, dict):
        raise BucketeyeError("bad_message", f"instance {index} is not an object")
    key = caller_key(item.get("key"))
    if "uri" in item:
        if not isinstance(item["uri"], str):
            raise BucketeyeError("bad_message", f"instance {index}: uri must be a string")
        target = parse_gs_uri(item["uri"])
        return ImageRef(trigger="http", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                        object=target.name, key=key)
    image = next((item[name] for name in IMAGE_FIELDS if name in item), item)
    b64 = image.get("b64") if isinstance(image, dict) else None
    if not isinstance(b64, str):
        raise BucketeyeError("bad_message", f'instance {index} has no image: use {{"image": {{"b64": ...}}}}, '
                             '{"b64": ...} or {"uri": "gs://..."}')
    return ImageRef(trigger="http", key=key, data=decode_b64(b64, f"instance {index}'s image"))


def _prediction(record: dict) -> dict:
    out = {"key": record["source"]["key"]} if record["source"]["key"] is not None else {}
    if record["status"] != "ok":
        return out | {"error": {"code": record["error"]["code"], "message": record["error"]["message"]}}
    return out | {key: record[key] for key in ("predictions", "top_label", "top_score", "result_id", "model",
                                               "image", "timings_ms")} | (
        {"detections": record["detections"]} if record["detections"] else {})
