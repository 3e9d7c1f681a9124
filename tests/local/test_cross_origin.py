"""No cross-origin request reaches the local stack's GCS emulator.

A web page open in a browser on this machine can send an upload without any CORS
preflight: a `no-cors` fetch, a beacon, an XMLHttpRequest or a plain HTML form with a
text/plain, urlencoded or multipart body. CORS headers only hide the answer from the page;
the request still arrives. The stack's emulator serves HTTPS with a certificate of its
own that no browser trusts, so each of these fails in the TLS handshake, before any HTTP
request is sent.

Real headless Chromium loads a page from another origin (a loopback http server on another
port) whose script tries every one of those ways. Against the emulator as the stack starts
it, nothing is stored; against the same emulator over plain http (the control), the same
page does store objects, which proves the page really sends them and the test can fail."""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from functions.local import gcs, tls
from functions.local.emulator import GcsEmulator
from tests.browser import Browser
from tests.waiting import wait_for

pytestmark = pytest.mark.functional  # real servers on loopback, a real browser

BUCKET = "cross-origin-target"
# What the page stores on a plain-http emulator. The XML API form posts are tried too, but store
# nothing even over http, so they are not expected here.
LANDS_OVER_HTTP = ("fetch-text", "fetch-urlencoded", "fetch-multipart", "fetch-cors", "xhr", "beacon",
                   "form-text", "form-urlencoded")
HANDSHAKE_ERROR = b"TLS handshake error"

# Every way a page can send a body to another origin without a preflight. Each attempt
# records how it ended; the page sets window.done when all have.
ATTACK = """
const target = TARGET, bucket = BUCKET, mark = MARK;
const media = (suffix) => `${target}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${mark}-${suffix}`;
const file = () => new File(["cross-origin bytes"], "x.txt", {type: "text/plain"});
function formData(fields) {
  const data = new FormData();
  for (const [key, value] of Object.entries(fields)) data.append(key, value);
  return data;
}
const jsonPart = (name) => new Blob([JSON.stringify({name})], {type: "application/json"});
const noCors = (url, body) => fetch(url, {method: "POST", mode: "no-cors", body});
const attempts = {
  "fetch no-cors, text/plain (JSON API media)": () => noCors(media("fetch-text"), "text body"),
  "fetch no-cors, urlencoded (JSON API media)": () => noCors(media("fetch-urlencoded"), new URLSearchParams({a: "b"})),
  "fetch no-cors, form-data (JSON API multipart)": () => noCors(
      `${target}/upload/storage/v1/b/${bucket}/o?uploadType=multipart`,
      formData({metadata: jsonPart(`${mark}-fetch-multipart`), file: file()})),
  "fetch no-cors, form-data (XML API form post)": () => noCors(
      `${target}/${bucket}`, formData({key: `${mark}-fetch-formpost`, file: file()})),
  "fetch no-cors, text/plain (create a bucket)": () => noCors(
      `${target}/storage/v1/b`, JSON.stringify({name: `${mark}-bucket`})),
  "fetch cors, text/plain (JSON API media)": () => fetch(media("fetch-cors"), {method: "POST", body: "text body"}),
  "fetch cors, GET (read the bucket's listing)": async () => (await (await fetch(`${target}/storage/v1/b/${bucket}/o`)).json()).kind,
  "XMLHttpRequest, text/plain (JSON API media)": () => new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", media("xhr"));
      xhr.onload = () => resolve(xhr.status);
      xhr.onerror = () => reject(new Error("xhr error"));
      xhr.send("text body");
  }),
  "sendBeacon, text/plain (JSON API media)": async () => {
      if (!navigator.sendBeacon(media("beacon"), "text body")) throw new Error("beacon refused");
  },
};
// Plain HTML forms, submitted into hidden frames so the page stays.
function submitForm(label, action, enctype, fields, withFile) {
  return new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.name = "frame-" + label.replace(/\\W+/g, "-");
    frame.style.display = "none";
    document.body.appendChild(frame);
    const form = document.createElement("form");
    Object.assign(form, {method: "POST", action, enctype, target: frame.name});
    for (const [key, value] of Object.entries(fields)) {
      const input = document.createElement("input");
      Object.assign(input, {type: "hidden", name: key, value});
      form.appendChild(input);
    }
    if (withFile) {
      const input = document.createElement("input");
      Object.assign(input, {type: "file", name: "file"});
      const chosen = new DataTransfer();
      chosen.items.add(file());
      input.files = chosen.files;
      form.appendChild(input);
    }
    document.body.appendChild(form);
    const timer = setTimeout(() => resolve("no load event"), 8000);
    frame.addEventListener("load", () => { clearTimeout(timer); resolve("frame loaded"); });
    form.submit();
  });
}
attempts["HTML form, multipart (XML API form post)"] = () => submitForm(
    "formpost", `${target}/${bucket}`, "multipart/form-data", {key: `${mark}-form-formpost`}, true);
attempts["HTML form, text/plain (JSON API media)"] = () => submitForm(
    "text", media("form-text"), "text/plain", {a: "b"}, false);
attempts["HTML form, urlencoded (JSON API media)"] = () => submitForm(
    "urlencoded", media("form-urlencoded"), "application/x-www-form-urlencoded", {a: "b"}, false);

window.outcomes = {};
Promise.all(Object.entries(attempts).map(([label, attempt]) => Promise.resolve().then(attempt).then(
    (value) => { window.outcomes[label] = "sent: " + (value && value.type ? value.type : String(value)); },
    (error) => { window.outcomes[label] = "failed: " + error; }))).then(() => { window.done = true; });
"""


