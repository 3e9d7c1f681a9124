"""The edge in-process: every route and carrier through Flask's test client, with the golden
events of tests/data and a fake engine (no model, no server, no emulator). The functional
tests drive the same code through the real server."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.exceptions import HTTPException

from functions import answers, app, handlers
from functions.service import Service
from shared.config import Settings
from shared.errors import ERROR_CODES, BucketeyeError
from shared.refs import MAX_EVENT_ID_CHARS, MAX_KEY_CHARS, ImageRef
from shared.results import ImageInfo, Prediction, Result

DATA = Path(__file__).resolve().parents[1] / "data"
LABELS = ["tabby", "espresso", "cup", "tiger cat", "Persian"]
IMAGE = b"\x89PNG fake image bytes"


class FakeModel:
    id = "fake@1"
    info = {"name": "fake", "version": "1", "id": "fake@1"}

    class runtime:
        kind = "fake"


class FakeEngine:
    """Answers from the ref alone: a URI under gs://b/missing/ is not_found, gs://b/flaky/ a
    fetch_failed, gs://b/busy/ overloaded; anything else five labels, best first."""

    model = FakeModel()

    def __init__(self):
        self.calls: list[tuple[list[ImageRef], int | None]] = []

    def classify(self, refs, top_k=None):
        self.calls.append((list(refs), top_k))
        return [self._one(ref, top_k or 3) for ref in refs]

    def _one(self, ref: ImageRef, k: int) -> Result:
        for prefix, code in (("missing/", "not_found"), ("flaky/", "fetch_failed"), ("busy/", "overloaded")):
            if ref.object.startswith(prefix):
                return Result(ref=ref, model=self.model.info, error=BucketeyeError(code))
        scores = [0.6, 0.2, 0.1, 0.06, 0.04]
        return Result(ref=ref, model=self.model.info, image=ImageInfo("png", 4, 4), timings_ms={"total": 1.0},
                      predictions=[Prediction(label, i, score) for i, (label, score) in
                                   enumerate(zip(LABELS, scores))][:k])

    @property
    def refs(self) -> list[ImageRef]:
        return [ref for refs, _ in self.calls for ref in refs]


def settings(**environ) -> Settings:
    """Settings from the defaults and `environ` only, never the caller's environment."""
    return Settings.from_env(environ={"ALLOWED_BUCKETS": "b", **environ})


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def service(engine):
    return Service.for_engine(settings(), engine)


@pytest.fixture
def client(service):
    return app.create_app(service).test_client()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def golden(name: str, **values) -> dict:
    text = (DATA / name).read_text(encoding="utf-8")
    defaults = {"bucket": "b", "object": "photos/cat 1.png", "generation": "1700000000000001", "size": "2048",
                "md5": "bWQ1", "content_type": "image/png", "time": now(), "event_id": "4242",
                "message_id": "9001", "data_b64": "", "data": ""}
    for key, value in {**defaults, **values}.items():
        text = text.replace("{{" + key + "}}", json.dumps(str(value))[1:-1])
    return json.loads(text)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_carried(client, route: str, carried: dict):
    """A golden {"headers", "body"} file as the platform posts it."""
    body = carried["body"]
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return client.post(route, data=data, headers=carried["headers"])


# --- storage events: every carrier -> one storage ref ---------------------------------------

def _expect_storage_ref(engine, event_id: str) -> ImageRef:
    ref, = engine.refs
    assert (ref.trigger, ref.bucket, ref.object, ref.generation) == ("storage", "b", "photos/cat 1.png",
                                                                     "1700000000000001")
    assert ref.uri == "gs://b/photos/cat 1.png" and ref.event_id == event_id
    return ref


def test_eventarc_binary_event(client, engine):
    response = post_carried(client, "/events/storage", golden("storage_object_finalized.binary.json"))
    assert response.status_code == 200, response.json
    assert response.json["results"][0]["top_label"] == "tabby"
    ref = _expect_storage_ref(engine, "4242")
    assert (ref.size_bytes, ref.content_type, ref.md5_hash) == (2048, "image/png", "bWQ1")


