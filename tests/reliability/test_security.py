"""Security: only allow-listed buckets are read, no URL is ever fetched, object names stay data
(the local GCS emulator writes neither names nor bytes to disk, whatever the upload protocol), the upload page shows hostile labels and
file names as text in a real browser, request-size limits hold on every route before the
body is buffered, logs hold no tokens, signed URLs or image bytes, and malformed requests get
stable JSON errors and nothing else.

    .venv/bin/python -m pytest tests/reliability/test_security.py -s
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from tests import events as messages
from tests.reliability import _corpus
from tests.reliability._support import (
    ALLOWED_BUCKET,
    HOST,
    PRIVATE_BUCKET,
    PROJECT,
    REPO,
    SERVER_LIMITS,
    ServerProcess,
    assert_serving,
    chunked,
    clean_env,
    dechunk,
    figure,
    proc_kib,
    raw_http,
    reset_peak,
    seeded,
)

LIMIT = _corpus.MAX_REQUEST_BYTES


@pytest.fixture(scope="module")
def worker(server) -> int:
    return server.worker_pid()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def push(data: bytes, attributes: dict | None = None) -> dict:
    return {"message": {"data": b64(data), "attributes": attributes or {}, "messageId": messages.numeric_id(),
                        "publishTime": messages.rfc3339()}, "subscription": "projects/demo/subscriptions/push"}


def codes_of(response: requests.Response) -> list[str]:
    """Every outcome code an answer carries (HTTP API, event routes, BigQuery replies)."""
    body = response.json()
    if "predictions" in body:
        return [p["error"]["code"] if "error" in p else "ok" for p in body["predictions"]]
    if "replies" in body:
        return [r["error"]["code"] if r["status"] == "error" else "ok" for r in body["replies"]]
    if "results" in body:
        return [r["error"]["code"] if r["error"] else "ok" for r in body["results"]] or ["ignored"]
    return [body["error"]["code"]]


# --- only allow-listed buckets; no URL ever fetched ------------------------------------------------

def _naming(server, uri: str) -> list[tuple[str, requests.Response]]:
    """One image named by `uri` through every trigger that accepts a name."""
    url = server.url
    post = lambda path, payload: requests.post(url + path, json=payload, timeout=60)  # noqa: E731
    return [
        ("pubsub data", post("/events/pubsub", push(uri.encode()))),
        ("pubsub json", post("/events/pubsub", push(json.dumps({"uri": uri}).encode())))
        if isinstance(uri, str) else None,
        ("pubsub attribute", post("/events/pubsub", push(b"", {"uri": uri}))),
        ("pubsub list", post("/events/pubsub", push(json.dumps([uri]).encode()))),
        ("http instance", requests.post(url + "/", json={"instances": [{"uri": uri}]}, timeout=60)),
        ("bigquery call", requests.post(url + "/", json={"requestId": "r1", "calls": [[uri]]}, timeout=60)),
    ]


def test_only_allow_listed_buckets_are_ever_read(server, store, proxy, worker):
    secret = f"secret/{uuid.uuid4().hex}.jpg"
    store.upload(PRIVATE_BUCKET, secret, _corpus.jpeg(seed=21))
    before = len(proxy.snapshot())
    cases = {
        f"gs://{PRIVATE_BUCKET}/{secret}": "forbidden_source",
        f"gs://{PRIVATE_BUCKET.upper()}/{secret}": "forbidden_source",
        f"gs://{ALLOWED_BUCKET}@{PRIVATE_BUCKET}/{secret}": "forbidden_source",
        f" gs://{PRIVATE_BUCKET}/{secret}": "forbidden_source",
        f"gs://{ALLOWED_BUCKET}/../{PRIVATE_BUCKET}/{secret}": "not_found",   # a name inside photos, read as such
        f"gs://{ALLOWED_BUCKET}/..%2F{PRIVATE_BUCKET}%2F{secret}": "not_found",
        f"gs://{ALLOWED_BUCKET}/../../../../../../etc/passwd": "not_found",
    }
    seen = []
    for uri, expected in cases.items():
        for path, response in filter(None, _naming(server, uri)):
            assert response.status_code in (200, 403, 404), (uri, path, response.status_code, response.text[:200])
            assert codes_of(response) == [expected], (uri, path, response.text[:300])
            seen.append(expected)
        assert_serving(server, worker, uri)
    # the storage trigger, with the forbidden bucket in the event and in a notification
    resource = {"bucket": PRIVATE_BUCKET, "name": secret, "generation": "1", "size": "10", "contentType": "image/jpeg"}
    event = messages.storage_event(resource)
    answer = requests.post(server.url + event.route, data=event.body, headers=event.headers, timeout=60)
    assert codes_of(answer) == ["forbidden_source"], answer.text
    notification = push(json.dumps(resource).encode(), {"eventType": "OBJECT_FINALIZE", "bucketId": PRIVATE_BUCKET,
                                                         "objectId": secret, "objectGeneration": "2"})
    answer = requests.post(server.url + "/events/storage", json=notification, timeout=60)
    assert codes_of(answer) == ["forbidden_source"], answer.text

    reads = proxy.snapshot()[before:]
    private_reads = [r for r in reads if r.bucket and r.bucket.lower() != ALLOWED_BUCKET]
    escaping = [r for r in reads if r.object and ".." in r.object.split("/")]
    figure("allow_list", names_tried=len(seen) + 2, forbidden=seen.count("forbidden_source") + 2,
           traversal_names=seen.count("not_found"), storage_requests=len(reads),
           reads_of_other_buckets=len(private_reads))
    assert not private_reads, private_reads[:3]
    assert all(r.bucket == ALLOWED_BUCKET for r in reads if r.bucket), reads[:3]
    # names with ".." reached the store only as names in photos (keys in its memory: none exists)
    assert escaping


def test_no_url_is_ever_fetched(server, listener, proxy, worker):
    target = f"127.0.0.1:{listener.port}"
    urls = [f"http://{target}/cat.jpg", f"https://{target}/cat.jpg", f"HTTP://{target}/cat.jpg",
            f"http://{target}/photos/x.jpg?X-Goog-Signature=abc", f"ftp://{target}/cat.jpg", "file:///etc/passwd",
            "FILE://localhost/etc/passwd", f"gs://{target}/cat.jpg", f"gs://{ALLOWED_BUCKET}@{target}/x.jpg",
            f"//{target}/cat.jpg", f"s3://{target}/cat.jpg", f"data:image/png;base64,{b64(_corpus.png((2, 2)))}"]
    before = len(proxy.snapshot())
    outcomes: dict = {}
    for url in urls:
        for path, response in filter(None, _naming(server, url)):
            assert response.status_code in (200, 400, 403, 415), (url, path, response.status_code, response.text[:200])
            for code in codes_of(response):
                # A message whose data is neither JSON nor a gs:// or http(s):// line is an inline image:
                # "ftp://…" as raw data is bytes that do not decode (unsupported_format), never a fetch.
                allowed = ("forbidden_source", "bad_message") + (("unsupported_format",) if path == "pubsub data"
                                                                 else ())
                assert code in allowed, (url, path, code)
                outcomes[code] = outcomes.get(code, 0) + 1
    # links inside an object resource are never followed either
    resource = {"bucket": ALLOWED_BUCKET, "name": f"links/{uuid.uuid4().hex}.jpg", "generation": "1", "size": "10",
                "contentType": "image/jpeg", "mediaLink": f"http://{target}/media", "selfLink": f"http://{target}/self"}
    event = messages.storage_event(resource)
    answer = requests.post(server.url + event.route, data=event.body, headers=event.headers, timeout=60)
    assert codes_of(answer) == ["not_found"], answer.text
    # an absolute-form request target is not a proxy request
    raw = raw_http(server.port, f"GET http://{target}/steal HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    time.sleep(0.5)
    reads = proxy.snapshot()[before:]
    figure("no_urls", urls_tried=len(urls), requests=len(urls) * 6 + 2,
           outcomes=",".join(f"{k}:{v}" for k, v in sorted(outcomes.items())),
           listener_connections=listener.connections, storage_reads_other_than_allowed=sum(
               1 for r in reads if r.bucket and r.bucket != ALLOWED_BUCKET), absolute_form_status=raw.status)
    assert listener.connections == 0
    assert all(r.bucket in (None, ALLOWED_BUCKET) for r in reads), reads[:3]
    assert_serving(server, worker, "URLs")


# --- object names never reach the disk ----------------------------------------------------------------

def _hostile_names(mark: str) -> list[str]:
    return ["../../../../../../../../tmp/{m}", "../{m}", "a/../../{m}", "x/../../../{m}/deep/file", "/{m}-rooted",
            "..%2F..%2F{m}-encoded", "nul\x00{m}", "back\\..\\..\\{m}", "L" * 1000 + "{m}"]


def _upload_every_way(url: str, bucket: str, name: str, data: bytes) -> dict[str, int]:
    """The name and bytes through every upload protocol fake-gcs-server speaks; the status of each."""
    session = requests.Session()
    quoted = urllib.parse.quote(name, safe="")
    meta = json.dumps({"name": name}).encode()
    statuses = {
        "media": session.post(f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quoted}", data=data),
        "multipart/related": session.post(
            f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
            data=b"--B\r\nContent-Type: application/json\r\n\r\n" + meta + b"\r\n--B\r\n"
                 b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--B--\r\n",
            headers={"Content-Type": "multipart/related; boundary=B"}),
        "multipart/form-data": session.post(f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
                                            files={"metadata": (None, meta, "application/json"),
                                                   "file": ("x.jpg", data, "image/jpeg")}),
        "form post (XML API)": session.post(f"{url}/{bucket}", data={"key": name},
                                            files={"file": ("x.jpg", data, "image/jpeg")}),
        "XML API put": session.put(f"{url}/{bucket}/{quoted}", data=data),
    }
    start = session.post(f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable", json={"name": name})
    statuses["resumable start"] = start
    if start.ok and start.headers.get("Location"):  # the PUT goes where Location says: the emulator's own port
        statuses["resumable put"] = session.put(start.headers["Location"], data=data)
    return {way: response.status_code for way, response in statuses.items()}


def _marked_files(mark: str, places) -> list[str]:
    found = []
    for place, depth in places:
        base = str(place).rstrip(os.sep).count(os.sep)
        for folder, dirs, files in os.walk(place):
            if folder.count(os.sep) - base >= depth or "/.venv" in folder or "/.git" in folder:
                dirs[:] = []
            found += [os.path.join(folder, n) for n in dirs + files if mark in n]
    return found


def _written_bytes(pid: int) -> int:
    """Bytes the process sent (or dirtied) toward storage, from /proc/PID/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes in /proc/PID/io")


