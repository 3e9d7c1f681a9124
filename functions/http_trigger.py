"""The HTTP API: an http Delivery -> work for the engine, and results -> the answer.

Accepted bodies, each answered in request order:
- raw image bytes, or multipart/form-data with one or many files;
- JSON rows: {"instances": [{"image": {"b64": …}, "key": …}]} (Vertex AI / CloudML),
  {"image_bytes": {"b64": …}} and {"encoded_image": {"b64": …}} instances, {"b64": …}
  (TF Serving's row form) and {"uri": "gs://…"};
- TF Serving's columnar form: {"inputs": [{"b64": …}, …]} (list) or
  {"inputs": {"image_bytes": [{"b64": …}, …], "key": [...]}} (named), answered {"outputs": [...]};
- Vertex AutoML image: {"instances": [{"content": "<base64>"}], "parameters":
  {"confidenceThreshold": 0.5, "maxPredictions": 5}}.
`?top_k=N` (or maxPredictions) sets how many labels come back. A key keeps its JSON type.
"""
from __future__ import annotations

from dataclasses import dataclass

from functions import parsing
from functions.answers import Outcome, request_error, urgent
from functions.delivery import Delivery
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.storage import parse_gs_uri

IMAGE_FIELDS = ("image", "image_bytes", "encoded_image")  # CloudML and AI Platform names for {"b64": ...}
SHAPES = ('{"instances": [{"image": {"b64": ...}}]}, {"instances": [{"b64": ...}]}, '
          '{"instances": [{"uri": "gs://..."}]}, {"instances": [{"content": ...}]} or {"inputs": ...}')


@dataclass
class Work:
    refs: list[ImageRef]
    keys: list                       # each instance's key as the caller sent it (None: none sent)
    top_k: int | None = None
    single: bool = False             # one bare image: its error is the answer's status
    columnar: bool = False           # TF Serving's {"inputs"}: answered {"outputs"}
    min_score: float | None = None   # AutoML's confidenceThreshold


def parse(delivery: Delivery, *, max_instances: int) -> Work:
    top_k = parsing.top_k(delivery.attributes.get("top_k"))
    content_type = delivery.attributes.get("content_type", "")
    if content_type == "application/json":
        work = _json_work(delivery.document, max_instances)
        work.top_k = work.top_k or top_k
        return work
    if content_type == "multipart/form-data":
        if not delivery.uploads:
            raise BucketeyeError("bad_message", "the form holds no files")
        _check_count(len(delivery.uploads), "files", max_instances)
        refs = [ImageRef(trigger="http", key=u.name, content_type=u.content_type, data=u.data)
                for u in delivery.uploads]
        return Work(refs, [None] * len(refs), top_k, single=len(refs) == 1)
    if not delivery.data:
        raise BucketeyeError("empty_object", "the request body is empty: send image bytes, a form or JSON")
    return Work([ImageRef(trigger="http", data=delivery.data, content_type=content_type)], [None], top_k, single=True)


def _check_count(count: int, what: str, max_instances: int) -> None:
    if count > max_instances:
        raise BucketeyeError("bad_message", f"{count} {what}; at most {max_instances} per request")


def _json_work(body, max_instances: int) -> Work:
    if not isinstance(body, dict):
        raise BucketeyeError("bad_message", 'the body is not a JSON object like {"instances": [...]}')
    if "inputs" in body and "instances" not in body:
        instances, columnar = _columnar(body["inputs"]), True
    else:
        instances, columnar = body.get("instances"), False
    if not isinstance(instances, list) or not instances:
        raise BucketeyeError("bad_message", f'"instances" must be a non-empty list: {SHAPES}')
    _check_count(len(instances), "instances", max_instances)
    refs = [_instance_ref(item, i) for i, item in enumerate(instances)]
    keys = [item.get("key") for item in instances]
    top_k, min_score = _parameters(body.get("parameters"))
    return Work(refs, keys, top_k, columnar=columnar, min_score=min_score)