def test_eventarc_structured_event(client, engine):
    event = golden("storage_object_finalized.ce.json")
    response = client.post("/events/storage", data=json.dumps(event),
                           content_type="application/cloudevents+json; charset=utf-8")
    assert response.status_code == 200, response.json
    _expect_storage_ref(engine, event["id"])


@pytest.mark.parametrize("route", ["/events/storage", "/events/pubsub"])
def test_notification_through_a_push_envelope(client, engine, route):
    resource = golden("storage_object_finalized.binary.json")["body"]
    envelope = golden("storage_notification_push.json", data_b64=b64(json.dumps(resource).encode()))
    response = client.post(route, json=envelope)
    assert response.status_code == 200, response.json
    _expect_storage_ref(engine, "9001")


def test_notification_through_an_unwrapped_push(client, engine):
    response = post_carried(client, "/events/pubsub", golden("storage_notification_unwrapped.json"))
    assert response.status_code == 200, response.json
    ref = _expect_storage_ref(engine, "9001")
    assert ref.size_bytes == 2048


def test_unwrapped_notification_without_payload(client, engine):
    """Payload format NONE: the attributes (headers) alone name the object."""
    carried = golden("storage_notification_unwrapped.json")
    carried["body"] = ""
    response = post_carried(client, "/events/storage", carried)
    assert response.status_code == 200, response.json
    _expect_storage_ref(engine, "9001")


def test_stale_notification_is_acknowledged_not_classified(client, engine):
    old = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = post_carried(client, "/events/pubsub", golden("storage_notification_unwrapped.json", time=old))
    assert response.status_code == 200
    assert response.json["error"]["code"] == "stale_event" and response.json["acknowledged"] is True
    assert engine.calls == []


@pytest.mark.parametrize("event_type, words", [("google.cloud.storage.object.v1.deleted", "a delete event"),
                                                ("google.cloud.storage.object.v1.metadataUpdated",
                                                 "a metadata update event")])
def test_other_object_events_are_skipped(client, engine, event_type, words):
    carried = golden("storage_object_finalized.binary.json")
    carried["headers"]["ce-type"] = event_type
    response = post_carried(client, "/events/storage", carried)
    assert response.status_code == 200
    skipped, = response.json["skipped"]
    assert skipped["reason"] == "not_finalized" and skipped["message"].startswith(words)
    assert engine.calls == []


# --- Pub/Sub messages ------------------------------------------------------------------------

URIS = {"uris": ["gs://b/a.png", "gs://b/c.png"]}


def _expect_uri_refs(engine, message_id: str) -> None:
    assert [(r.trigger, r.uri, r.event_id) for r in engine.refs] == [("pubsub", "gs://b/a.png", message_id),
                                                                      ("pubsub", "gs://b/c.png", message_id)]


def test_messagepublished_cloudevent(client, engine):
    event = golden("pubsub_message_published.ce.json", data_b64=b64(json.dumps(URIS).encode()))
    response = client.post("/events/pubsub", data=json.dumps(event), content_type="application/cloudevents+json")
    assert response.status_code == 200, response.json
    _expect_uri_refs(engine, "9001")


def test_push_envelope(client, engine):
    response = client.post("/events/pubsub", json=golden("pubsub_push_envelope.json",
                                                         data_b64=b64(json.dumps(URIS).encode())))
    assert response.status_code == 200, response.json
    _expect_uri_refs(engine, "9001")


def test_unwrapped_push_takes_attributes_from_headers(client, engine):
    carried = golden("pubsub_push_unwrapped.json")
    carried["headers"]["uri"] = "gs://b/from-attribute.png"
    response = post_carried(client, "/events/pubsub", carried)
    assert response.status_code == 200, response.json
    ref, = engine.refs
    assert (ref.uri, ref.event_id) == ("gs://b/from-attribute.png", "9001")


def test_unwrapped_push_with_uris_in_the_body(client, engine):
    response = post_carried(client, "/events/pubsub", golden("pubsub_push_unwrapped.json", data=json.dumps(URIS)))
    assert response.status_code == 200, response.json
    _expect_uri_refs(engine, "9001")


