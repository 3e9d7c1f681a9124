"""Pieces the reliability tests share: the real server as a subprocess, its worker's memory
read from /proc, a fault-injecting proxy in front of the GCS emulator, a loopback listener
that must never be called, raw HTTP, and the figures every test prints."""
from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from functions.local import server_process
from functions.local.emulator import free_port
from shared.config import SETTINGS
from tests.reliability import _corpus
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
ALLOWED_BUCKET = "photos"
PRIVATE_BUCKET = "private"   # exists in the emulator, not on the allow-list
PROJECT = "demo"
SERVER_LIMITS = {"MAX_IMAGE_BYTES": _corpus.MAX_IMAGE_BYTES, "MAX_REQUEST_BYTES": _corpus.MAX_REQUEST_BYTES,
                 "MAX_IMAGE_PIXELS": _corpus.MAX_IMAGE_PIXELS}
FIGURES: list[str] = []  # every figure printed this session, repeated in the terminal summary


def figure(name: str, **values) -> str:
    """Print one `RELIABILITY name: key=value ...` line (docs/reliability.md quotes them)."""
    text = f"RELIABILITY {name}: " + " ".join(f"{key}={value}" for key, value in values.items())
    FIGURES.append(text)
    print(text, flush=True)
    return text


def _gcs_client(url: str, cert: Path | None = None):
    from functions.local import gcs
    return gcs.client(url, cert)


# --- /proc ----------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def proc_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (clear_refs 5); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- the server -------------------------------------------------------------------------------

def clean_env(extra: dict) -> dict:
    """The caller's environment without any bucketeye setting, plus `extra`."""
    dropped = set(SETTINGS) - {"MODEL_CACHE_DIR"} | {"STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "WORKERS",
                                                        "THREADS", "PORT"}
    return server_process.server_env(extra, drop=dropped)


class ServerProcess(server_process.ServerProcess):
    """`python main.py serve` on a free loopback port; stdout and stderr kept in files."""

    def __init__(self, name: str, workdir: Path, env: dict):
        self.workdir = Path(workdir)
        self.stdout_path = self.workdir / "stdout.log"
        self.stderr_path = self.workdir / "stderr.log"
        super().__init__(port=0, env=env, host=HOST, stdout=self.stdout_path, stderr=self.stderr_path, name=name)

    def start(self, *, expect: str = "ready", timeout: float = 120.0) -> ServerProcess:
        for _ in range(3):  # a port taken between choosing and binding: try another
            self.port = free_port()
            super().start()
            try:
                self.wait_ready("/healthz", lambda response: response.json().get("status") == expect, timeout)
                return self
            except server_process.ServerExited:
                continue
        raise RuntimeError(f"{self.name} did not start:\n{self.stderr_tail()}")

    def worker_pid(self) -> int:
        workers = wait_for(lambda: children(self.process.pid), timeout=30, what="the gunicorn worker")
        assert len(workers) == 1, workers
        return workers[0]

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def stderr_tail(self, size: int = 4000) -> str:
        return self.log_tail(size)

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace") if self.stdout_path.exists() else ""

    def results(self) -> dict[str, list[dict]]:
        """result_id -> the result lines printed for it."""
        found: dict[str, list[dict]] = {}
        for line in self.stdout_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("app") == "bucketeye":
                found.setdefault(record["result_id"], []).append(record)
        return found


class Store:
    """Uploads with google-cloud-storage, anonymous, straight to the emulator (`cert`: the
    certificate of an https one)."""

    def __init__(self, url: str, cert: Path | None = None):
        self.url = url
        self.client = _gcs_client(url, cert)

    def upload(self, bucket: str, name: str, data: bytes, content_type: str = "image/jpeg") -> dict:
        blob = self.client.bucket(bucket).blob(name)
        blob.upload_from_string(data, content_type=content_type)
        return dict(blob._properties)  # the JSON API's object resource, int64 fields as strings

    def delete(self, bucket: str, name: str) -> None:
        self.client.bucket(bucket).blob(name).delete()