def test_no_upload_protocol_writes_an_object_name_or_its_bytes_to_disk(emulator, store):
    """The stack's GCS emulator keeps objects in memory: whatever the upload protocol and the
    name (.., /, %2F, NUL, 1,000 characters), no file carrying the name appears anywhere it
    could land, the emulator's own folder stays empty, and the megabytes uploaded are not
    written to storage by the emulator's process at all."""
    mark = "escaped-" + uuid.uuid4().hex[:10]
    data = _corpus.jpeg((64, 64), seed=77) + seeded(77).randbytes(512 * 1024)  # 0.5 MB a copy: ~20 MB in all
    written_before = _written_bytes(emulator.pid)
    outcomes = {}
    for pattern in _hostile_names(mark):
        name = pattern.format(m=mark)
        outcomes[name] = _upload_every_way(emulator.url, ALLOWED_BUCKET, name, data)
    written = _written_bytes(emulator.pid) - written_before
    accepted = sum(1 for ways in outcomes.values() for status in ways.values() if 200 <= status < 300)
    places = [("/tmp", 2), (str(REPO), 2), (str(Path(emulator.workdir).parent), 3), (str(Path.home()), 2),
              ("/var/tmp", 2), ("/dev/shm", 2)]
    files = _marked_files(mark, places)
    figure("emulator_names", names=len(outcomes), requests=sum(map(len, outcomes.values())), accepted=accepted,
           uploaded_mib=round(accepted * len(data) / 2**20, 1), bytes_written_by_emulator=written,
           files_carrying_names=len(files), files_in_emulator_folder=len(list(Path(emulator.workdir).rglob("*"))))
    assert accepted >= 20, outcomes  # the names are taken as names, not refused: this tested real writes
    assert not files, files
    assert not list(Path(emulator.workdir).rglob("*"))
    assert written < 256 * 1024, f"the emulator wrote {written} bytes to storage while {accepted} uploads arrived"
    # and a name is a key: what went in under it comes back under it
    name = _hostile_names(mark)[0].format(m=mark)
    quoted = urllib.parse.quote(name, safe="")
    assert requests.get(f"{emulator.url}/download/storage/v1/b/{ALLOWED_BUCKET}/o/{quoted}?alt=media").content == data