def test_unwrapped_push_with_image_bytes(client, engine):
    carried = golden("pubsub_push_unwrapped.json")
    headers = {**carried["headers"], "content-type": "image/png"}
    response = client.post("/events/pubsub", data=IMAGE, headers=headers)
    assert response.status_code == 200, response.json
    ref, = engine.refs
    assert ref.data == IMAGE and ref.event_id == "9001"


@pytest.mark.parametrize("route, body, headers", [
    ("/events/pubsub", b"not json", {}),
    ("/events/pubsub", json.dumps({"message": {"data": "!!!"}}).encode(), {}),
    ("/events/pubsub", json.dumps({"message": {"data": "", "attributes": {"a": 1}}}).encode(), {}),
    ("/events/storage", b"{}", {"ce-type": "com.example.other", "ce-id": "x", "ce-source": "s",
                                "ce-specversion": "1.0"}),
    ("/events/pubsub", json.dumps({"message": {"data": b64(b"https://example.com/a.png")}}).encode(), {}),
])
def test_bad_messages_are_acknowledged(client, engine, route, body, headers):
    response = client.post(route, data=body, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 200, response.json
    assert response.json["acknowledged"] is True and response.json["error"]["retryable"] is False
    assert response.json["error"]["code"] in ("bad_message", "forbidden_source")
    assert "Retry-After" not in response.headers and engine.calls == []


@pytest.mark.parametrize("folder, status", [("flaky", 503), ("busy", 429)])
def test_transient_failures_ask_for_redelivery(client, folder, status):
    response = client.post("/events/pubsub", json=golden("pubsub_push_envelope.json",
                                                         data_b64=b64(f"gs://b/{folder}/x.png".encode())))
    assert response.status_code == status and response.headers["Retry-After"] == "1"
    assert response.json["results"][0]["error"]["retryable"] is True


def test_redelivery_is_a_duplicate(client, engine):
    envelope = golden("pubsub_push_envelope.json", data_b64=b64(b"gs://b/a.png"))
    first, again = client.post("/events/pubsub", json=envelope), client.post("/events/pubsub", json=envelope)
    assert len(first.json["results"]) == 1 and again.json["results"] == [] and len(again.json["duplicates"]) == 1
    assert len(engine.calls) == 1


def test_oversize_event_is_acknowledged_unread(service, engine):
    small = Service.for_engine(settings(MAX_REQUEST_BYTES="1000"), engine)
    response = app.create_app(small).test_client().post("/events/storage", data=b"x" * 2000,
                                                        headers={"ce-id": "big-1"})
    assert response.status_code == 200
    assert response.json["error"]["code"] == "too_large" and response.json["acknowledged"] is True


# --- the standalone CloudEvent targets --------------------------------------------------------

def test_cloudevent_target_raises_only_for_transient_outcomes(service):
    from cloudevents.http import CloudEvent
    resource = golden("storage_object_finalized.binary.json")["body"]
    ok = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "s", "id": "1"}, resource)
    answers.raise_unless_acknowledged(handlers.cloudevent(service, ok, "storage"))  # "OK": nothing raised
    flaky = CloudEvent(dict(ok.get_attributes(), id="2"), {**resource, "name": "flaky/x.png"})
    with pytest.raises(HTTPException) as raised:
        answers.raise_unless_acknowledged(handlers.cloudevent(service, flaky, "storage"))
    response = raised.value.get_response()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert json.loads(response.get_data())["results"][0]["error"]["code"] == "fetch_failed"


# --- the HTTP API: every documented shape ----------------------------------------------------

def _predict(client, body, query: str = ""):
    response = client.post("/" + query, json=body)
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize("instance", [
    {"image": {"b64": b64(IMAGE)}},
    {"image_bytes": {"b64": b64(IMAGE)}},
    {"encoded_image": {"b64": b64(IMAGE)}},
    {"b64": b64(IMAGE)},
    {"content": b64(IMAGE)},
])
def test_instance_shapes(client, engine, instance):
    body = _predict(client, {"instances": [instance]})
    assert body["predictions"][0]["top_label"] == "tabby"
    assert engine.refs[0].data == IMAGE