def assert_serving(server: ServerProcess, worker: int, after: str) -> None:
    """The server still answers /healthz 200, from the same worker process."""
    response = requests.get(server.url + "/healthz", timeout=10)
    assert response.status_code == 200, f"after {after}: /healthz {response.status_code} {response.text[:200]}"
    assert server.worker_pid() == worker, f"after {after}: the worker was replaced (it crashed)"


# --- a fault-injecting proxy in front of the GCS emulator --------------------------------------

class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up (a stalled read) is expected here


@dataclass
class FaultRule:
    """Faults on GET reads (metadata or media) of objects whose name starts with `prefix`:
    every `stall_every`-th matching read stalls `stall_s` and is then dropped unanswered;
    otherwise every `fail_every`-th is answered 503; any other is forwarded after `delay_s`
    (a slow store keeps requests in flight). Counting is deterministic."""
    prefix: str
    fail_every: int = 0
    stall_every: int = 0
    stall_s: float = 2.5
    delay_s: float = 0.0
    seen: int = 0


@dataclass
class ProxyRecord:
    method: str
    path: str
    bucket: str | None
    object: str | None
    kind: str          # "metadata" | "media" | "other"
    fault: str | None  # None | "503" | "stall"


def parse_gcs_path(raw_path: str) -> tuple[str | None, str | None, str]:
    """(bucket, object, kind) of a JSON API path as the storage client sends it."""
    parts = urllib.parse.urlsplit(raw_path)
    path = parts.path
    query = urllib.parse.parse_qs(parts.query)
    for prefix, kind in (("/download/storage/v1/b/", "media"), ("/storage/v1/b/", "metadata")):
        if path.startswith(prefix):
            rest = path[len(prefix):]
            bucket, _, tail = rest.partition("/")
            bucket = urllib.parse.unquote(bucket)
            if tail.startswith("o/") and len(tail) > 2:
                name = urllib.parse.unquote(tail[2:])
                return bucket, name, ("media" if query.get("alt") == ["media"] else kind)
            return bucket, None, "other"
    return None, None, "other"


