"""The event bridge against a real GCS emulator and a recording HTTP endpoint: the
events it sends, at-least-once delivery across restarts, retries, dead letters."""
from __future__ import annotations

import base64
import json

import pytest
from cloudevents.http import from_http

from functions import pubsub_trigger, storage_trigger
from functions.local import gcs
from functions.local.bridge import Bridge, RetryPolicy, Sender
from functions.local.dead_letters import DeadLetters
from functions.local.delivery_state import DeliveryState
from functions.local.emulator import free_port
from functions.local.messages import pubsub_push
from functions.routes import PUBSUB_ROUTE, STORAGE_ROUTE
from tests.local.conftest import PHOTOS, run_cli, wait_for

pytestmark = pytest.mark.functional  # real servers on loopback

FAST = RetryPolicy(max_attempts=3, base_s=0.05, cap_s=0.2)


@pytest.fixture()
def bucket(emulator, request):
    name = "b-" + request.node.name.replace("_", "-")[:50].lower()
    gcs.ensure_buckets(emulator.url, [name])
    return gcs.client(emulator.url).bucket(name)


def make_bridge(state, emulator, endpoint, bucket, retry=FAST) -> Bridge:
    return Bridge(gcs_url=emulator.url, target_url=endpoint.url, buckets=[bucket.name],
                  state=DeliveryState(state.bridge_db), dead_letters=DeadLetters(state.dead_letters),
                  retry=retry, poll_interval_s=0.05)


