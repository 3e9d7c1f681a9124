"""Shared pieces for the local-stack tests: free loopback ports, a tmp state directory,
the CLI as a subprocess, a real GCS emulator, and a tiny recording HTTP endpoint."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from functions.local.emulator import GcsEmulator, free_port
from functions.local.statedir import StateDir

REPO = Path(__file__).resolve().parents[2]
PHOTOS = Path(importlib.util.find_spec("skimage").origin).parent / "data"  # real photos for the tests


def run_cli(*args, state: StateDir, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args), "--state-dir", str(state.root)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Endpoint:
    """A real HTTP server on loopback that records every POST and answers `status`."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.reply = b'{"ok": true}'
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with endpoint._lock:
                    endpoint.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "at": time.monotonic(), "status": endpoint.status})
                    status, reply = endpoint.status, endpoint.reply
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, path: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def state(tmp_path) -> StateDir:
    return StateDir(tmp_path / "state").ensure()


@pytest.fixture()
def endpoint():
    server = Endpoint()
    yield server
    server.close()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with GcsEmulator(tmp_path_factory.mktemp("gcs"), port=free_port()) as running:
        yield running
