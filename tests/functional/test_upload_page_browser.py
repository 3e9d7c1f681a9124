"""The upload page in real headless Chromium, driven over the DevTools protocol with a
small WebSocket client written here (no extra Python packages)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

pytestmark = pytest.mark.browser


# --- a minimal WebSocket client (RFC 6455: text frames, masking, ping/pong, fragments) ----------

class WebSocket:
    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert b" 101 " in head.split(b"\r\n")[0], head
        assert accept.encode() in head, head

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the DevTools socket closed")
        self._buffer += data

    def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = struct.pack(">BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)  # clients must mask
        pad = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(pad, "big")).to_bytes(size, "big") if size else b""
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._take(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._take(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._take(8))[0]
            mask = self._take(4) if second & 0x80 else b""
            payload = self._take(size)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError("the DevTools socket was closed")
            elif opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """One page target: call DevTools methods, evaluate JavaScript, wait for conditions."""

    def __init__(self, ws: WebSocket):
        self.ws = ws
        self._next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        call_id = self._next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}; page text: "
                             f"{self.evaluate('document.body.innerText')!r}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('file')")

    def choose_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        assert node, f"no {selector} on the page"
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("chromium is missing: /usr/bin/chromium not found (`make browser` installs Debian's package)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")
    process = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1000,900",
         f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         "about:blank"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    ws = None
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None, f"chromium exited: {(profile.parent / 'chromium.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not targets:
            targets = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                       if t["type"] == "page"]
            assert time.monotonic() < deadline, "chromium opened no page"
        ws = WebSocket(targets[0]["webSocketDebuggerUrl"])
        tab = Page(ws)
        tab.call("Page.enable")
        tab.call("Runtime.enable")
        yield tab
    finally:
        if ws is not None:
            ws.close()
        process.terminate()  # the browser process ends its renderers and helpers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


TOP_LABEL = """(() => {
  const table = document.getElementById("results");
  const cell = table.querySelector("tbody tr td");
  return !table.hidden && cell ? cell.textContent : "";
})()"""


def test_upload_a_photo_and_see_its_labels(server, page, images, tmp_path):
    mark = server.log.mark()
    page.open(server.url + "/")

    page.choose_file("#file", images.coffee_path)

    assert page.wait_for(TOP_LABEL) == "espresso"
    assert page.evaluate("document.querySelectorAll('#results tbody tr').length") == 5
    assert page.evaluate("document.getElementById('status').textContent") == "coffee.png: espresso"
    assert "efficientnet_lite0@1" in page.evaluate("document.getElementById('timings').textContent")
    assert page.evaluate("document.getElementById('error').textContent") == ""
    screenshot = page.screenshot()
    (tmp_path / "upload-page.png").write_bytes(screenshot)
    shot = Image.open(io.BytesIO(screenshot))
    assert shot.format == "PNG" and shot.width >= 800
    assert len(shot.convert("RGB").getcolors(1 << 20) or []) > 100  # the photo preview and the table, not a blank page
    line = server.log.one_result(mark)
    assert (line["source"]["trigger"], line["top_label"]) == ("http", "espresso")


def test_cat_photo(server, page, images):
    page.open(server.url + "/")

    page.choose_file("#file", images.chelsea_path)

    page.wait_for("document.getElementById('status').textContent.startsWith('chelsea.png: ')")
    labels = page.evaluate("Array.from(document.querySelectorAll('#results tbody tr td:first-child'))"
                              ".map(td => td.textContent)")
    assert len(labels) == 5
    top = page.evaluate("document.getElementById('status').textContent").split(": ", 1)[1]
    assert top in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"), top
    assert top == labels[0]


def test_hostile_file_names_are_text_not_html(server, page, images, tmp_path):
    page.open(server.url + "/")
    good = tmp_path / '<img src=x onerror="window.pwned=1">.png'
    shutil.copyfile(images.coffee_path, good)
    bad = tmp_path / '<img src=y onerror="window.pwned=2"><b>bold.png'
    bad.write_bytes(b"this is not an image")

    page.choose_file("#file", good)
    page.wait_for(TOP_LABEL)
    status = page.evaluate("document.getElementById('status').textContent")

    page.choose_file("#file", bad)
    error = page.wait_for("document.getElementById('error').textContent")

    assert status == f"{good.name}: espresso"
    assert error.startswith(f"Could not classify {bad.name}: ")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 1  # only the preview
    assert page.evaluate("document.querySelectorAll('b').length") == 0
    assert page.evaluate("document.getElementById('results').hidden") is True
