"""Headless Chromium over the DevTools protocol, with a small WebSocket client written here
(RFC 6455 text frames, client masking, ping/pong, fragments): enough to open a page, pick a
file in an <input type=file> and evaluate JavaScript."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

CHROMIUM = Path("/usr/bin/chromium")
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class DevToolsSocket:
    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          .encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest())
        assert b" 101 " in head.split(b"\r\n")[0] and expected in head, head

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the DevTools socket closed")
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def _frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | size)
        elif size < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0xFE, size)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0xFF, size)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

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
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x9:
                self._frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError("the DevTools socket was closed")
            elif opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Tab:
    def __init__(self, ws: DevToolsSocket):
        self.ws = ws
        self.next_id = 0
        self.dialogs: list[str] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("method") == "Page.javascriptDialogOpening":  # an alert() ran: record, dismiss
                self.dialogs.append(message["params"].get("message", ""))
                self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": True}}))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

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
        raise AssertionError(f"timed out waiting for {expression}: {self.evaluate('document.body.innerText')!r}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('file')")

    def choose_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])


class Browser:
    """Headless Chromium on loopback with a throwaway profile; `tab` drives its one page."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.log = open(profile.parent / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
             "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
             "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1000,900", f"--user-data-dir={profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        self.ws = None
        try:
            port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                assert self.process.poll() is None, "chromium exited"
                assert time.monotonic() < deadline, "chromium opened no DevTools port"
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            pages = []
            while not pages:
                pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                         if t["type"] == "page"]
                assert time.monotonic() < deadline, "chromium opened no page"
            self.ws = DevToolsSocket(pages[0]["webSocketDebuggerUrl"])
            self.tab = Tab(self.ws)
            self.tab.call("Page.enable")
            self.tab.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
