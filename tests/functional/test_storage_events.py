"""Cloud Storage uploads: Eventarc CloudEvents (binary and structured mode) and Cloud Storage
notifications pushed by Pub/Sub, on the combined server's /events/storage and on the
standalone on_storage_event target; every failure class and its answer."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
import requests
from _functional_support import (
    ALLOWED_BUCKET,
    CAT_IDS,
    COFFEE_IDS,
    DELETED,
    FINALIZED,
    PRIVATE_BUCKET,
    PROJECT,
    SKIP_PREFIX,
    days_ago,
    new_id,
)

from functions.local.emulator import free_port

ROUTE = "/events/storage"


def _expect_ok(line: dict, resource: dict, *, event_id: str, label_ids) -> None:
    assert line["status"] == "ok"
    assert line["predictions"][0]["label_id"] in label_ids, line["predictions"]
    assert line["top_label"] == line["predictions"][0]["label"]
    assert line["source"] == {
        "trigger": "storage", "uri": f"gs://{resource['bucket']}/{resource['name']}", "bucket": resource["bucket"],
        "object": resource["name"], "generation": resource["generation"], "event_id": event_id,
        "content_type": resource["contentType"], "size_bytes": int(resource["size"]), "key": None,
        "content_md5": resource["md5Hash"],
    }
    assert line["model"]["id"] == "efficientnet_lite0@1"
    assert set(line["timings_ms"]) == {"fetch", "decode", "queue", "inference", "total"}
    assert all(isinstance(value, float) for value in line["timings_ms"].values()), line["timings_ms"]


def _send(server, events, event, mode: str, headers: dict | None = None):
    post = events.post_binary if mode == "binary" else events.post_structured
    return post(server.url + ROUTE, event, headers)


# --- every carrier of an upload -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_finalized_cloudevent_is_classified(server, gcs, images, events, mode):
    resource = gcs.upload(images.chelsea, name=f"cats/{new_id()}.png")
    assert isinstance(resource["size"], str) and isinstance(resource["generation"], str)  # as real events
    event = events.storage(resource)
    mark = server.log.mark()

    response = _send(server, events, event, mode)

    assert response.status_code == 200, response.text
    body = response.json()
    line = server.log.one_result(mark)
    _expect_ok(line, resource, event_id=event["id"], label_ids=CAT_IDS)
    assert line["image"] == {"format": "PNG", "width": 451, "height": 300}
    assert body["results"] == [{"result_id": line["result_id"], "status": "ok", "top_label": line["top_label"],
                                "top_score": line["top_score"], "error": None, "uri": line["source"]["uri"]}]
    assert body["duplicates"] == [] and body["skipped"] == []


def test_golden_structured_event(server, gcs, images, events):
    resource = gcs.upload(images.coffee, name=f"golden/{new_id()}.png")
    values = events.golden_values(resource)
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=events.golden("storage_object_finalized.ce.json", **values),
                             headers={"Content-Type": "application/cloudevents+json; charset=utf-8"}, timeout=60)

    assert response.status_code == 200, response.text
    _expect_ok(server.log.one_result(mark), resource, event_id=values["event_id"], label_ids=COFFEE_IDS)


def test_golden_binary_event(server, gcs, images, events):
    resource = gcs.upload(images.coffee, name=f"golden/{new_id()}.png")
    values = events.golden_values(resource)
    golden = json.loads(events.golden("storage_object_finalized.binary.json", **values))
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=json.dumps(golden["body"]).encode(), headers=golden["headers"],
                             timeout=60)

    assert response.status_code == 200, response.text
    _expect_ok(server.log.one_result(mark), resource, event_id=values["event_id"], label_ids=COFFEE_IDS)


def test_golden_notification_push(server, gcs, images, events):
    """A Cloud Storage notification (bucket -> topic -> push subscription) on /events/storage."""
    resource = gcs.upload(images.chelsea, name=f"notified/{new_id()}.png")
    message_id = new_id("golden-")
    raw = events.golden("storage_notification_push.json", **events.golden_values(
        resource, message_id=message_id, data_b64=base64.b64encode(json.dumps(resource).encode()).decode()))
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=raw, headers={"Content-Type": "application/json"}, timeout=60)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    _expect_ok(line, resource, event_id=message_id, label_ids=CAT_IDS)
    assert response.json()["results"][0]["result_id"] == line["result_id"]


def test_notification_without_payload_names_the_object_by_attributes(server, gcs, images, events):
    """payloadFormat NONE: no data, the attributes alone name bucket, object and generation."""
    resource = gcs.upload(images.chelsea)
    envelope = events.notification(resource)
    envelope["message"]["data"] = ""
    envelope["message"]["attributes"]["payloadFormat"] = "NONE"
    mark = server.log.mark()

    response = events.post_json(server.url + ROUTE, envelope)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert line["status"] == "ok" and line["predictions"][0]["label_id"] in CAT_IDS
    assert (line["source"]["object"], line["source"]["generation"]) == (resource["name"], resource["generation"])


def test_non_finalize_events_are_accounted_for_as_skipped(server, gcs, images, events):
    resource = gcs.upload(images.coffee)
    mark = server.log.mark()

    deleted = events.post_binary(server.url + ROUTE, events.storage(resource, type=DELETED))
    notified = events.post_json(server.url + ROUTE, events.notification(resource, event_type="OBJECT_DELETE"))

    assert (deleted.status_code, deleted.json()["results"]) == (200, [])
    assert (notified.status_code, notified.json()["results"]) == (200, [])
    lines = server.log.wait_results(mark, 2)
    assert [(line["status"], line["error"]["code"]) for line in lines] == [("skipped", "not_finalized")] * 2
    assert lines[0]["result_id"] == lines[1]["result_id"]  # one delete, two carriers: one row
    assert lines[0]["source"]["uri"] == f"gs://{ALLOWED_BUCKET}/{resource['name']}"


# --- failures: acknowledged (200) with an error result, or redelivered (5xx) ----------------

def _one_error(server, response, mark, code: str, severity: str = "WARNING") -> dict:
    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert (line["status"], line["error"]["code"], line["severity"]) == ("error", code, severity), line
    assert line["error"]["retryable"] is False
    return line


def test_corrupt_image_object(server, gcs, images, events):
    resource = gcs.upload(images.truncated_jpeg, name=f"broken/{new_id()}.jpg", content_type="image/jpeg")
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, events.storage(resource))

    line = _one_error(server, response, mark, "corrupt_image")
    assert line["source"]["uri"] == f"gs://{ALLOWED_BUCKET}/{resource['name']}"
    assert line["predictions"] == [] and line["top_label"] is None
    assert line["timings_ms"]["fetch"] is not None  # read from storage, then refused by the decoder
    assert response.json()["results"][0]["error"]["code"] == "corrupt_image"


def test_object_deleted_before_it_is_read(server, gcs, images, events):
    resource = gcs.upload(images.coffee)
    gcs.delete(resource["bucket"], resource["name"])
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, events.storage(resource))

    line = _one_error(server, response, mark, "not_found")
    assert line["source"]["generation"] == resource["generation"]


def test_bucket_not_on_the_allow_list(server, gcs, images, events):
    resource = gcs.upload(images.coffee, bucket=PRIVATE_BUCKET)  # readable, but not allowed
    mark = server.log.mark()

    response = events.post_structured(server.url + ROUTE, events.storage(resource))

    line = _one_error(server, response, mark, "forbidden_source")
    assert line["source"]["bucket"] == PRIVATE_BUCKET
    assert line["timings_ms"]["fetch"] is None  # refused before any read


@pytest.mark.parametrize("data", [
    pytest.param([1, 2], id="data-not-an-object"),
    pytest.param({"name": "a.png", "generation": "1"}, id="no-bucket"),
    pytest.param({"bucket": ALLOWED_BUCKET, "name": "a.png", "size": "12x"}, id="size-not-int64"),
    pytest.param({"bucket": ALLOWED_BUCKET, "name": "a.png", "generation": -4}, id="negative-generation"),
])
def test_malformed_event_data_is_acknowledged(server, events, data):
    event = events.storage({"bucket": ALLOWED_BUCKET, "name": "x.png"}, data=data)
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, event)

    line = _one_error(server, response, mark, "bad_message")
    assert line["source"]["event_id"] == event["id"]
    assert response.json() == {"acknowledged": True, "error": line["error"]}


def test_unknown_event_type_is_acknowledged(server, events):
    event = events.storage({"bucket": ALLOWED_BUCKET, "name": "x.png"}, type="com.example.something.happened")
    mark = server.log.mark()

    line = _one_error(server, events.post_structured(server.url + ROUTE, event), mark, "bad_message")
    assert "not a Cloud Storage event" in line["error"]["message"]


@pytest.mark.parametrize("body,headers", [
    pytest.param(b"\x00\xffnot json at all", {"Content-Type": "application/json"}, id="non-json-push"),
    pytest.param(b'{"subscription": "s"}', {"Content-Type": "application/json"}, id="no-message"),
    pytest.param(b'{"specversion": "1.0", "type": "x"', {"Content-Type": "application/cloudevents+json"},
                 id="broken-structured-event"),
    pytest.param(b"{}", {"ce-specversion": "1.0", "ce-type": FINALIZED, "ce-id": "no-source",
                         "Content-Type": "application/json"}, id="binary-event-without-source"),
])
def test_unparseable_requests_are_acknowledged(server, body, headers):
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=body, headers=headers, timeout=30)

    line = _one_error(server, response, mark, "bad_message")
    assert line["source"]["trigger"] == "storage"
    assert response.json()["acknowledged"] is True


def test_stale_event_is_dropped(server, gcs, images, events):
    resource = gcs.upload(images.coffee)
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, events.storage(resource, time=days_ago(2)))

    line = _one_error(server, response, mark, "stale_event")
    assert line["source"]["uri"] == f"gs://{ALLOWED_BUCKET}/{resource['name']}"
    assert line["timings_ms"]["fetch"] is None


@pytest.mark.parametrize("name,content_type,reason", [
    ("notes/readme.txt", "text/plain", "not_an_image"),
    (SKIP_PREFIX + "small.png", "image/png", "skipped_prefix"),
])
def test_skipped_objects_log_a_skipped_record(server, gcs, images, events, name, content_type, reason):
    resource = gcs.upload(images.coffee, name=name.replace(".", f"-{new_id()}."), content_type=content_type)
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, events.storage(resource))

    assert response.status_code == 200
    body = response.json()
    assert body["results"] == []
    assert [item["uri"] for item in body["skipped"]] == [f"gs://{ALLOWED_BUCKET}/{resource['name']}"]
    assert body["skipped"][0]["reason"] == reason
    line = server.log.one_result(mark)
    assert (line["status"], line["error"]["code"], line["timings_ms"]["fetch"]) == ("skipped", reason, None)


# --- redelivery ----------------------------------------------------------------------------

def test_redelivered_event_gives_one_result(server, gcs, images, events):
    resource = gcs.upload(images.chelsea)
    event = events.storage(resource)
    mark = server.log.mark()

    first = events.post_binary(server.url + ROUTE, event)
    again = events.post_binary(server.url + ROUTE, event)                       # Eventarc retry: same id
    other_id = events.post_json(server.url + ROUTE, events.notification(resource))  # another carrier, same upload

    line = server.log.one_result(mark)
    assert [r.status_code for r in (first, again, other_id)] == [200, 200, 200]
    assert first.json()["results"][0]["result_id"] == line["result_id"]
    for response in (again, other_id):
        assert response.json()["results"] == []
        assert response.json()["duplicates"] == [line["result_id"]]


def test_new_generation_is_a_new_result(server, gcs, images, events):
    name = f"overwritten/{new_id()}.png"
    first = gcs.upload(images.coffee, name=name)
    second = gcs.upload(images.chelsea, name=name)
    assert first["generation"] != second["generation"]
    mark = server.log.mark()

    for resource in (first, second):
        assert events.post_binary(server.url + ROUTE, events.storage(resource)).status_code == 200

    old, new = server.log.wait_results(mark, 2)
    assert old["result_id"] != new["result_id"]
    assert (old["status"], new["status"]) == ("error", "ok")  # generation 1 is gone: not_found, never the new bytes
    assert old["error"]["code"] == "not_found"
    assert new["predictions"][0]["label_id"] in CAT_IDS


# --- trace correlation ---------------------------------------------------------------------

@pytest.mark.parametrize("header,value", [
    ("traceparent", "00-{trace}-00f067aa0ba902b7-01"),
    ("X-Cloud-Trace-Context", "{trace}/12345;o=1"),
])
def test_trace_header_correlates_the_log_line(server, gcs, images, events, header, value):
    trace = new_id()
    resource = gcs.upload(images.coffee)
    mark = server.log.mark()

    response = events.post_binary(server.url + ROUTE, events.storage(resource), {header: value.format(trace=trace)})

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert line["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{trace}"


# --- the standalone target and other processes ----------------------------------------------

@pytest.fixture(scope="module")
def storage_target(start_server):
    return start_server("on_storage_event", target="on_storage_event", signature_type="cloudevent")


@pytest.fixture(scope="module")
def no_storage(start_server):
    """A combined server whose Cloud Storage is unreachable (a closed port)."""
    return start_server("no-storage", env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
                                           "FETCH_TIMEOUT_S": "2"})


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_standalone_target_classifies(storage_target, gcs, images, events, mode):
    resource = gcs.upload(images.coffee)
    event = events.storage(resource)
    mark = storage_target.log.mark()

    response = _send(storage_target, events, event, mode)

    assert (response.status_code, response.text) == (200, "OK")
    _expect_ok(storage_target.log.one_result(mark), resource, event_id=event["id"], label_ids=COFFEE_IDS)
    first = storage_target.log.lines()[0]
    assert "logging.googleapis.com/diagnostic" in first and "app" not in first


def test_standalone_target_acknowledges_bad_data(storage_target, events):
    event = events.storage({"bucket": ALLOWED_BUCKET, "name": "x.png"}, data={"bucket": ALLOWED_BUCKET})
    mark = storage_target.log.mark()

    response = events.post_binary(storage_target.url, event)

    assert response.status_code == 200
    line = storage_target.log.one_result(mark)
    assert (line["error"]["code"], line["severity"]) == ("bad_message", "WARNING")
    assert line["source"]["event_id"] == event["id"]


def test_standalone_target_dedups_and_ids_match_across_processes(server, storage_target, gcs, images, events):
    """result_id depends on bucket/object/generation/model only: two processes agree."""
    resource = gcs.upload(images.chelsea)
    combined_mark, target_mark = server.log.mark(), storage_target.log.mark()

    assert events.post_binary(server.url + ROUTE, events.storage(resource)).status_code == 200
    for _ in range(2):  # the second delivery is a duplicate: no second line
        assert events.post_structured(storage_target.url, events.storage(resource)).status_code == 200

    combined, target = server.log.one_result(combined_mark), storage_target.log.one_result(target_mark)
    assert combined["source"]["event_id"] != target["source"]["event_id"]
    assert combined["result_id"] == target["result_id"]
    identity = f"gs://{resource['bucket']}/{resource['name']}#{resource['generation']}|efficientnet_lite0@1"
    assert combined["result_id"] == hashlib.sha256(identity.encode()).hexdigest()[:32]


def test_unreachable_storage_asks_for_redelivery(no_storage, gcs, images, events):
    resource = gcs.upload(images.coffee)
    event = events.storage(resource)
    mark = no_storage.log.mark()

    first = events.post_binary(no_storage.url + ROUTE, event)
    again = events.post_binary(no_storage.url + ROUTE, event)  # a transient failure is not remembered

    for response in (first, again):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert response.json()["results"][0]["error"]["code"] == "fetch_failed"
    lines = no_storage.log.wait_results(mark, 2)
    for line in lines:
        assert (line["error"]["code"], line["error"]["retryable"], line["severity"]) == ("fetch_failed", True, "ERROR")
    assert lines[0]["result_id"] == lines[1]["result_id"]
    assert requests.get(no_storage.url + "/healthz", timeout=5).status_code == 200


def test_standalone_target_asks_for_redelivery(start_server, gcs, images, events):
    target = start_server("on_storage_event-no-storage", target="on_storage_event", signature_type="cloudevent",
                          env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}", "FETCH_TIMEOUT_S": "2"})
    resource = gcs.upload(images.coffee)
    mark = target.log.mark()

    response = events.post_binary(target.url, events.storage(resource))

    assert response.status_code == 503, response.text
    assert "fetch_failed" in response.text
    line = target.log.one_result(mark)
    assert (line["error"]["code"], line["severity"]) == ("fetch_failed", "ERROR")
