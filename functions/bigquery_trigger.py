"""BigQuery remote-function calls -> replies, in call order.

BigQuery POSTs {"requestId", "caller", "sessionUser", "userDefinedContext", "calls":
[[arg, ...], ...]} and wants {"replies": [...]} (one per call) or {"errorMessage"}.
Each call is `classify(uri [, top_k])`. A bad row gets a reply saying what is wrong
(it must not fail the whole query); transient trouble answers 503/429, which
BigQuery retries. Every call is logged as a result record like any other trigger.
"""
from __future__ import annotations

from functions import runtime
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.result_log import log_result
from shared.results import Result
from shared.storage import parse_gs_uri

MAX_TOP_K = 100


def is_remote_call(body) -> bool:
    return isinstance(body, dict) and "calls" in body and "requestId" in body


def handle(body: dict):
    """Returns (json body, status)."""
    calls = body.get("calls")
    if not isinstance(calls, list):
        return {"errorMessage": "calls must be a list of argument lists"}, 400
    settings = runtime.settings()
    if len(calls) > settings.batch_queue_size:
        return {"errorMessage": f"{len(calls)} calls in one request; set max_batching_rows to at most "
                                f"{settings.batch_queue_size}"}, 400
    try:
        default_k = _top_k(_context(body).get("top_k"), None)
        engine = runtime.engine()
    except BucketeyeError as exc:
        status = 503 if exc.retryable else 400
        return {"errorMessage": f"{exc.code}: {exc.message}"}, status

    request_id = str(body.get("requestId") or "")[:200]
    replies: list = [None] * len(calls)
    refs, slots = [], []
    for i, call in enumerate(calls):
        try:
            ref, k = _parse_call(call, request_id, default_k)
        except BucketeyeError as exc:
            ref = ImageRef(trigger="bigquery", event_id=f"{request_id}#{i}")
            log_result(Result(ref=ref, model=engine.model.info, error=exc))
            replies[i] = _error_reply(exc)
            continue
        refs.append((ref, k))
        slots.append(i)
    results = _classify(engine, refs)
    transient = [r.error for r in results if r.error is not None and r.error.retryable]
    for slot, result in zip(slots, results):
        log_result(result)
        replies[slot] = _reply(result)
    if transient:
        code = 429 if any(e.code == "overloaded" for e in transient) else 503
        return {"errorMessage": f"{transient[0].code}: {transient[0].message}"}, code
    return {"replies": replies}, 200


def _classify(engine, refs: list[tuple[ImageRef, int | None]]) -> list[Result]:
    """One engine call per distinct top_k, results back in the callers' order."""
    results: list[Result | None] = [None] * len(refs)
    by_k: dict = {}
    for index, (ref, k) in enumerate(refs):
        by_k.setdefault(k, []).append(index)
    for k, indices in by_k.items():
        for index, result in zip(indices, engine.classify([refs[i][0] for i in indices], top_k=k)):
            results[index] = result
    return results


def _context(body: dict) -> dict:
    context = body.get("userDefinedContext") or {}
    if not isinstance(context, dict):
        raise BucketeyeError("bad_message", "userDefinedContext must be a map")
    return context


def _top_k(value, default):
    if value is None or value == "":
        return default
    text = str(value)
    # isascii/len: "²" and 5000-digit strings pass isdigit() but make int() raise (a 500 for the whole query)
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or not 1 <= int(text) <= MAX_TOP_K:
        raise BucketeyeError("bad_message", f"top_k must be an integer from 1 to {MAX_TOP_K}, got {text[:20]!r}")
    return int(text)


def _parse_call(call, request_id: str, default_k):
    if not isinstance(call, list) or not call:
        raise BucketeyeError("bad_message", "each call must be a list of arguments: [uri] or [uri, top_k]")
    uri = call[0]
    if uri is None:
        raise BucketeyeError("bad_message", "the uri argument is NULL")
    if not isinstance(uri, str):
        raise BucketeyeError("bad_message", "the uri argument must be a STRING gs:// URI")
    k = _top_k(call[1], default_k) if len(call) > 1 else default_k
    target = parse_gs_uri(uri)
    ref = ImageRef(trigger="bigquery", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                   object=target.name, event_id=request_id)
    return ref, k


def _error_reply(error: BucketeyeError) -> dict:
    return {"status": "error", "error": {"code": error.code, "message": error.message}}


def _reply(result: Result) -> dict:
    if not result.ok:
        return _error_reply(result.error)
    record = result.to_record()
    return {"status": "ok", "labels": record["predictions"], "top_label": record["top_label"],
            "top_score": record["top_score"], "model_id": record["model"]["id"], "result_id": record["result_id"]}