def test_an_upload_becomes_the_finalized_cloudevent_eventarc_sends(state, emulator, endpoint, bucket):
    bridge = make_bridge(state, emulator, endpoint, bucket).start()
    try:
        blob = bucket.blob("photos/cat 1.png")
        blob.upload_from_filename(str(PHOTOS / "chelsea.png"), content_type="image/png")
        request, = wait_for(lambda: endpoint.received(STORAGE_ROUTE), what="the storage event")
    finally:
        bridge.stop()
    headers, data = request["headers"], json.loads(request["body"])
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert headers["ce-source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket.name}"
    assert headers["ce-subject"] == "objects/photos/cat 1.png"
    assert headers["ce-id"].isdigit() and headers["ce-time"].endswith("Z")
    assert headers["content-type"].split(";")[0] == "application/json"
    # The object resource as the JSON API returns it: int64 fields are strings.
    assert data["bucket"] == bucket.name and data["name"] == "photos/cat 1.png"
    assert data["size"] == str((PHOTOS / "chelsea.png").stat().st_size)
    assert data["generation"] == str(blob.generation) and data["metageneration"] == "1"
    assert data["contentType"] == "image/png" and data["md5Hash"]
    # ...and the server's own parsing accepts it as the cloud's.
    event = from_http(headers, request["body"])
    ref, = storage_trigger.refs_from_cloudevent(event["type"], event["id"], event.data)
    assert (ref.bucket, ref.object, ref.generation) == (bucket.name, "photos/cat 1.png", str(blob.generation))


def test_announced_objects_are_sent_without_a_sweep(state, emulator, endpoint, bucket):
    """Uploads, copies, composes and rewrites each announce their new object; a sweep
    finds nothing more to send, and writes to an unwatched bucket are not sent."""
    bridge = Bridge(gcs_url=emulator.url, target_url=endpoint.url, buckets=[bucket.name],
                    state=DeliveryState(state.bridge_db), dead_letters=DeadLetters(state.dead_letters),
                    retry=FAST, poll_interval_s=3600).start()  # one sweep at start, then none
    emulator.announce_to(bridge.watcher.announce)
    other = gcs.client(emulator.url).bucket(bucket.name + "-other")
    gcs.ensure_buckets(emulator.url, [other.name])
    try:
        wait_for(lambda: bridge.watcher.sweeps == 1, what="the start-up sweep")
        source = bucket.blob("a.png")
        source.upload_from_string(b"a", content_type="image/png")
        bucket.copy_blob(source, bucket, "copied.png")
        bucket.blob("composed.png").compose([source, bucket.blob("copied.png")])
        bucket.blob("rewritten.png").rewrite(source)
        other.blob("elsewhere.png").upload_from_string(b"x", content_type="image/png")
        requests = wait_for(lambda: len(endpoint.received(STORAGE_ROUTE)) == 4 and endpoint.received(STORAGE_ROUTE),
                            what="four announced objects")
        assert bridge.watcher.poll_once() == 0  # each was recorded once, announced or listed
        assert bridge.watcher.sweeps == 2
    finally:
        emulator.announce_to(None)
        bridge.stop()
    names = sorted(json.loads(r["body"])["name"] for r in requests)
    assert names == ["a.png", "composed.png", "copied.png", "rewritten.png"]
    assert len(endpoint.received(STORAGE_ROUTE)) == 4


def test_a_restart_neither_floods_nor_loses(state, emulator, endpoint, bucket):
    for name in ("a.png", "b.png"):
        bucket.blob(name).upload_from_string(b"x", content_type="image/png")
    first = make_bridge(state, emulator, endpoint, bucket).start()
    wait_for(lambda: len(endpoint.received()) == 2, what="the first two events")
    first.stop()

    bucket.blob("c.png").upload_from_string(b"x", content_type="image/png")  # while the bridge is down
    bucket.blob("a.png").upload_from_string(b"y", content_type="image/png")  # a new generation of a.png

    second = make_bridge(state, emulator, endpoint, bucket).start()
    try:
        wait_for(lambda: len(endpoint.received()) >= 4, what="the events missed while down")
        second.watcher.poll_once()  # a few more polls: nothing else may be sent
        wait_for(lambda: second.sender.state.counts().get("pending", 0) == 0, what="an empty queue")
    finally:
        second.stop()
    sent = [(json.loads(r["body"])["name"], json.loads(r["body"])["generation"]) for r in endpoint.received()]
    assert len(sent) == 4 and len(set(sent)) == 4  # each object version exactly once
    assert sorted(name for name, _ in sent) == ["a.png", "a.png", "b.png", "c.png"]


def test_a_delivery_in_flight_when_the_bridge_died_is_sent_again(state, endpoint):
    delivery_state = DeliveryState(state.bridge_db)
    delivery_state.enqueue(pubsub_push(b'{"uri": "gs://b/o.png"}', description="crash test"))
    claimed, = delivery_state.claim_due(1)  # claimed, then the process died before the answer
    sender = Sender(endpoint.url, delivery_state, DeadLetters(state.dead_letters), retry=FAST)
    sender.start()
    try:
        request, = wait_for(lambda: endpoint.received(PUBSUB_ROUTE), what="the redelivery")
    finally:
        sender.stop()
    assert json.loads(request["body"])["deliveryAttempt"] == 2
    assert delivery_state.counts() == {"delivered": 1}


def test_a_failing_endpoint_ends_in_the_dead_letter_file_and_replay_recovers_it(state, emulator, endpoint, bucket):
    endpoint.status, endpoint.reply = 503, b'{"error": {"code": "fetch_failed"}}'
    bucket.blob("doomed.png").upload_from_string(b"x", content_type="image/png")
    bridge = make_bridge(state, emulator, endpoint, bucket).start()
    try:
        record, = wait_for(lambda: DeadLetters(state.dead_letters).read(), what="the dead letter")
        attempts = endpoint.received()
        assert len(attempts) == FAST.max_attempts
        gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
        assert gaps[0] >= FAST.base_s * 0.9 and gaps[1] >= 2 * FAST.base_s * 0.9  # exponential backoff
        assert record["description"].startswith(f"gs://{bucket.name}/doomed.png#")
        assert record["attempts"] == 3
        assert record["cause"]["status"] == 503 and "fetch_failed" in record["cause"]["body"]
        assert record["request"]["route"] == STORAGE_ROUTE

        endpoint.status = 200
        replay = run_cli("replay-dead-letters", state=state)
        assert replay.returncode == 0, replay.stderr
        assert "1 dead letter(s) replayed" in replay.stdout
        wait_for(lambda: len(endpoint.received()) == 4 and endpoint.received()[-1]["status"] == 200,
                 what="the replayed delivery")
        assert DeadLetters(state.dead_letters).read() == []
        assert json.loads(endpoint.received()[-1]["body"])["name"] == "doomed.png"
    finally:
        bridge.stop()
    assert DeliveryState(state.bridge_db).counts() == {"delivered": 1}


def test_no_answer_at_all_is_retried_then_dead_lettered_with_the_error(state):
    delivery_state = DeliveryState(state.bridge_db)
    delivery_state.enqueue(pubsub_push(b"x", description="nobody home"))
    sender = Sender(f"http://127.0.0.1:{free_port()}", delivery_state, DeadLetters(state.dead_letters), retry=FAST)
    sender.start()
    try:
        record, = wait_for(lambda: DeadLetters(state.dead_letters).read(), what="the dead letter")
    finally:
        sender.stop()
    assert record["cause"]["status"] is None and "ConnectionError" in record["cause"]["error"]


def test_publish_works_while_the_stack_is_down_and_is_delivered_when_it_runs(state, endpoint):
    uris = run_cli("publish", "gs://local-bucketeye-uploads/a.png", "gs://local-bucketeye-uploads/b.png", state=state)
    image = run_cli("publish", "--image", PHOTOS / "coffee.png", state=state)
    assert uris.returncode == 0 and image.returncode == 0, uris.stderr + image.stderr
    assert "delivered when it starts" in uris.stdout

    sender = Sender(endpoint.url, DeliveryState(state.bridge_db), DeadLetters(state.dead_letters), retry=FAST)
    sender.start()
    try:
        pushes = wait_for(lambda: len(endpoint.received(PUBSUB_ROUTE)) == 2 and endpoint.received(PUBSUB_ROUTE),
                          what="both messages")
    finally:
        sender.stop()
    messages = []
    for push in pushes:
        envelope = json.loads(push["body"])
        assert envelope["subscription"] == "projects/local/subscriptions/requests-push"
        assert envelope["message"]["messageId"].isdigit() and envelope["message"]["publishTime"].endswith("Z")
        messages.append(pubsub_trigger.parse_envelope(envelope))
    by_kind = {bool(json.loads(m.data).get("b64")): m for m in messages}
    refs = pubsub_trigger.refs_from_message(by_kind[False], max_images=64)
    assert [r.uri for r in refs] == ["gs://local-bucketeye-uploads/a.png", "gs://local-bucketeye-uploads/b.png"]
    inline, = pubsub_trigger.refs_from_message(by_kind[True], max_images=64)
    assert inline.data == (PHOTOS / "coffee.png").read_bytes() and inline.key == "coffee.png"
    assert base64.b64decode(json.loads(pushes[0]["body"])["message"]["data"])  # data is base64, as Pub/Sub sends it


def test_publish_refuses_what_is_not_a_gs_uri(state):
    result = run_cli("publish", "https://example.com/cat.jpg", state=state)
    assert result.returncode == 2 and "gs://" in result.stderr and "Traceback" not in result.stderr
