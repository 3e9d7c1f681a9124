"""BigQuery remote-function calls: a bigquery Delivery -> refs, and results -> replies.

BigQuery POSTs {"requestId", "caller", "sessionUser", "userDefinedContext", "calls":
[[arg, ...], ...]} and wants {"replies": [...]} (one per call) or {"errorMessage"}.
Each call is `classify(uri [, top_k])`. A bad row gets a reply saying what is wrong
(it must not fail the whole query); transient trouble answers 503/429, which
BigQuery retries.
"""
from __future__ import annotations

from dataclasses import dataclass

from functions import parsing
from functions.answers import Outcome, urgent
from functions.delivery import Delivery
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.results import Result
from shared.storage import parse_gs_uri


@dataclass
class Call:
    ref: ImageRef
    top_k: int | None = None
    error: BucketeyeError | None = None  # the call itself is malformed: its reply says so


def parse(delivery: Delivery, *, max_calls: int) -> list[Call]:
    """Each call as a ref; a malformed row becomes a Call with its error. Raises for a malformed
    request as a whole (then BigQuery shows the errorMessage)."""
    body = delivery.document
    calls = body.get("calls")
    if not isinstance(calls, list):
        raise BucketeyeError("bad_message", "calls must be a list of argument lists")
    if len(calls) > max_calls:
        raise BucketeyeError("bad_message", f"{len(calls)} calls in one request; set max_batching_rows to at most "
                                            f"{max_calls}")
    context = body.get("userDefinedContext") or {}
    if not isinstance(context, dict):
        raise BucketeyeError("bad_message", "userDefinedContext must be a map")
    default_k = parsing.top_k(context.get("top_k"))
    parsed = []
    for i, call in enumerate(calls):
        try:
            parsed.append(_parse_call(call, delivery.id, default_k))
        except BucketeyeError as exc:
            # the row number survives ImageRef's bound on ids: each bad row is its own result
            parsed.append(Call(ImageRef(trigger="bigquery", event_id=f"{delivery.id[:180]}#{i}"), error=exc))
    return parsed


def _parse_call(call, request_id: str, default_k) -> Call:
    if not isinstance(call, list) or not call:
        raise BucketeyeError("bad_message", "each call must be a list of arguments: [uri] or [uri, top_k]")
    uri = call[0]
    if uri is None:
        raise BucketeyeError("bad_message", "the uri argument is NULL")
    if not isinstance(uri, str):
        raise BucketeyeError("bad_message", "the uri argument must be a STRING gs:// URI")
    k = parsing.top_k(call[1], default_k) if len(call) > 1 else default_k
    target = parse_gs_uri(uri)
    return Call(ImageRef(trigger="bigquery", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                         object=target.name, event_id=request_id), k)


def classify(engine, calls: list[Call]) -> list[Result]:
    """One engine call per distinct top_k; results in the calls' order (a malformed call's
    result carries its error)."""
    results: list[Result | None] = [None] * len(calls)
    by_k: dict = {}
    for index, call in enumerate(calls):
        if call.error is not None:
            results[index] = Result(ref=call.ref, model=engine.model.info, error=call.error)
        else:
            by_k.setdefault(call.top_k, []).append(index)
    for k, indices in by_k.items():
        for index, result in zip(indices, engine.classify([calls[i].ref for i in indices], top_k=k)):
            results[index] = result
    return results


def error(error: BucketeyeError) -> Outcome:
    """The whole request failed: BigQuery's errorMessage, the status from the error table."""
    return Outcome({"errorMessage": f"{error.code}: {error.message}"}, error.http_status, error.retry_after_s)


def answer(results: list[Result]) -> Outcome:
    transient = urgent([r.error for r in results if r.error is not None])
    if transient is not None:
        return error(transient)
    return Outcome({"replies": [_reply(result) for result in results]})


def _error_reply(failure: BucketeyeError) -> dict:
    return {"status": "error", "error": {"code": failure.code, "message": failure.message}}


def _reply(result: Result) -> dict:
    if not result.ok:
        return _error_reply(result.error)
    record = result.to_record()
    return {"status": "ok", "labels": record["predictions"], "top_label": record["top_label"],
            "top_score": record["top_score"], "model_id": record["model"]["id"], "result_id": record["result_id"]}