# --- the upload page in a real browser ---------------------------------------------------------------

HOSTILE_LABELS = ['<script>window.pwned = "label-script"</script>',
                  '<img src=x onerror="window.pwned = \'label-img\'">',
                  '"><svg onload="window.pwned = \'label-svg\'"></svg><b>bold</b>']
TINY_MODEL = """
import sys, tensorflow as tf
module = tf.Module()
@tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="images")])
def serve(images):
    return {"logits": 3.0 * tf.reduce_mean(images, axis=(1, 2))}
converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
open(sys.argv[1], "wb").write(converter.convert())
"""


@pytest.fixture(scope="module")
def hostile_label_server(tmp_path_factory, store, proxy):
    """A server whose model (a 3-class probe built here) has HTML and script as its labels and name."""
    folder = tmp_path_factory.mktemp("hostile-model")
    subprocess.run([sys.executable, "-c", TINY_MODEL, str(folder / "probe.tflite")], check=True, capture_output=True,
                   timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    (folder / "labels.txt").write_text("\n".join(HOSTILE_LABELS) + "\n", encoding="utf-8")
    (folder / "model.json").write_text(json.dumps({"name": "<i onmouseover=alert(1)>m</i>", "version": "1"}))
    env = clean_env({"STORAGE_EMULATOR_HOST": proxy.url, "ALLOWED_BUCKETS": ALLOWED_BUCKET,
                     "GOOGLE_CLOUD_PROJECT": PROJECT,
                     "MODEL_URI": str(folder / "probe.tflite"), "OUTPUT_KIND": "logits", **SERVER_LIMITS})
    running = ServerProcess("hostile-labels", tmp_path_factory.mktemp("hostile-server"), env).start()
    yield running
    running.stop()


def test_hostile_labels_and_file_names_stay_text_in_the_browser(hostile_label_server, browser, tmp_path):
    tab = browser.tab
    tab.open(hostile_label_server.url + "/")
    title = tab.evaluate("document.title")
    assert title == "bucketeye"
    scripts = tab.evaluate("document.scripts.length")
    name = '<img src=y onerror="window.pwned=\'filename\'"><svg onload="window.pwned=\'fn2\'">.png'
    picture = tmp_path / name
    picture.write_bytes(_corpus.png((32, 32), seed=30))

    tab.choose_file("#file", picture)
    tab.wait_for("!document.getElementById('results').hidden")
    labels = tab.evaluate("Array.from(document.querySelectorAll('#results tbody tr td:first-child'))"
                          ".map(td => td.textContent)")
    status = tab.evaluate("document.getElementById('status').textContent")
    timings = tab.evaluate("document.getElementById('timings').textContent")
    time.sleep(0.5)  # an injected onerror/onload would have fired by now
    state = tab.evaluate("""({pwned: typeof window.pwned, title: document.title, scripts: document.scripts.length,
        imgs: document.querySelectorAll('img').length, svgs: document.querySelectorAll('svg').length,
        bold: document.querySelectorAll('b, i').length})""")
    figure("browser_escaping", labels_shown=len(labels), hostile_labels=len(HOSTILE_LABELS), scripts_run=0
           if state["pwned"] == "undefined" else 1, dialogs=len(tab.dialogs), injected_elements=state["svgs"] +
           state["bold"] + state["imgs"] - 1)
    assert sorted(labels) == sorted(HOSTILE_LABELS)  # literally, every character
    assert status.startswith(name + ": ") and status[len(name) + 2:] in HOSTILE_LABELS
    assert "<i onmouseover=alert(1)>m</i>@1" in timings
    assert state == {"pwned": "undefined", "title": "bucketeye", "scripts": scripts, "imgs": 1, "svgs": 0, "bold": 0}
    assert tab.dialogs == []
    # The control: the same strings parsed as HTML do run, so the check above could have failed.
    tab.evaluate("document.body.insertAdjacentHTML('beforeend', " + json.dumps(HOSTILE_LABELS[1]) + ")")
    assert tab.wait_for("window.pwned || ''", timeout=10) == "label-img"


# --- request-size limits, before buffering, on every route ------------------------------------------

ROUTES = [("POST", "/", 413, "too_large"), ("POST", "/events/storage", 200, "too_large"),
          ("POST", "/events/pubsub", 200, "too_large"), ("GET", "/", 200, None), ("GET", "/healthz", 200, None),
          ("POST", "/healthz", 200, None), ("PUT", "/", 405, "method_not_allowed"),
          ("POST", "/no/such/route", 404, "not_found")]


def _send_and_read(port: int, head: bytes, body_chunks, timeout: float = 20.0):
    """Send the body from a thread while the answer is read here: the answer must not wait
    for a body the server has no reason to read."""
    import socket
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sent = {"bytes": 0}

    def send():
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent["bytes"] += len(chunk)
        except OSError:
            pass
    sender = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        seconds = time.monotonic() - started
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head_bytes.decode("latin-1").split("\r\n")[1:])}
        while "chunked" in headers.get("transfer-encoding", "") and not body.endswith(b"0\r\n\r\n"):
            part = sock.recv(65536)
            if not part:
                break
            body += part
        while "content-length" in headers and len(body) < int(headers["content-length"]):
            part = sock.recv(65536)
            if not part:
                break
            body += part
    finally:
        sock.close()
    if "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    status = int(head_bytes.split(b" ", 2)[1]) if head_bytes else 0
    return status, body, seconds, sent["bytes"]


