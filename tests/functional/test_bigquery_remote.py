"""BigQuery remote-function calls on the HTTP route: replies in call order, bad rows
answered without failing the query, concurrent calls, malformed bodies,
and a result line logged for every call."""
from __future__ import annotations

import threading

import pytest
import requests
from _functional_support import ALLOWED_BUCKET, CAT_IDS, COFFEE_IDS, PRIVATE_BUCKET, new_id


@pytest.fixture(scope="module")
def server(start_server):
    # Eight fetch+decode threads (as the GPU service runs): images of several requests are in
    # flight at once.
    return start_server("combined-bigquery", env={"BATCH_MAX_DELAY_MS": "30", "DECODE_WORKERS": "8"})


def remote_call(server, calls, *, context=None, request_id=None) -> requests.Response:
    body = {"requestId": request_id or new_id(), "caller": "//bigquery.googleapis.com/projects/demo/jobs/j1",
            "sessionUser": "analyst@example.com", "calls": calls}
    if context is not None:
        body["userDefinedContext"] = context
    return requests.post(server.url + "/", json=body, timeout=60)


def test_replies_come_back_in_call_order_with_labels_scores_and_model(server, gcs, images):
    cat = gcs.upload(images.unique("chelsea"))
    coffee = gcs.upload(images.unique("coffee"))
    uris = [f"gs://{ALLOWED_BUCKET}/{cat['name']}", f"gs://{ALLOWED_BUCKET}/{coffee['name']}",
            f"gs://{ALLOWED_BUCKET}/{cat['name']}"]
    mark = server.log.mark()
    response = remote_call(server, [[u] for u in uris])
    assert response.status_code == 200, response.text
    replies = response.json()["replies"]
    assert len(replies) == 3
    assert [r["status"] for r in replies] == ["ok", "ok", "ok"]
    assert replies[0]["labels"][0]["label_id"] in CAT_IDS
    assert replies[1]["labels"][0]["label_id"] in COFFEE_IDS
    assert replies[2]["top_label"] == replies[0]["top_label"]
    assert len(replies[0]["labels"]) == 5 and replies[0]["model_id"] == "efficientnet_lite0@1"
    lines = server.log.wait_results(mark, 3)
    assert {line["source"]["trigger"] for line in lines} == {"bigquery"}
    assert {line["source"]["uri"] for line in lines} == set(uris)


def test_a_bad_row_gets_its_own_error_reply_and_the_rest_still_answer(server, gcs, images):
    good = gcs.upload(images.unique("coffee"))
    secret = gcs.upload(images.unique("coffee"), bucket=PRIVATE_BUCKET)
    broken = gcs.upload(images.truncated_jpeg, content_type="image/jpeg")
    calls = [[f"gs://{ALLOWED_BUCKET}/{good['name']}"], [f"gs://{PRIVATE_BUCKET}/{secret['name']}"],
             ["https://example.com/cat.jpg"], [None], [f"gs://{ALLOWED_BUCKET}/missing-{new_id()}.png"],
             [f"gs://{ALLOWED_BUCKET}/{broken['name']}"], [42], []]
    response = remote_call(server, calls)
    assert response.status_code == 200, response.text
    replies = response.json()["replies"]
    assert len(replies) == len(calls)
    assert replies[0]["status"] == "ok"
    codes = [r.get("error", {}).get("code") for r in replies[1:]]
    assert codes == ["forbidden_source", "forbidden_source", "bad_message", "not_found", "corrupt_image",
                     "bad_message", "bad_message"]
    assert all(r["error"]["message"] for r in replies[1:])


def test_top_k_from_the_context_and_from_a_second_argument(server, gcs, images):
    cat = gcs.upload(images.unique("chelsea"))
    uri = f"gs://{ALLOWED_BUCKET}/{cat['name']}"
    replies = remote_call(server, [[uri], [uri, 2]], context={"top_k": "3"}).json()["replies"]
    assert [len(r["labels"]) for r in replies] == [3, 2]
    assert remote_call(server, [[uri]], context={"top_k": "zero"}).status_code == 400


@pytest.mark.parametrize("body", [
    {"requestId": "r1", "calls": "gs://photos/x.png"},
    {"requestId": "r2", "calls": {"0": ["gs://photos/x.png"]}},
    {"requestId": "r3", "calls": [["gs://photos/x.png"]], "userDefinedContext": ["top_k", "3"]},
])
def test_malformed_bodies_answer_an_error_message_not_a_traceback(server, body):
    response = requests.post(server.url + "/", json=body, timeout=30)
    assert response.status_code == 400
    assert set(response.json()) == {"errorMessage"} and response.json()["errorMessage"]


def test_concurrent_requests_all_answer_with_a_line_per_call(server, gcs, images):
    """BigQuery sends many requests at once: their images share the one model (here
    TFLite, whose one-core lanes run them side by side; see tests/unit/test_batching.py),
    every call is answered, and each has its result line."""
    requests_count, calls_each = 8, 4
    objects = [gcs.upload(images.unique("coffee")) for _ in range(requests_count * calls_each)]
    answers: dict[int, requests.Response] = {}
    ids = [new_id("bq-") for _ in range(requests_count)]
    mark = server.log.mark()

    def one(i: int):
        calls = [[f"gs://{ALLOWED_BUCKET}/{o['name']}"] for o in objects[i * calls_each:(i + 1) * calls_each]]
        answers[i] = remote_call(server, calls, request_id=ids[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(requests_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 200 for a in answers.values())
    for answer in answers.values():
        replies = answer.json()["replies"]
        assert [r["status"] for r in replies] == ["ok"] * calls_each
        assert all(r["labels"][0]["label_id"] in COFFEE_IDS for r in replies)
    lines = server.log.wait_results(mark, len(objects))
    assert {line["source"]["uri"] for line in lines} == {f"gs://{ALLOWED_BUCKET}/{o['name']}" for o in objects}
