"""The HTTP API on the combined server (POST /) and the standalone on_http_request target:
every body shape, every error status, request-size limits, the upload page, /health (and the old /healthz),
trace correlation, and what reaches the logs."""
from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests
from _functional_support import ALLOWED_BUCKET, CAT_IDS, COFFEE_IDS, PRIVATE_BUCKET, PROJECT, new_id

MAX_REQUEST_BYTES = 4_000_000


@pytest.fixture(scope="module")
def server(start_server):
    return start_server("combined-http", env={"MAX_REQUEST_BYTES": MAX_REQUEST_BYTES})


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def _raw_request(port: int, head: bytes, chunks=(), timeout: float = 10.0) -> tuple[int, dict, bytes, float]:
    """Send bytes as they are (a lying Content-Length, a hand-made chunked body) and read
    one response: (status, headers, body, seconds until the response was complete)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            assert part, f"connection closed before a response: {data!r}"
            data += part
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        if "content-length" in headers:
            while len(body) < int(headers["content-length"]):
                part = sock.recv(65536)
                assert part, "connection closed in the response body"
                body += part
        else:  # chunked: read to the last chunk
            while not body.endswith(b"0\r\n\r\n"):
                part = sock.recv(65536)
                assert part, "connection closed in the response body"
                body += part
            body = _dechunk(body)
    return int(status_line.split()[1]), headers, body, time.monotonic() - started


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]


# --- body shapes ----------------------------------------------------------------------------

def test_raw_image_bytes(server, images):
    mark = server.log.mark()

    response = requests.post(server.url + "/", data=images.coffee, headers={"Content-Type": "image/png"}, timeout=60)

    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert prediction["predictions"][0]["label_id"] in COFFEE_IDS
    assert prediction["top_label"] == prediction["predictions"][0]["label"]
    assert len(prediction["predictions"]) == 5  # TOP_K default
    assert prediction["image"] == {"format": "PNG", "width": 600, "height": 400}
    assert prediction["model"]["id"] == "efficientnet_lite0@1"
    line = server.log.one_result(mark)
    assert line["result_id"] == prediction["result_id"]
    assert (line["source"]["trigger"], line["source"]["content_type"]) == ("http", "image/png")
    assert line["predictions"] == prediction["predictions"]


def test_top_k(server, images):
    response = requests.post(server.url + "/?top_k=3", data=images.coffee_jpeg,
                             headers={"Content-Type": "application/octet-stream"}, timeout=60)

    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert len(prediction["predictions"]) == 3
    assert prediction["image"]["format"] == "JPEG"
    scores = [p["score"] for p in prediction["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_multipart_files_keep_order_and_keys(server, images):
    files = [("file", ("cat.png", images.chelsea, "image/png")),
             ("file", ("coffee.jpg", images.coffee_jpeg, "image/jpeg")),
             ("other", ("second-cat.png", images.chelsea, "image/png"))]
    mark = server.log.mark()

    response = requests.post(server.url + "/", files=files, timeout=60)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["key"] for p in predictions] == ["cat.png", "coffee.jpg", "second-cat.png"]
    for prediction, expected in zip(predictions, (CAT_IDS, COFFEE_IDS, CAT_IDS)):
        assert prediction["predictions"][0]["label_id"] in expected, prediction
    lines = server.log.wait_results(mark, 3)
    assert [line["source"]["key"] for line in lines] == ["cat.png", "coffee.jpg", "second-cat.png"]
    assert [line["result_id"] for line in lines] == [p["result_id"] for p in predictions]


@pytest.mark.parametrize("shape", ["cloudml", "tf-serving"])
def test_json_instances(server, images, shape):
    def instance(data: bytes, key: str) -> dict:
        encoded = base64.b64encode(data).decode()
        return {"image": {"b64": encoded}, "key": key} if shape == "cloudml" else {"b64": encoded, "key": key}

    body = {"instances": [instance(images.coffee, "k-coffee"), instance(images.chelsea, "k-cat")]}

    response = requests.post(server.url + "/?top_k=2", json=body, timeout=60)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["key"] for p in predictions] == ["k-coffee", "k-cat"]
    assert predictions[0]["predictions"][0]["label_id"] in COFFEE_IDS
    assert predictions[1]["predictions"][0]["label_id"] in CAT_IDS
    assert [len(p["predictions"]) for p in predictions] == [2, 2]


def test_tf_serving_instance_without_key(server, images):
    body = {"instances": [{"b64": base64.b64encode(images.chelsea).decode()}]}

    response = requests.post(server.url + "/", json=body, timeout=60)

    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert "key" not in prediction
    assert prediction["predictions"][0]["label_id"] in CAT_IDS


def test_json_instances_with_gs_uris(server, gcs, images):
    cat = gcs.upload(images.chelsea)
    private = gcs.upload(images.coffee, bucket=PRIVATE_BUCKET)
    body = {"instances": [{"uri": f"gs://{ALLOWED_BUCKET}/{cat['name']}", "key": "a"},
                          {"uri": f"gs://{PRIVATE_BUCKET}/{private['name']}", "key": "b"},
                          {"uri": f"gs://{ALLOWED_BUCKET}/missing/{new_id()}.png", "key": "c"}]}
    mark = server.log.mark()

    response = requests.post(server.url + "/", json=body, timeout=60)

    assert response.status_code == 200, response.text  # per-image errors sit in their own prediction
    ok, forbidden, missing = response.json()["predictions"]
    assert ok["predictions"][0]["label_id"] in CAT_IDS
    assert forbidden == {"key": "b", "error": {"code": "forbidden_source", "message": forbidden["error"]["message"]}}
    assert missing["error"]["code"] == "not_found"
    lines = server.log.wait_results(mark, 3)
    assert [line["status"] for line in lines] == ["ok", "error", "error"]


def test_one_bad_instance_among_good_ones(server, images):
    body = {"instances": [{"b64": base64.b64encode(images.truncated_jpeg).decode(), "key": "broken"},
                          {"b64": base64.b64encode(images.coffee).decode(), "key": "fine"}]}

    response = requests.post(server.url + "/", json=body, timeout=60)

    assert response.status_code == 200, response.text
    broken, fine = response.json()["predictions"]
    assert broken["error"]["code"] == "corrupt_image" and "predictions" not in broken
    assert fine["predictions"][0]["label_id"] in COFFEE_IDS


# --- errors -------------------------------------------------------------------------------

def test_empty_body(server):
    _error(requests.post(server.url + "/", data=b"", headers={"Content-Type": "image/png"}, timeout=30),
           400, "empty_object")


def test_text_body(server):
    mark = server.log.mark()

    _error(requests.post(server.url + "/", data=b"hello, world", headers={"Content-Type": "text/plain"}, timeout=30),
           415, "unsupported_format")

    line = server.log.one_result(mark)
    assert (line["error"]["code"], line["severity"]) == ("unsupported_format", "WARNING")


def test_truncated_jpeg(server, images):
    mark = server.log.mark()

    _error(requests.post(server.url + "/", data=images.truncated_jpeg, headers={"Content-Type": "image/jpeg"},
                         timeout=30), 422, "corrupt_image")

    assert server.log.one_result(mark)["error"]["code"] == "corrupt_image"


@pytest.mark.parametrize("top_k", ["0", "-1", "abc", "101", "2.5"])
def test_bad_top_k(server, images, top_k):
    mark = server.log.mark()

    error = _error(requests.post(server.url + "/", params={"top_k": top_k}, data=images.coffee, timeout=30),
                   400, "bad_message")

    assert "top_k" in error["message"]
    assert server.log.results(mark) == []


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"[1, 2]", id="not-an-object"),
    pytest.param(b'{"instances": []}', id="no-instances"),
    pytest.param(b'{"instances": [{"image": {}}]}', id="instance-without-image"),
    pytest.param(b'{"instances": [{"b64": "this is not base64 at all"}]}', id="bad-base64"),
    pytest.param(b'{"instances": [{"uri": "https://example.com/a.png"}]}', id="url-instance"),
])
def test_bad_json(server, body):
    response = requests.post(server.url + "/", data=body, headers={"Content-Type": "application/json"}, timeout=30)

    if b"https://" in body:
        _error(response, 403, "forbidden_source")
    else:
        _error(response, 400, "bad_message")


def test_too_many_instances(server, images):
    body = {"instances": [{"b64": "AAAA"}] * 65}
    error = _error(requests.post(server.url + "/", json=body, timeout=30), 400, "bad_message")
    assert "at most 64" in error["message"]


def test_declared_body_over_the_limit_is_refused_before_it_is_read(server):
    """Content-Length says 1 GB, 10 bytes follow: the answer comes at once, nothing waits for the rest."""
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {1024 ** 3}\r\n\r\n").encode()

    status, headers, body, seconds = _raw_request(server.port, head, [b"\xff\xd8\xff\xe0 tiny"], timeout=10)

    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "too_large"
    assert seconds < 5
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_chunked_body_over_the_limit(server):
    chunk = b"\xab" * 65536
    count = MAX_REQUEST_BYTES // len(chunk) + 10

    response = requests.post(server.url + "/", data=(chunk for _ in range(count)),
                             headers={"Content-Type": "image/jpeg"}, timeout=60)

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    _error(response, 413, "too_large")


def test_chunked_body_under_the_limit_is_classified(server, images):
    data = images.coffee
    response = requests.post(server.url + "/", data=(data[i:i + 50_000] for i in range(0, len(data), 50_000)),
                             headers={"Content-Type": "image/png"}, timeout=60)

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["predictions"][0]["label_id"] in COFFEE_IDS


# --- pages, routes, health ------------------------------------------------------------------

def test_upload_page(server):
    response = requests.get(server.url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert '<input id="file" type="file"' in response.text
    assert "innerHTML" not in response.text


def test_unknown_path(server):
    _error(requests.post(server.url + "/v1/models/x:predict", data=b"x", timeout=10), 404, "not_found")
    _error(requests.get(server.url + "/nothing/here", timeout=10), 404, "not_found")


def test_event_routes_accept_post_only(server):
    response = requests.get(server.url + "/events/storage", timeout=10)
    _error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", ["/health", "/healthz"])
def test_health(server, path):
    """/health is what the probes use; the old /healthz still answers the same locally."""
    response = requests.get(server.url + path, timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["model"] == {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"}
    assert body["runtime"]


def test_health_routes_do_not_end_in_z():
    """Cloud Run reserves some paths ending in "z": the route the cloud probes must not."""
    from functions.routes import HEALTH_ROUTE

    assert not HEALTH_ROUTE.endswith("z")


@pytest.mark.parametrize("header,value", [
    ("traceparent", "00-{trace}-b7ad6b7169203331-01"),
    ("X-Cloud-Trace-Context", "{trace}/1;o=1"),
])
def test_trace_header_correlates_the_log_line(server, images, header, value):
    trace = new_id()
    mark = server.log.mark()

    response = requests.post(server.url + "/", data=images.chelsea,
                             headers={"Content-Type": "image/png", header: value.format(trace=trace)}, timeout=60)

    assert response.status_code == 200
    assert server.log.one_result(mark)["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{trace}"


# --- a model that cannot load ---------------------------------------------------------------

@pytest.fixture(scope="module")
def broken_model_server(start_server, tmp_path_factory):
    model = tmp_path_factory.mktemp("bad-model") / "model.tflite"
    model.write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    return start_server("broken-model", env={"MODEL_URI": str(model)},
                        ready=lambda r: r.status_code == 503 and r.json().get("status") == "failed")


def test_failed_model_load_is_reported_and_work_is_redelivered(broken_model_server, events, gcs, images):
    server = broken_model_server
    health = requests.get(server.url + "/health", timeout=10)
    assert health.status_code == 503
    assert health.json()["status"] == "failed" and health.json()["error"]["code"] in ("model_error", "not_found")

    resource = gcs.upload(images.coffee)
    storage = events.post_binary(server.url + "/events/storage", events.storage(resource))
    pubsub = events.post_json(server.url + "/events/pubsub",
                              events.envelope(f"gs://{ALLOWED_BUCKET}/{resource['name']}".encode()))
    http = requests.post(server.url + "/", data=images.coffee, headers={"Content-Type": "image/png"}, timeout=30)

    for response in (storage, pubsub):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
    _error(http, 503, "model_error")
    assert server.alive()


def test_failed_model_still_acknowledges_poison_messages(broken_model_server):
    server = broken_model_server
    mark = server.log.mark()

    response = requests.post(server.url + "/events/pubsub", data=b"not json",
                             headers={"Content-Type": "application/json"}, timeout=10)

    assert response.status_code == 200
    assert server.log.one_result(mark)["error"]["code"] == "bad_message"


# --- the standalone on_http_request target --------------------------------------------------

@pytest.fixture(scope="module")
def http_target(start_server):
    return start_server("on_http_request", target="on_http_request", signature_type="http",
                        env={"MAX_REQUEST_BYTES": MAX_REQUEST_BYTES}, probe="/",
                        ready=lambda r: r.status_code == 200)


def test_standalone_target_classifies(http_target, images):
    mark = http_target.log.mark()

    raw = requests.post(http_target.url + "/?top_k=3", data=images.chelsea, headers={"Content-Type": "image/png"},
                        timeout=60)
    form = requests.post(http_target.url + "/any/path", files=[("f", ("a.png", images.coffee, "image/png")),
                                                                 ("f", ("b.png", images.chelsea, "image/png"))],
                         timeout=60)

    assert raw.status_code == 200 and form.status_code == 200
    assert len(raw.json()["predictions"][0]["predictions"]) == 3
    assert raw.json()["predictions"][0]["predictions"][0]["label_id"] in CAT_IDS
    assert [p["key"] for p in form.json()["predictions"]] == ["a.png", "b.png"]
    assert form.json()["predictions"][0]["predictions"][0]["label_id"] in COFFEE_IDS
    assert len(http_target.log.wait_results(mark, 3)) == 3
    first = http_target.log.lines()[0]
    assert "logging.googleapis.com/diagnostic" in first and "app" not in first


def test_standalone_target_errors_and_page(http_target, images):
    assert "<title>bucketeye</title>" in requests.get(http_target.url + "/", timeout=10).text
    _error(requests.post(http_target.url, data=b"plain text", headers={"Content-Type": "text/plain"}, timeout=30),
           415, "unsupported_format")
    _error(requests.post(http_target.url, data=images.truncated_jpeg, timeout=30), 422, "corrupt_image")
    _error(requests.post(http_target.url, data=b"", timeout=30), 400, "empty_object")
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode()
    status, _, body, seconds = _raw_request(http_target.port, head, [b"abc"])
    assert (status, json.loads(body)["error"]["code"]) == (413, "too_large") and seconds < 5