def test_keys_keep_their_json_type(client):
    instances = [{"b64": b64(IMAGE), "key": 7}, {"b64": b64(IMAGE), "key": "seven"}, {"b64": b64(IMAGE), "key": 7.5},
                 {"b64": b64(IMAGE)}]
    rows = _predict(client, {"instances": instances})["predictions"]
    assert [row.get("key", "absent") for row in rows] == [7, "seven", 7.5, "absent"]


def test_long_keys_and_ids_are_bounded_by_the_ref():
    ref = ImageRef(trigger="http", key="k" * 5000, event_id="e" * 5000)
    assert (len(ref.key), len(ref.event_id)) == (MAX_KEY_CHARS, MAX_EVENT_ID_CHARS)


def test_a_delivery_bounds_its_id(client, engine):
    """A 1 MB ce-id must not make a result line over Cloud Logging's 256 KiB entry limit."""
    carried = golden("storage_object_finalized.binary.json")
    carried["headers"]["ce-id"] = "7" * 1_000_000
    assert post_carried(client, "/events/storage", carried).status_code == 200
    assert len(engine.refs[0].event_id) == MAX_EVENT_ID_CHARS


def test_columnar_list(client, engine):
    body = _predict(client, {"inputs": [{"b64": b64(IMAGE)}, {"b64": b64(IMAGE + b"2")}]})
    assert list(body) == ["outputs"] and len(body["outputs"]) == 2
    assert [ref.data for ref in engine.refs] == [IMAGE, IMAGE + b"2"]


def test_columnar_single_image(client):
    assert len(_predict(client, {"inputs": {"b64": b64(IMAGE)}})["outputs"]) == 1


def test_columnar_named(client):
    body = _predict(client, {"inputs": {"image_bytes": [{"b64": b64(IMAGE)}, {"b64": b64(IMAGE)}], "key": [1, 2]}})
    assert [row["key"] for row in body["outputs"]] == [1, 2]


def test_columnar_named_columns_must_match(client):
    response = client.post("/", json={"inputs": {"image_bytes": [{"b64": b64(IMAGE)}], "key": [1, 2]}})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_message"


def test_automl_parameters(client, engine):
    body = _predict(client, {"instances": [{"content": b64(IMAGE)}],
                             "parameters": {"confidenceThreshold": 0.15, "maxPredictions": 4}})
    row, = body["predictions"]
    assert engine.calls[0][1] == 4
    assert [p["label"] for p in row["predictions"]] == ["tabby", "espresso"]  # 0.1 and 0.06 are under 0.15


@pytest.mark.parametrize("parameters", [{"confidenceThreshold": 2}, {"maxPredictions": 0}, {"maxPredictions": "x"},
                                        ["not", "a", "map"]])
def test_bad_automl_parameters(client, parameters):
    response = client.post("/", json={"instances": [{"content": b64(IMAGE)}], "parameters": parameters})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_message"


def test_top_k_query(client, engine):
    _predict(client, {"instances": [{"b64": b64(IMAGE)}]}, "?top_k=5")
    assert engine.calls[0][1] == 5


def test_raw_bytes_and_forms(client, engine):
    assert client.post("/", data=IMAGE, content_type="image/png").json["predictions"][0]["top_label"] == "tabby"
    import io
    form = {"a": (io.BytesIO(IMAGE), "a.png"), "b": (io.BytesIO(IMAGE), "b.png")}
    rows = client.post("/", data=form, content_type="multipart/form-data").json["predictions"]
    assert [row["key"] for row in rows] == ["a.png", "b.png"]


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"", "image/png", 400, "empty_object"),
    (b'{"instances": []}', "application/json", 400, "bad_message"),
    (b'{"instances": [{"b64": "!!"}]}', "application/json", 400, "bad_message"),
    (b'[' * 100000 + b']' * 100000, "application/json", 400, "bad_message"),
    (b'{"instances": [{"uri": "gs://b/missing/x.png"}]}', "application/json", 200, None),
])
def test_http_errors(client, body, content_type, status, code):
    response = client.post("/", data=body, content_type=content_type)
    assert response.status_code == status, response.json
    if code is not None:
        assert response.json == {"error": {"code": code, "message": response.json["error"]["message"]}}
        assert "Retry-After" not in response.headers
    else:
        assert response.json["predictions"][0]["error"]["code"] == "not_found"