class FaultProxy:
    """A loopback HTTP proxy to one upstream (the emulator) that records every request and
    injects the faults its rules say. Rules can change while it runs. `upstream_cert`: the
    upstream serves https with this certificate (the stack's emulator does)."""

    def __init__(self, upstream_port: int, upstream_cert: Path | None = None):
        self.upstream_port = upstream_port
        self.upstream_cert = upstream_cert
        self.rules: list[FaultRule] = []
        self.records: list[ProxyRecord] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                bucket, name, kind = parse_gcs_path(self.path)
                fault = proxy._decide(self.command, name, kind)
                with proxy._lock:
                    proxy.records.append(ProxyRecord(self.command, self.path, bucket, name, kind, fault))
                if fault == "delay":
                    time.sleep(proxy._rule(name).delay_s)
                    fault = None
                if fault == "stall":
                    time.sleep(proxy._rule(name).stall_s)
                    self.close_connection = True
                    return
                if fault == "503":
                    payload = b'{"error": {"code": 503, "message": "injected fault"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = proxy._connect()
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    if "json" in (response.getheader("Content-Type") or ""):
                        # mediaLink/selfLink name the emulator itself: point them here, so downloads
                        # (which follow mediaLink) pass the proxy too
                        payload = payload.replace(proxy.upstream_base.encode(), proxy.url.encode())
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

            def log_message(self, *args):
                pass

        self.server = _QuietServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.upstream_base = f"{'https' if upstream_cert else 'http'}://{HOST}:{upstream_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def _connect(self) -> http.client.HTTPConnection:
        if self.upstream_cert is None:
            return http.client.HTTPConnection(HOST, self.upstream_port, timeout=30)
        context = ssl.create_default_context(cafile=str(self.upstream_cert))
        return http.client.HTTPSConnection(HOST, self.upstream_port, timeout=30, context=context)

    def _decide(self, method: str, name: str | None, kind: str) -> str | None:
        if method != "GET" or name is None or kind not in ("metadata", "media"):
            return None
        with self._lock:
            for rule in self.rules:
                if name.startswith(rule.prefix):
                    rule.seen += 1
                    if rule.stall_every and rule.seen % rule.stall_every == 0:
                        return "stall"
                    if rule.fail_every and rule.seen % rule.fail_every == 0:
                        return "503"
                    return "delay" if rule.delay_s else None
        return None

    def _rule(self, name: str | None) -> FaultRule:
        with self._lock:
            return next((r for r in self.rules if name and name.startswith(r.prefix)), FaultRule(""))

    def snapshot(self) -> list[ProxyRecord]:
        with self._lock:
            return list(self.records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Push:
    """One push the emulator made: what it was about, and the server's answer (None: none)."""
    description: str   # gs://bucket/object#generation for a storage notification, else the message id
    attempt: int | None
    status: int | None


def describe_push(body: bytes) -> tuple[str, int | None]:
    try:
        envelope = json.loads(body)
        message = envelope["message"]
    except (ValueError, KeyError, TypeError):
        return "unreadable push", None
    attrs = message.get("attributes") or {}
    if attrs.get("bucketId"):
        return f"gs://{attrs['bucketId']}/{attrs.get('objectId')}#{attrs.get('objectGeneration')}", \
            envelope.get("deliveryAttempt")
    return f"message {message.get('messageId')}", envelope.get("deliveryAttempt")


class PushCounter:
    """A loopback HTTP proxy between the Pub/Sub emulator's push subscriptions and the
    server: forwards every push unchanged, records each with the server's answer (None: the
    server did not answer) and counts answers by status. The upstream port may be closed
    (a killed server)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.tally = Tally()
        self.pushes_seen: list[Push] = []
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(HOST, counter.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    status, payload = response.status, response.read()
                except OSError:
                    status, payload = None, b""
                finally:
                    upstream.close()
                counter.tally.add(status)
                with counter.tally._lock:
                    counter.pushes_seen.append(Push(*describe_push(body), status))
                self.send_response(status or 502)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = _QuietServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="push-counter", daemon=True).start()

    def pushes(self) -> int:
        with self.tally._lock:
            return sum(self.tally.counts.values())

    def seen(self, prefix: str) -> list[Push]:
        with self.tally._lock:
            return [p for p in self.pushes_seen if p.description.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Listener:
    """A loopback TCP listener that counts every connection: URLs in messages point here, and
    nothing may ever connect."""

    def __init__(self):
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# --- raw HTTP -------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict
    body: bytes
    seconds: float
    raw_head: str = ""


def raw_http(port: int, head: bytes, chunks=(), *, timeout: float = 10.0, send_delay_s: float = 0.0) -> RawResponse:
    """Send bytes exactly as given (lying lengths, hand-made chunks, odd request lines) and read
    one response. Sending stops quietly if the server closes the connection early."""
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
                if send_delay_s:
                    time.sleep(send_delay_s)
        except OSError:
            pass  # the server answered and closed: read what it said
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                raise ConnectionError(f"the connection closed before a response: {data[:200]!r}")
            data += part
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        if "content-length" in headers:
            while len(body) < int(headers["content-length"]):
                part = sock.recv(65536)
                if not part:
                    break
                body += part
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                part = sock.recv(65536)
                if not part:
                    break
                body += part
            body = dechunk(body)
        else:
            try:
                while part := sock.recv(65536):
                    body += part
            except (TimeoutError, OSError):
                pass
    version, status, *reason = status_line.split(" ", 2)
    return RawResponse(int(status), reason[0] if reason else "", headers, body, time.monotonic() - started,
                       head_bytes.decode("latin-1"))


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def chunked(total: int, piece: int = 65536, byte: bytes = b"\xab"):
    """A chunked body of `total` bytes, generated as it is sent."""
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield b"%x\r\n" % size + byte * size + b"\r\n"
        sent += size
    yield b"0\r\n\r\n"


@dataclass
class Tally:
    """Thread-safe counters (answers arrive on the proxies' threads)."""
    counts: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def get(self, key) -> int:
        with self._lock:
            return self.counts.get(key, 0)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)
