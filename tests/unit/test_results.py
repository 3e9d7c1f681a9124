"""Result records: deterministic ids, one type per field, and the structured log line."""
from __future__ import annotations

import io
import json
import logging

import pytest
from _unit_support import check_record_types, encode, inline_ref, running_engine, solid

from shared import APP_NAME, SCHEMA_VERSION, result_log
from shared.errors import ERROR_CODES, BucketeyeError
from shared.refs import ImageRef
from shared.results import Detection, ImageInfo, Prediction, Result, make_result_id

MODEL = {"name": "probe", "version": "3", "id": "probe@3"}
REF = ImageRef(trigger="storage", uri="gs://photos/cats/tom.jpg", bucket="photos", object="cats/tom.jpg",
               generation="1712345678901234", event_id="evt-1", content_type="image/jpeg", size_bytes=12345)


def ok_result(ref=REF, model=MODEL) -> Result:
    return Result(ref=ref, model=model,
                  predictions=[Prediction("tabby", 281, 0.8123456789), Prediction("tiger cat", 282, 0.1)],
                  image=ImageInfo("JPEG", 640, 480),
                  timings_ms={"fetch": 1.23456, "decode": 2.0, "queue": 0.5, "inference": 7.25, "total": 11.0})


def error_result(code="corrupt_image", ref=REF) -> Result:
    return Result(ref=ref, model=MODEL, error=BucketeyeError(code), timings_ms={"fetch": 1.0, "total": 1.5})


# --- result_id ----------------------------------------------------------------------------

def test_result_id_is_deterministic_from_the_source_and_model():
    first = ok_result().result_id
    assert len(first) == 32 and int(first, 16) >= 0
    # a redelivery: another event, another trigger, an error this time -- the same upload, the same id
    again = ImageRef(trigger="pubsub", uri="gs://photos/cats/tom.jpg", bucket="photos", object="cats/tom.jpg",
                     generation="1712345678901234", event_id="evt-2")
    assert error_result(ref=again).result_id == first
    assert make_result_id(REF, "probe@3") == first


@pytest.mark.parametrize("change", [
    dict(bucket="photos2"), dict(object="cats/tom2.jpg"), dict(generation="1712345678901235"), dict(generation=""),
])
def test_result_id_changes_with_any_part_of_the_source(change):
    fields = dict(trigger="storage", bucket=REF.bucket, object=REF.object, generation=REF.generation)
    fields.update(change)
    assert make_result_id(ImageRef(**fields), "probe@3") != make_result_id(REF, "probe@3")


def test_result_id_changes_with_the_model():
    ids = {make_result_id(REF, model_id) for model_id in ("probe@3", "probe@4", "other@3", "")}
    assert len(ids) == 4


def test_inline_images_are_identified_by_their_bytes():
    a, b = encode(solid((1, 2, 3)), "PNG"), encode(solid((1, 2, 4)), "PNG")
    assert make_result_id(inline_ref(a, "k1"), "m@1") == make_result_id(inline_ref(a, "k2"), "m@1")
    assert make_result_id(inline_ref(a), "m@1") != make_result_id(inline_ref(b), "m@1")


# --- one type per field -------------------------------------------------------------------

def test_ok_and_error_records_have_the_same_shape():
    ok, bad = ok_result().to_record(), error_result().to_record()
    check_record_types(ok)
    check_record_types(bad)
    assert ok["status"] == "ok" and bad["status"] == "error"
    assert ok["error"] is None
    assert bad["error"] == {"code": "corrupt_image", "message": ERROR_CODES["corrupt_image"][1], "retryable": False}
    assert bad["predictions"] == [] and bad["top_label"] is None and bad["top_score"] is None
    assert bad["image"] == {"format": None, "width": None, "height": None}
    assert bad["timings_ms"] == {"fetch": 1.0, "decode": None, "queue": None, "inference": None, "total": 1.5}
    assert ok["timings_ms"]["fetch"] == 1.235  # rounded, still a float