@pytest.mark.parametrize("method,path,status,code", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_size_limits_hold_before_the_body_is_buffered(server, worker, method, path, status, code):
    """Content-Length says 1 GB (10 bytes follow): the answer comes at once. A chunked body of
    64 MB: the worker's peak memory grows by far less than the body (nothing buffers it)."""
    declared = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {1024 ** 3}\r\n\r\n").encode()
    got, body, seconds, _ = _send_and_read(server.port, declared, [b"0123456789"])
    assert (got, seconds < 5) == (status, True), (got, body[:200], seconds)
    if code:
        assert _code(body) == code, body[:300]

    reset = reset_peak(worker)
    before = proc_kib(worker, "VmRSS" if reset else "VmHWM")
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    got, body, seconds, sent = _send_and_read(server.port, head, chunked(64 * 1024 * 1024, piece=256 * 1024))
    growth = proc_kib(worker, "VmHWM") - before
    figure(f"size_limit {method} {path}", declared_1gb_status=status, declared_seconds=round(seconds, 2),
           chunked_64mb_status=got, peak_growth_mib=round(growth / 1024, 1))
    assert got == status, (got, body[:200])
    if code:
        assert _code(body) == code, body[:300]
    assert growth < 24 * 1024, f"the worker's peak grew by {growth // 1024} MiB for a 64 MiB body"
    assert_serving(server, worker, f"{method} {path}")


def _code(body: bytes) -> str:
    data = json.loads(body)
    return data["error"]["code"]


# --- nothing secret in the logs ---------------------------------------------------------------------

def test_logs_hold_no_tokens_signed_urls_or_image_bytes(server, worker):
    token, sig, cred, bearer, cookie = (f"{kind}{uuid.uuid4().hex}" for kind in
                                        ("TOKEN", "SIGNATURE", "CREDENTIAL", "BEARER", "COOKIE"))
    query = f"?token={token}&X-Goog-Signature={sig}&X-Goog-Credential={cred}"
    headers = {"Authorization": f"Bearer {bearer}", "Cookie": f"session={cookie}", "X-Goog-Signature": sig}
    signed = f"https://storage.googleapis.com/{ALLOWED_BUCKET}/x.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256" \
             f"&X-Goog-Credential={cred}&X-Goog-Signature={sig}"
    images = [_corpus.encode(_noise(seed), "PNG") for seed in range(4)]
    sent = 0

    def post(path, **kwargs):
        nonlocal sent
        sent += 1
        return requests.post(server.url + path + query, headers={**headers, **kwargs.pop("headers", {})}, timeout=60,
                             **kwargs)
    post("/", data=images[0], headers={"Content-Type": "image/png"})
    post("/", files={"f": ("a.png", images[1], "image/png")})
    post("/", json={"instances": [{"image": {"b64": b64(images[2])}, "key": "k"}, {"uri": signed}]})
    post("/", json={"requestId": "r", "calls": [[signed]]})
    post("/events/pubsub", json=push(images[3]))
    post("/events/pubsub", json=push(json.dumps({"b64": b64(images[2])}).encode()))
    post("/events/pubsub", json=push(signed.encode()))
    post("/events/pubsub", json=push(b"", {"uri": signed}))
    post("/events/pubsub", json=push(b"", {"uri": f"gs://{ALLOWED_BUCKET}/missing.jpg", "token": token}))
    post("/events/storage", data=b"{not json", headers={"Content-Type": "application/json"})
    post("/", data=images[0][:50], headers={"Content-Type": "image/png"})  # corrupt
    post("/", data=b"{bad json", headers={"Content-Type": "application/json"})
    post("/nope")
    sent += 2
    requests.get(server.url + "/" + query, headers=headers, timeout=10)
    requests.put(server.url + "/" + query, headers=headers, timeout=10)
    time.sleep(1.0)

    logs = (server.stdout_path.read_bytes() + server.stderr_path.read_bytes())
    text = logs.decode("utf-8", "replace")
    secrets = {"token": token, "signature": sig, "credential": cred, "bearer": bearer, "cookie": cookie}
    leaked = [name for name, value in secrets.items() if value in text]
    image_b64 = [b64(image) for image in images]
    leaked_images = [i for i, encoded in enumerate(image_b64)
                     if encoded[len(encoded) // 2: len(encoded) // 2 + 48] in text]
    leaked_raw = [i for i, image in enumerate(images) if image[len(image) // 2: len(image) // 2 + 32] in logs]
    figure("log_secrets", requests=sent, log_bytes=len(logs), secrets_sent=len(secrets), secrets_found=len(leaked),
           images_sent=len(images), image_bytes_found=len(leaked_images) + len(leaked_raw))
    assert not leaked, leaked
    assert not leaked_images and not leaked_raw
    assert "Traceback" not in text
    assert_serving(server, worker, "secrets")


def _noise(seed: int):
    from PIL import Image
    rng = __import__("random").Random(seed)
    return Image.frombytes("RGB", (48, 48), rng.randbytes(48 * 48 * 3))


# --- malformed requests get stable JSON errors, nothing more ----------------------------------------

def _post(target: str, body: bytes, content_type: str | None = None) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + body


def _get(target: str, extra: bytes = b"") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


JSON_TYPE = "application/json"
BAD_REQUESTS = [
    # (name, raw request, expected status, expected JSON code; None: gunicorn's or the framework's own answer)
    ("put_upload", b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"),
    ("delete_events", b"DELETE /events/storage HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    ("patch_pubsub", b"PATCH /events/pubsub HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405,
     "method_not_allowed"),
    ("options", b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    ("trace_echo", b"TRACE / HTTP/1.1\r\nHost: x\r\nX-Echo: ECHO-SECRET\r\n\r\n", 405, "method_not_allowed"),
    ("propfind", b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    ("get_events", _get("/events/storage"), 405, "method_not_allowed"),
    ("dotdot_passwd", _get("/../etc/passwd"), 404, "not_found"),
    ("encoded_dotdot", _get("/%2e%2e/%2e%2e/etc/passwd"), 404, "not_found"),
    ("double_slash", _get("//etc/passwd"), 404, "not_found"),
    ("route_dotdot", _get("/events/storage/../../main.py"), 404, "not_found"),
    ("source_file", _get("/main.py"), 404, "not_found"),
    ("git_config", _get("/.git/config"), 404, "not_found"),
    ("backslash", _get("/..\\..\\etc\\passwd"), 404, "not_found"),
    ("framework_robots", _get("/robots.txt"), 404, None),
    ("invalid_json", _post("/", b"{not json", JSON_TYPE), 400, "bad_message"),
    ("json_array", _post("/", b"[]", JSON_TYPE), 400, "bad_message"),
    ("deeply_nested_json", _post("/", b"[" * 100_000 + b"]" * 100_000, JSON_TYPE), 400, "bad_message"),
    ("deeply_nested_remote_call", _post("/", b'{"requestId": "r", "calls": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                        JSON_TYPE), 400, "bad_message"),
    ("instances_not_a_list", _post("/", b'{"instances": 1}', JSON_TYPE), 400, "bad_message"),
    ("instance_of_wrong_shape", _post("/", b'{"instances": [{"image": {"url": "http://x/y"}}]}', JSON_TYPE), 400,
     "bad_message"),
    ("json_wrong_charset", _post("/", '{"instances": []}'.encode("utf-16"), JSON_TYPE), 400, "bad_message"),
    ("top_k_text", _post("/?top_k=abc", b"x"), 400, "bad_message"),
    ("top_k_zero", _post("/?top_k=0", b"x"), 400, "bad_message"),
    ("top_k_unicode_digit", _post("/?top_k=%C2%B2", b"x"), 400, "bad_message"),
    ("top_k_5000_digits", _post("/?top_k=" + "9" * 5000, b"x"), 400, "bad_message"),
    ("form_without_files", _post("/", b"--B--\r\n", "multipart/form-data; boundary=B"), 400, "bad_message"),
    ("form_without_boundary", _post("/", b"--B--\r\n", "multipart/form-data"), 400, "bad_message"),
    ("bigquery_unicode_top_k", _post("/", json.dumps({"requestId": "r", "calls": [["gs://photos/a"]],
                                                      "userDefinedContext": {"top_k": "\u00b2"}}).encode(), JSON_TYPE),
     400, None),
    ("bigquery_calls_not_a_list", _post("/", b'{"requestId": "r", "calls": 5}', JSON_TYPE), 400, None),
    ("huge_header", _get("/", b"X-Big: " + b"a" * 100_000 + b"\r\n"), 431, None),
    ("many_headers", _get("/", b"".join(b"X-H%d: 1\r\n" % i for i in range(200))), 431, None),
    ("huge_request_line", _get("/" + "a" * (30 * 1024 * 1024)), 414, None),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400, None),
    ("no_version", b"GET /\r\n\r\n", 400, None),
]
LEAKS = (b"Traceback", b'File "', b"Werkzeug/", b"Python/", b"gunicorn/", b"root:x:0:0", b"ECHO-SECRET",
         b"functions_framework", b"/work/", b"import ")


@pytest.mark.parametrize("name,raw,status,code", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_malformed_requests_get_stable_answers_and_nothing_more(server, worker, name, raw, status, code):
    answer = raw_http(server.port, raw, timeout=15)
    assert answer.status == status, (name, answer.status, answer.body[:300])
    assert answer.seconds < 5, f"{name}: answered after {answer.seconds:.1f} s"
    everything = answer.raw_head.encode("latin-1") + answer.body
    assert not [leak for leak in LEAKS if leak in everything], (name, everything[:500])
    assert answer.headers.get("server", "gunicorn") == "gunicorn", answer.headers
    if code is not None:
        assert answer.headers["content-type"].startswith("application/json")
        body = json.loads(answer.body)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] == code
    elif name.startswith("bigquery"):
        assert set(json.loads(answer.body)) == {"errorMessage"}, answer.body
    assert_serving(server, worker, name)
