"""Pub/Sub push subscriptions with payload unwrapping (write metadata on), on the real server
with the real storage emulator: the raw message data is the body, the message's metadata
x-goog-pubsub-* headers and its attributes plain headers (tests/data/*_unwrapped.json)."""
from __future__ import annotations

import json

import requests
from _functional_support import CAT_IDS, COFFEE_IDS, new_id, rfc3339


def _golden(events, name: str, resource: dict, **values) -> dict:
    return json.loads(events.golden(name, **events.golden_values(resource, **values)))


def _post(server, route: str, carried: dict) -> requests.Response:
    body = carried["body"]
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return requests.post(server.url + route, data=data, headers=carried["headers"], timeout=60)


def test_an_unwrapped_notification_classifies_the_upload(server, gcs, images, events):
    resource = gcs.upload(images.unique("chelsea"), name=f"unwrapped/{new_id()}.png")
    message_id = new_id("unwrapped-")
    carried = _golden(events, "storage_notification_unwrapped.json", resource, message_id=message_id)
    mark = server.log.mark()

    response = _post(server, "/events/storage", carried)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert line["status"] == "ok" and line["predictions"][0]["label_id"] in CAT_IDS
    assert line["source"]["trigger"] == "storage" and line["source"]["event_id"] == message_id
    assert (line["source"]["object"], line["source"]["generation"]) == (resource["name"], resource["generation"])


def test_an_unwrapped_message_naming_uris(server, gcs, images, events):
    cat = gcs.upload(images.unique("chelsea"), name=f"unwrapped/{new_id()}-cat.png")
    coffee = gcs.upload(images.unique("coffee"), name=f"unwrapped/{new_id()}-coffee.png")
    uris = [f"gs://{r['bucket']}/{r['name']}" for r in (cat, coffee)]
    message_id = new_id("unwrapped-")
    carried = _golden(events, "pubsub_push_unwrapped.json", cat, message_id=message_id, data=json.dumps({"uris": uris}))
    mark = server.log.mark()

    response = _post(server, "/events/pubsub", carried)

    assert response.status_code == 200, response.text
    lines = server.log.wait_results(mark, 2)
    assert [line["source"]["uri"] for line in lines] == uris
    assert lines[0]["predictions"][0]["label_id"] in CAT_IDS and lines[1]["predictions"][0]["label_id"] in COFFEE_IDS
    assert {line["source"]["event_id"] for line in lines} == {message_id}


def test_an_unwrapped_image_as_the_body(server, images):
    headers = {"Content-Type": "image/png", "x-goog-pubsub-message-id": new_id("unwrapped-"),
               "x-goog-pubsub-publish-time": rfc3339(),
               "x-goog-pubsub-subscription-name": "projects/demo/subscriptions/unwrapped"}
    mark = server.log.mark()

    response = requests.post(server.url + "/events/pubsub", data=images.unique("coffee"), headers=headers, timeout=60)

    assert response.status_code == 200, response.text
    line = server.log.one_result(mark)
    assert line["status"] == "ok" and line["predictions"][0]["label_id"] in COFFEE_IDS
    assert line["source"]["event_id"] == headers["x-goog-pubsub-message-id"]