def attack_page(target: str, mark: str) -> bytes:
    script = ATTACK.replace("TARGET", json.dumps(target)).replace("BUCKET", json.dumps(BUCKET), 1) \
        .replace("MARK", json.dumps(mark), 1)
    return f"<!doctype html><html><body><script>{script}</script></body></html>".encode()


class PageServer:
    """A plain http server on another loopback port: a different origin from the emulator's."""

    def __init__(self, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, name="attack-page", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_attack(browser: Browser, emulator: GcsEmulator) -> tuple[str, dict]:
    """Load the page aimed at `emulator` and wait until every attempt has ended."""
    mark = "xo-" + uuid.uuid4().hex[:8]
    page = PageServer(attack_page(emulator.url, mark))
    try:
        browser.driver.get(page.url)
        browser.tab.wait_for("window.done === true", timeout=60)
        return mark, browser.tab.evaluate("window.outcomes")
    finally:
        page.close()


def stored(emulator: GcsEmulator) -> dict[str, list[str]]:
    """Every bucket on the emulator and its objects' names, read by our own (trusting) client."""
    client = gcs.client(emulator.url, emulator.cert)
    return {bucket.name: sorted(blob.name for blob in client.list_blobs(bucket.name))
            for bucket in client.list_buckets()}


def test_a_page_from_another_origin_reaches_the_plain_http_emulator(browser, tmp_path):
    """The control: without TLS, the page's requests arrive and store objects."""
    with GcsEmulator(tmp_path / "gcs", log_path=tmp_path / "gcs.log") as emulator:
        gcs.ensure_buckets(emulator.url, [BUCKET])
        mark, outcomes = run_attack(browser, emulator)
        expected = {f"{mark}-{suffix}" for suffix in LANDS_OVER_HTTP}
        wait_for(lambda: expected <= set(stored(emulator)[BUCKET]), timeout=15,
                 what=f"the page's uploads on the plain-http emulator ({outcomes})")
        buckets = sorted(stored(emulator))
    print(f"plain http: the page stored {sorted(expected)}, buckets now {buckets}; outcomes: {outcomes}")
    assert f"{mark}-bucket" in buckets  # a no-cors fetch even creates buckets
    # and a page may read the bucket too: the emulator's answers allow every origin
    assert outcomes["fetch cors, GET (read the bucket's listing)"] == "sent: storage#objects", outcomes


def test_no_cross_origin_request_reaches_the_stack_emulator(browser, tmp_path):
    """The emulator as the stack starts it (HTTPS, the state folder's certificate): every
    attempt fails in the handshake, and nothing is stored."""
    log = tmp_path / "gcs.log"
    with GcsEmulator(tmp_path / "gcs", log_path=log, tls=tls.ensure(tmp_path / "tls")) as emulator:
        assert emulator.url.startswith("https://")
        gcs.ensure_buckets(emulator.url, [BUCKET], emulator.cert)
        before = stored(emulator)
        handshakes_before = log.read_bytes().count(HANDSHAKE_ERROR)
        mark, outcomes = run_attack(browser, emulator)
        time.sleep(2.0)  # as long as the control needs for its objects to appear
        after = stored(emulator)
        refused = log.read_bytes().count(HANDSHAKE_ERROR) - handshakes_before
    print(f"https: {refused} TLS handshakes refused by the browser; outcomes: {outcomes}")
    assert after == before == {BUCKET: []}
    # The page did aim at the emulator: the browser opened connections and gave up in the handshake.
    assert refused >= 1
    # Every attempt whose outcome a page can see failed (a beacon's and a form's it cannot).
    seen = {label: outcome for label, outcome in outcomes.items() if not label.startswith(("sendBeacon", "HTML form"))}
    assert len(seen) == 8 and all(outcome.startswith("failed") for outcome in seen.values()), seen