def test_http_transient_failure_is_the_status(client):
    response = client.post("/", json={"instances": [{"uri": "gs://b/a.png"}, {"uri": "gs://b/busy/x.png"}]})
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.json["error"]["code"] == "overloaded"


def test_http_bad_top_k(client):
    response = client.post("/?top_k=%C2%B2", data=IMAGE, content_type="image/png")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_message"


def test_oversize_request(engine):
    small = app.create_app(Service.for_engine(settings(MAX_REQUEST_BYTES="1000"), engine)).test_client()
    response = small.post("/", data=b"x" * 2000, content_type="image/png")
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"
    assert engine.calls == []


# --- BigQuery remote calls ------------------------------------------------------------------

def _bigquery(client, calls, context=None):
    body = {"requestId": "r-1", "caller": "c", "sessionUser": "u", "calls": calls}
    if context is not None:
        body["userDefinedContext"] = context
    return client.post("/", json=body)


def test_bigquery_replies_in_call_order(client, engine):
    response = _bigquery(client, [["gs://b/a.png"], ["gs://b/c.png", "2"], [None], ["gs://b/missing/x.png"]],
                         {"top_k": "4"})
    assert response.status_code == 200, response.json
    replies = response.json["replies"]
    assert [r["status"] for r in replies] == ["ok", "ok", "error", "error"]
    assert [len(r["labels"]) for r in replies[:2]] == [4, 2]
    assert [r["error"]["code"] for r in replies[2:]] == ["bad_message", "not_found"]
    assert sorted(k for _, k in engine.calls) == [2, 4]


@pytest.mark.parametrize("calls, context, status", [("x", None, 400), ([["gs://b/a.png"]], {"top_k": "500"}, 400),
                                                    ([["gs://b/flaky/a.png"]], None, 503)])
def test_bigquery_request_errors(client, calls, context, status):
    response = _bigquery(client, calls, context)
    assert response.status_code == status and set(response.json) == {"errorMessage"}
    assert ("Retry-After" in response.headers) == (status == 503)


# --- the other routes ------------------------------------------------------------------------

def test_routes_without_a_body(client, service):
    assert client.get("/").status_code == 200 and "text/html" in client.get("/").headers["Content-Type"]
    wrong = client.put("/")
    assert (wrong.status_code, wrong.headers["Allow"], wrong.json["error"]["code"]) == (405, "POST",
                                                                                          "method_not_allowed")
    assert client.get("/nowhere").json["error"]["code"] == "not_found"
    health = client.get("/health")
    assert (health.status_code, health.json["status"], health.json["model"]["id"]) == (200, "ready", "fake@1")


def test_health_while_loading_and_after_a_failure(engine):
    loading = Service.for_engine(settings(), engine)
    loading.is_ready = lambda: False
    response = app.create_app(loading).test_client().get("/health")
    assert (response.status_code, response.headers["Retry-After"], response.json["status"]) == (503, "1", "loading")
    loading.load_error = lambda: BucketeyeError("model_error", "no such model", retryable=False)
    response = app.create_app(loading).test_client().get("/health")
    assert (response.status_code, response.json["status"]) == (503, "failed") and "Retry-After" not in response.headers


# --- the error table ------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_code_answers_from_the_table(code):
    error = BucketeyeError(code)
    http = answers.request_error(error)
    event = answers.event_error(error)
    assert http.status == ERROR_CODES[code].http_status
    assert event.status == (ERROR_CODES[code].http_status if error.retryable else 200)
    assert answers.respond(http)[2].get("Retry-After") == ("1" if error.retryable else None)
    assert event.body["acknowledged"] is not error.retryable
