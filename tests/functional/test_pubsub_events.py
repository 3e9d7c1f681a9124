"""Pub/Sub: the messagePublished CloudEvent (binary and structured) and the raw push envelope
on the combined server's /events/pubsub, and the standalone on_pubsub_message target.
Messages name gs:// URIs (JSON, list, text lines, attribute), carry an inline image, or
carry a Cloud Storage notification."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
import requests
from _functional_support import ALLOWED_BUCKET, CAT_IDS, COFFEE_IDS, PRIVATE_BUCKET, days_ago, new_id, rfc3339

ROUTE = "/events/pubsub"


def _uri(resource: dict) -> str:
    return f"gs://{resource['bucket']}/{resource['name']}"


def _post(server, events, envelope: dict, carrier: str, headers: dict | None = None) -> requests.Response:
    """Deliver one message the way a carrier does: raw push, or Eventarc in binary/structured mode."""
    url = server.url + ROUTE
    if carrier == "push":
        return events.post_json(url, envelope, headers)
    post = events.post_binary if carrier == "binary" else events.post_structured
    return post(url, events.pubsub(envelope), headers)


@pytest.fixture
def photos(gcs, images):
    """A fresh cat and coffee in the allowed bucket. Fresh for each test: a message naming a
    URI the server classified within DEDUP_WINDOW_S is a duplicate and logs nothing."""
    return (gcs.upload(images.chelsea, name=f"pubsub/{new_id()}-cat.png"),
            gcs.upload(images.coffee, name=f"pubsub/{new_id()}-coffee.png"))


# --- what a message may name --------------------------------------------------------------

@pytest.mark.parametrize("carrier", ["push", "binary", "structured"])
def test_uris_json_message(server, events, gcs, images, carrier):
    cat, coffee = (gcs.upload(images.chelsea), gcs.upload(images.coffee))
    envelope = events.envelope(json.dumps({"uris": [_uri(cat), _uri(coffee)]}).encode())
    mark = server.log.mark()

    response = _post(server, events, envelope, carrier)

    assert response.status_code == 200, response.text
    lines = server.log.wait_results(mark, 2)
    assert [line["source"]["uri"] for line in lines] == [_uri(cat), _uri(coffee)]
    assert lines[0]["predictions"][0]["label_id"] in CAT_IDS
    assert lines[1]["predictions"][0]["label_id"] in COFFEE_IDS
    for line, resource in zip(lines, (cat, coffee)):
        assert line["source"]["trigger"] == "pubsub"
        assert line["source"]["event_id"] == envelope["message"]["messageId"]
        # a URI names the live object; the line records the version that was read
        assert line["source"]["generation"] == resource["generation"]
        assert line["source"]["size_bytes"] == int(resource["size"])
        assert line["source"]["content_type"] == "image/png"
    assert [r["result_id"] for r in response.json()["results"]] == [line["result_id"] for line in lines]


@pytest.mark.parametrize("shape", ["json-list", "text-lines", "attribute", "uri-object"])
def test_other_uri_shapes(server, events, gcs, images, shape):
    cat, coffee = gcs.upload(images.chelsea), gcs.upload(images.coffee)
    if shape == "json-list":
        envelope, expected = events.envelope(json.dumps([_uri(cat), _uri(coffee)]).encode()), [cat, coffee]
    elif shape == "text-lines":
        envelope, expected = events.envelope(f"{_uri(coffee)}\n\n  {_uri(cat)}  \n".encode()), [coffee, cat]
    elif shape == "attribute":
        envelope, expected = events.envelope(b"", attributes={"uri": _uri(cat)}), [cat]
    else:
        envelope, expected = events.envelope(json.dumps({"uri": _uri(coffee)}).encode()), [coffee]
    mark = server.log.mark()

    response = _post(server, events, envelope, "push")

    assert response.status_code == 200, response.text
    lines = server.log.wait_results(mark, len(expected))
    assert [line["source"]["uri"] for line in lines] == [_uri(r) for r in expected]
    assert all(line["status"] == "ok" for line in lines)
    for line, resource in zip(lines, expected):
        assert line["predictions"][0]["label_id"] in (CAT_IDS if resource is cat else COFFEE_IDS)


@pytest.mark.parametrize("form", ["raw-bytes", "b64-json", "image-b64-json"])
def test_inline_image(server, events, images, form):
    data = images.unique("chelsea")
    payload = {"raw-bytes": data,
               "b64-json": json.dumps({"b64": base64.b64encode(data).decode()}).encode(),
               "image-b64-json": json.dumps({"image": {"b64": base64.b64encode(data).decode()},
                                             "key": "cat-1"}).encode()}[form]
    envelope = events.envelope(payload, attributes={"contentType": "image/png"} if form == "raw-bytes" else None)
    mark = server.log.mark()

    response = _post(server, events, envelope, "binary")

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert line["status"] == "ok" and line["predictions"][0]["label_id"] in CAT_IDS
    assert line["source"]["uri"] is None and line["image"] == {"format": "PNG", "width": 451, "height": 300}
    assert line["source"]["key"] == ("cat-1" if form == "image-b64-json" else None)
    assert line["source"]["content_md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()


def test_storage_notification_on_the_pubsub_route(server, events, gcs, images):
    resource = gcs.upload(images.coffee)
    mark = server.log.mark()

    response = _post(server, events, events.notification(resource), "structured")

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert (line["source"]["trigger"], line["source"]["generation"]) == ("storage", resource["generation"])
    assert line["predictions"][0]["label_id"] in COFFEE_IDS


def test_golden_push_envelope(server, events, photos):
    cat, _ = photos
    message_id = new_id("golden-")
    raw = events.golden("pubsub_push_envelope.json", message_id=message_id, time=rfc3339(),
                        data_b64=base64.b64encode(_uri(cat).encode()).decode())
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=raw, headers={"Content-Type": "application/json"}, timeout=60)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert (line["source"]["uri"], line["source"]["event_id"]) == (_uri(cat), message_id)
    assert line["predictions"][0]["label_id"] in CAT_IDS


def test_golden_message_published_event(server, events, images):
    data = images.unique("coffee")
    message_id = new_id("golden-")
    raw = events.golden("pubsub_message_published.ce.json", message_id=message_id, time=rfc3339(),
                        data_b64=base64.b64encode(data).decode())
    mark = server.log.mark()

    response = requests.post(server.url + ROUTE, data=raw, headers={"Content-Type": "application/cloudevents+json"},
                             timeout=60)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert line["source"]["event_id"] == message_id
    assert line["predictions"][0]["label_id"] in COFFEE_IDS


# --- per-image failures inside a good message -------------------------------------------------

def test_one_bad_uri_does_not_fail_the_others(server, events, gcs, images, photos):
    cat, _ = photos
    private = gcs.upload(images.coffee, bucket=PRIVATE_BUCKET)
    corrupt = gcs.upload(images.truncated_jpeg, content_type="image/jpeg")
    missing = f"gs://{ALLOWED_BUCKET}/nothing/{new_id()}.png"
    envelope = events.envelope(json.dumps([_uri(private), missing, _uri(corrupt), _uri(cat)]).encode())
    mark = server.log.mark()

    response = _post(server, events, envelope, "push")

    assert response.status_code == 200, response.text  # permanent failures are acknowledged
    lines = server.log.wait_results(mark, 4)
    codes = [line["error"]["code"] if line["error"] else line["status"] for line in lines]
    assert codes == ["forbidden_source", "not_found", "corrupt_image", "ok"]
    assert [line["severity"] for line in lines] == ["WARNING", "WARNING", "WARNING", "INFO"]
    assert [s["status"] for s in response.json()["results"]] == ["error", "error", "error", "ok"]


def test_inline_corrupt_image(server, events, images):
    mark = server.log.mark()

    response = _post(server, events, events.envelope(images.truncated_jpeg + new_id().encode()), "binary")

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert (line["error"]["code"], line["severity"]) == ("corrupt_image", "WARNING")


# --- messages that name no work: acknowledged with one bad_message / forbidden_source line ----

def _rejected(server, response, mark, code: str) -> dict:
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged"] is True
    line = server.log.one_result(mark)
    assert (line["status"], line["error"]["code"], line["severity"]) == ("error", code, "WARNING"), line
    return line


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://169.254.169.254/computeMetadata/v1/"])
def test_url_in_a_message_is_never_fetched(server, events, url):
    envelope = events.envelope(json.dumps({"uris": [url]}).encode())
    mark = server.log.mark()

    line = _rejected(server, _post(server, events, envelope, "push"), mark, "forbidden_source")
    assert line["source"]["event_id"] == envelope["message"]["messageId"]


@pytest.mark.parametrize("data", ["this is not base64 at all", "aGVsbG8=garbage!", "%%%%"])
def test_bad_base64_data(server, events, data):
    envelope = events.envelope()
    envelope["message"]["data"] = data
    mark = server.log.mark()

    line = _rejected(server, _post(server, events, envelope, "push"), mark, "bad_message")
    assert "base64" in line["error"]["message"]
    assert line["source"]["event_id"] == envelope["message"]["messageId"]


@pytest.mark.parametrize("payload,why", [
    pytest.param(b"", "names no image", id="empty-message"),
    pytest.param(b'{"uris": ["gs://photos/a.png"', "does not parse", id="broken-json-data"),
    pytest.param(b'{"something": "else"}', "each item", id="unknown-json"),
    pytest.param(b"gs://bucket-only", "needs a bucket and an object", id="uri-without-object"),
    pytest.param(json.dumps([f"gs://photos/{i}.png" for i in range(65)]).encode(), "at most 64", id="too-many"),
])
def test_message_naming_no_work(server, events, payload, why):
    mark = server.log.mark()

    line = _rejected(server, _post(server, events, events.envelope(payload), "structured"), mark, "bad_message")
    assert why in line["error"]["message"]


@pytest.mark.parametrize("body,headers", [
    pytest.param(b"<xml>not json</xml>", {"Content-Type": "application/json"}, id="non-json"),
    pytest.param(b'["message"]', {"Content-Type": "application/json"}, id="not-an-envelope"),
    pytest.param(b'{"message": {"data": 42}}', {"Content-Type": "application/json"}, id="data-not-a-string"),
    pytest.param(b'{"message": {"attributes": {"a": 1}}}', {"Content-Type": "application/json"}, id="bad-attributes"),
])
def test_malformed_push_bodies(server, body, headers):
    mark = server.log.mark()

    line = _rejected(server, requests.post(server.url + ROUTE, data=body, headers=headers, timeout=30), mark,
                     "bad_message")
    assert line["source"]["trigger"] == "pubsub"


def test_unknown_event_type(server, events):
    event = events.pubsub(events.envelope(b"gs://photos/a.png"))
    event["type"] = "google.cloud.storage.object.v1.finalized"
    mark = server.log.mark()

    line = _rejected(server, events.post_binary(server.url + ROUTE, event), mark, "bad_message")
    assert "messagePublished" in line["error"]["message"]
    assert line["source"]["event_id"] == event["id"]


def test_same_bad_message_twice_is_still_acknowledged(server, events):
    """A poison message never loops: each delivery is acknowledged, with the same row id."""
    envelope = events.envelope()
    envelope["message"]["data"] = "%%%%"
    mark = server.log.mark()

    first, second = (_post(server, events, envelope, "push") for _ in range(2))

    assert (first.status_code, second.status_code) == (200, 200)
    lines = server.log.wait_results(mark, 2)
    assert lines[0]["result_id"] == lines[1]["result_id"]


def test_an_old_request_is_still_done(server, events, photos):
    """A message naming work is a request: it is never too old (MAX_EVENT_AGE_S is for uploads)."""
    cat, _ = photos
    envelope = events.envelope(_uri(cat).encode(), publish_time=days_ago(3))
    mark = server.log.mark()

    response = _post(server, events, envelope, "push")

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert (line["status"], line["source"]["uri"]) == ("ok", _uri(cat))


def test_stale_storage_notification(server, events, photos):
    cat, _ = photos
    mark = server.log.mark()

    response = _post(server, events, events.notification(cat, publish_time=days_ago(3)), "push")

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert (line["error"]["code"], line["severity"], line["source"]["uri"]) == ("stale_event", "WARNING", _uri(cat))


def test_skipped_object_named_by_a_message(server, events, gcs, images):
    resource = gcs.upload(images.coffee, name=f"thumbnails/{new_id()}.png")
    mark = server.log.mark()

    response = _post(server, events, events.envelope(_uri(resource).encode()), "push")

    assert response.status_code == 200
    assert response.json()["skipped"][0]["uri"] == _uri(resource)
    line = server.log.one_result(mark)
    assert (line["status"], line["error"]["code"]) == ("skipped", "skipped_prefix")


# --- the standalone on_pubsub_message target ------------------------------------------------

@pytest.fixture(scope="module")
def pubsub_target(start_server):
    return start_server("on_pubsub_message", target="on_pubsub_message", signature_type="cloudevent")


@pytest.mark.parametrize("carrier", ["binary", "structured"])
def test_standalone_target_classifies(pubsub_target, events, photos, carrier):
    cat, coffee = photos
    envelope = events.envelope(json.dumps({"uris": [_uri(coffee), _uri(cat)]}).encode())
    post = events.post_binary if carrier == "binary" else events.post_structured
    mark = pubsub_target.log.mark()

    response = post(pubsub_target.url, events.pubsub(envelope))

    assert (response.status_code, response.text) == (200, "OK")
    lines = pubsub_target.log.wait_results(mark, 2)
    assert [line["source"]["uri"] for line in lines] == [_uri(coffee), _uri(cat)]
    assert lines[0]["predictions"][0]["label_id"] in COFFEE_IDS and lines[1]["predictions"][0]["label_id"] in CAT_IDS
    first = pubsub_target.log.lines()[0]
    assert "logging.googleapis.com/diagnostic" in first and "app" not in first


def test_standalone_target_acknowledges_bad_messages(pubsub_target, events):
    mark = pubsub_target.log.mark()
    bad_type = events.pubsub(events.envelope(b"gs://photos/a.png"))
    bad_type["type"] = "com.example.other"

    responses = [events.post_binary(pubsub_target.url, events.pubsub(events.envelope(b"https://example.com/a.png"))),
                 events.post_structured(pubsub_target.url, bad_type)]

    assert [r.status_code for r in responses] == [200, 200]
    lines = pubsub_target.log.wait_results(mark, 2)
    assert [line["error"]["code"] for line in lines] == ["forbidden_source", "bad_message"]


def test_standalone_target_drops_stale_notifications(pubsub_target, events, photos):
    cat, _ = photos
    mark = pubsub_target.log.mark()

    response = events.post_binary(pubsub_target.url, events.pubsub(events.notification(cat, publish_time=days_ago(2))))

    assert response.status_code == 200
    assert pubsub_target.log.one_result(mark)["error"]["code"] == "stale_event"


def test_redelivered_push_message_gives_one_result(server, events, photos):
    cat, coffee = photos
    envelope = events.envelope(json.dumps([_uri(cat), _uri(coffee)]).encode())
    mark = server.log.mark()

    first, again = (_post(server, events, envelope, "push") for _ in range(2))

    lines = server.log.wait_results(mark, 2)
    assert (first.status_code, again.status_code) == (200, 200)
    assert [line["source"]["uri"] for line in lines] == [_uri(cat), _uri(coffee)]
    assert again.json()["results"] == []
    assert len(again.json()["duplicates"]) == 2


def test_uri_message_after_an_overwrite_is_a_new_result(server, events, gcs, images):
    """A URI names no generation: the version read identifies the result, so a new upload
    under the same name is classified again, while a redelivery of the same message is not."""
    name = f"pubsub/overwritten-{new_id()}.png"
    first = gcs.upload(images.coffee, name=name)
    message = events.envelope(f"gs://{ALLOWED_BUCKET}/{name}".encode())
    mark = server.log.mark()

    assert _post(server, events, message, "push").status_code == 200
    second = gcs.upload(images.chelsea, name=name)
    assert _post(server, events, events.envelope(f"gs://{ALLOWED_BUCKET}/{name}".encode()), "push").status_code == 200

    old, new = server.log.wait_results(mark, 2)
    assert (old["source"]["generation"], new["source"]["generation"]) == (first["generation"], second["generation"])
    assert old["result_id"] != new["result_id"]
    assert old["predictions"][0]["label_id"] in COFFEE_IDS and new["predictions"][0]["label_id"] in CAT_IDS