def _columnar(inputs) -> list:
    """TF Serving's columnar inputs as rows: a list of images, one image, or named columns."""
    if isinstance(inputs, list):
        return [item if isinstance(item, dict) and "b64" not in item else {"image": item} for item in inputs]
    if isinstance(inputs, dict) and "b64" in inputs:
        return [{"image": inputs}]
    if not isinstance(inputs, dict):
        raise BucketeyeError("bad_message", '"inputs" must be a list of images or a map of named columns')
    columns = {name: value if isinstance(value, list) else [value] for name, value in inputs.items()}
    lengths = {len(value) for value in columns.values()}
    if len(lengths) != 1:
        raise BucketeyeError("bad_message", 'the named "inputs" columns must all have the same length')
    return [{name: column[i] for name, column in columns.items()} for i in range(lengths.pop())]


def _parameters(parameters) -> tuple[int | None, float | None]:
    """Vertex AutoML's prediction parameters: maxPredictions is top_k, confidenceThreshold a floor."""
    if parameters is None:
        return None, None
    if not isinstance(parameters, dict):
        raise BucketeyeError("bad_message", '"parameters" must be a map')
    top_k = parsing.top_k(parameters.get("maxPredictions"), name="maxPredictions")
    threshold = parameters.get("confidenceThreshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 <= threshold <= 1):
        raise BucketeyeError("bad_message", "confidenceThreshold must be a number from 0 to 1")
    return top_k, threshold


def _instance_ref(item, index: int) -> ImageRef:
    if not isinstance(item, dict):
        raise BucketeyeError("bad_message", f"instance {index} is not an object")
    key = parsing.key_text(item.get("key"))
    if "uri" in item:
        if not isinstance(item["uri"], str):
            raise BucketeyeError("bad_message", f"instance {index}: uri must be a string")
        target = parse_gs_uri(item["uri"])
        return ImageRef(trigger="http", uri=f"gs://{target.bucket}/{target.name}", bucket=target.bucket,
                        object=target.name, key=key)
    if isinstance(item.get("content"), str):  # Vertex AutoML: the base64 string itself
        b64 = item["content"]
    else:
        image = next((item[name] for name in IMAGE_FIELDS if name in item), item)
        b64 = image.get("b64") if isinstance(image, dict) else None
    if not isinstance(b64, str):
        raise BucketeyeError("bad_message", f"instance {index} has no image: use {SHAPES}")
    return ImageRef(trigger="http", key=key, data=parsing.decode_b64(b64, f"instance {index}'s image"))


def answer(work: Work, records: list[dict], errors: list[BucketeyeError | None]) -> Outcome:
    """The response: a retryable failure (or a single image's failure) as the status; else each
    instance's prediction or error, in request order."""
    failed = [e for e in errors if e is not None]
    transient = urgent(failed)
    if transient is not None:
        return request_error(transient)
    if work.single and errors[0] is not None:
        return request_error(errors[0])
    rows = [_prediction(record, key, work.min_score) for record, key in zip(records, work.keys)]
    return Outcome({"outputs" if work.columnar else "predictions": rows})


def _prediction(record: dict, key, min_score: float | None) -> dict:
    # a number key comes back a number; any other key as the (bounded) text the record holds
    number = isinstance(key, (int, float)) and not isinstance(key, bool)
    key = key if number else record["source"]["key"]
    out = {"key": key} if key is not None else {}
    if record["status"] != "ok":
        return out | {"error": {"code": record["error"]["code"], "message": record["error"]["message"]}}
    row = out | {name: record[name] for name in ("predictions", "top_label", "top_score", "result_id", "model",
                                                 "image", "timings_ms")}
    if min_score is not None:
        row["predictions"] = [p for p in row["predictions"] if p["score"] >= min_score]
    return row | ({"detections": record["detections"]} if record["detections"] else {})