def test_record_values():
    record = ok_result().to_record()
    assert (record["app"], record["schema_version"]) == (APP_NAME, SCHEMA_VERSION) == ("bucketeye", 1)
    assert record["source"] == {"trigger": "storage", "uri": "gs://photos/cats/tom.jpg", "bucket": "photos",
                                "object": "cats/tom.jpg", "generation": "1712345678901234", "event_id": "evt-1",
                                "content_type": "image/jpeg", "size_bytes": 12345, "key": None, "content_md5": None}
    assert record["image"] == {"format": "JPEG", "width": 640, "height": 480}
    assert record["model"] == MODEL
    assert record["predictions"] == [{"label": "tabby", "label_id": 281, "score": 0.812346},
                                     {"label": "tiger cat", "label_id": 282, "score": 0.1}]
    assert (record["top_label"], record["top_score"]) == ("tabby", 0.812346)


def test_whole_number_scores_stay_floats():
    result = Result(ref=REF, model=MODEL, predictions=[Prediction("only", 0, 1)], timings_ms={"total": 3})
    record = json.loads(json.dumps(result.to_record()))
    check_record_types(record)
    assert record["top_score"] == 1.0 and type(record["top_score"]) is float


def test_detection_records_have_the_same_shape():
    result = Result(ref=REF, model=MODEL, image=ImageInfo("PNG", 10, 10),
                    detections=[Detection("cat", 1, 0.9, (0.1, 0.2, 0.3, 0.4))])
    record = json.loads(json.dumps(result.to_record()))
    check_record_types(record)
    assert record["detections"][0]["box"] == {"ymin": 0.1, "xmin": 0.2, "ymax": 0.3, "xmax": 0.4}
    assert record["top_label"] == "cat"


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_makes_a_well_typed_record(code):
    record = json.loads(json.dumps(error_result(code).to_record()))
    check_record_types(record)
    assert record["error"]["retryable"] is ERROR_CODES[code][0]


def test_records_from_the_engine_keep_their_types(tflite_model):
    from _unit_support import settings

    from shared.models.loader import open_model

    model = open_model(tflite_model, settings())
    refs = [inline_ref(encode(solid((200, 0, 0)), "JPEG"), "a"), inline_ref(b"junk", "b"),
            ImageRef(trigger="cli", uri="/no/such.png", local_path="/no/such.png")]
    with running_engine(model) as engine:
        records = [json.loads(json.dumps(r.to_record())) for r in engine.classify(refs)]
    for record in records:
        check_record_types(record)
    assert [r["status"] for r in records] == ["ok", "error", "error"]
    assert records[0]["source"]["content_md5"] and records[0]["source"]["key"] == "a"
    assert records[0]["image"] == {"format": "JPEG", "width": 32, "height": 24}
    assert all(isinstance(v, float) for v in records[0]["timings_ms"].values())


# --- the log line -------------------------------------------------------------------------

@pytest.fixture
def log_lines(monkeypatch):
    """Route the process-wide results logger to a buffer for one test."""
    logger = logging.getLogger(result_log.LOGGER_NAME)
    monkeypatch.setattr(logger, "handlers", [])
    buffer = io.StringIO()
    assert result_log.result_logger(stream=buffer) is logger

    def lines():
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return lines


@pytest.mark.parametrize("result, severity", [
    (ok_result(), "INFO"), (error_result("corrupt_image"), "WARNING"), (error_result("fetch_failed"), "ERROR"),
    (error_result("model_error"), "ERROR"), (error_result("not_found"), "WARNING"),
])
def test_one_json_line_per_result(log_lines, result, severity):
    returned = result_log.log_result(result)
    entries = [e for e in log_lines() if e.get("app") == APP_NAME]
    assert len(entries) == 1
    # anything else the library adds (its one-off diagnostic entry) is not a result
    assert all("logging.googleapis.com/diagnostic" in e for e in log_lines() if e.get("app") != APP_NAME)
    (entry,) = entries
    assert entry["logging.googleapis.com/insertId"] == result.result_id == returned["result_id"]
    assert entry["severity"] == severity
    assert entry["logging.googleapis.com/trace"] == ""  # outside a request; the functional tests cover traces
    assert entry["httpRequest"] == {}  # the request URL (tokens, signed URLs) is never logged
    for key, value in returned.items():  # the record is the payload, unchanged
        assert entry[key] == value
    check_record_types({k: entry[k] for k in returned})
    expected = "gs://photos/cats/tom.jpg: " + ("tabby" if result.ok else result.error.code)
    assert entry["message"] == expected


def test_severity_levels():
    assert result_log.severity(ok_result()) == logging.INFO
    assert result_log.severity(error_result("unsupported_format")) == logging.WARNING
    assert result_log.severity(error_result("overloaded")) == logging.ERROR
