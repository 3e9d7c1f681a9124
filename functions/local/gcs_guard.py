"""A guard in front of fake-gcs-server, on loopback.

The emulator's filesystem backend joins bucket and object names onto its root directory as
paths: an object named "a/../../../../tmp/x" was written to /tmp/x, and "../other/o" into
another bucket's folder (found by tests/reliability). Names like that cannot escape anything
in Cloud Storage, where "/" is just a character, but here they read, write and delete files
outside the state directory. The guard refuses every request that names a path with a ".."
segment or a NUL byte (in the URL path, a query value, or the JSON metadata of an upload)
and forwards everything else unchanged.

Every object a request stores passes through here, so the guard also announces it (its
JSON resource, as the upload, copy, compose or rewrite answered it) to `on_object`: the
local stand-in for Cloud Storage's finalize notification, sent once the client has its
answer."""
from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "content-length", "host"}
MAX_METADATA_BYTES = 1 << 20  # JSON metadata parts are small; only they are inspected
_WRITES = ("POST", "PUT", "PATCH")


def unsafe(text: str) -> bool:
    """A name the emulator's filesystem backend would resolve outside its folder."""
    return "\x00" in text or ".." in text.replace("\\", "/").split("/")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _metadata(content_type: str, body: bytes):
    """The JSON an upload or a bucket/object request carries (a multipart upload's first part)."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            return json.loads(body[:MAX_METADATA_BYTES])
        if kind == "multipart/related":
            boundary = next((p.split("=", 1)[1].strip('"') for p in content_type.split(";")[1:]
                             if p.strip().lower().startswith("boundary=")), "")
            if not boundary:
                return None
            first = body[:MAX_METADATA_BYTES].split(b"--" + boundary.encode())[1]
            return json.loads(first.split(b"\r\n\r\n", 1)[1].strip())
    except (ValueError, IndexError, RecursionError):
        return None
    return None


def stored_object(content_type: str, payload: bytes) -> dict | None:
    """The object resource a successful write answered with, if any."""
    if not content_type.lower().startswith("application/json") or len(payload) > MAX_METADATA_BYTES:
        return None
    try:
        answer = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(answer, dict) and isinstance(answer.get("resource"), dict):
        answer = answer["resource"]  # objects.rewrite wraps the new object
    if not (isinstance(answer, dict) and answer.get("kind") == "storage#object"
            and isinstance(answer.get("bucket"), str) and isinstance(answer.get("name"), str)):
        return None
    if "//" in answer["name"]:
        # The emulator answers with the name as sent but stores it with "//" folded to "/":
        # the watcher's sweep reports it under the stored name instead.
        return None
    return answer


def refused(method: str, target: str, content_type: str, body: bytes) -> str | None:
    """Why the request is refused, or None."""
    parts = urllib.parse.urlsplit(target)
    if unsafe(urllib.parse.unquote(parts.path)):
        return "the path names a '..' segment or a NUL byte"
    for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if unsafe(value):
            return "a query value names a '..' segment or a NUL byte"
    if body and method in _WRITES:
        if any(unsafe(text) for text in _strings(_metadata(content_type, body))):
            return "the metadata names a '..' segment or a NUL byte"
    return None


class GcsGuard:
    def __init__(self, *, host: str, port: int, upstream_port: int):
        self.host, self.port, self.upstream_port = host, port, upstream_port
        self.refused = 0
        self.on_object = None  # called with each object resource a write stored
        self._local = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _upstream(self, fresh: bool = False) -> http.client.HTTPConnection:
        if fresh or getattr(self._local, "conn", None) is None:
            self._local.conn = http.client.HTTPConnection(self.host, self.upstream_port, timeout=120)
        return self._local.conn

    def forward(self, method: str, target: str, headers: dict, body: bytes):
        for attempt in (0, 1):  # a kept-alive upstream connection may have been closed meanwhile
            conn = self._upstream(fresh=attempt == 1)
            try:
                conn.request(method, target, body=body if body or method in _WRITES else None,
                             headers=headers)
                response = conn.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                if attempt == 1:
                    raise

    def start(self) -> "GcsGuard":
        guard = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                body = self._body()
                reason = refused(self.command, self.path, self.headers.get("Content-Type", ""), body)
                if reason:
                    guard.refused += 1
                    # A read of such a name finds nothing, as in Cloud Storage where no object has it here
                    # (a 404, so the service reports not_found); anything else is a bad request.
                    status = (404, "Not Found") if self.command in ("GET", "HEAD") else (400, "Bad Request")
                    return self._reply(*status, [("Content-Type", "application/json")], json.dumps(
                        {"error": {"code": status[0], "message": f"refused by the local stack's guard: {reason}; "
                                   "such a name would escape the emulator's folder"}}).encode())
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = f"{guard.host}:{guard.upstream_port}"
                try:
                    status, reason_text, response_headers, payload = guard.forward(self.command, self.path, headers,
                                                                                   body)
                except OSError as exc:
                    return self._reply(502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode())
                self._reply(status, reason_text, response_headers, payload)
                if guard.on_object is not None and self.command in _WRITES and 200 <= status < 300:
                    content_type = next((v for k, v in response_headers if k.lower() == "content-type"), "")
                    resource = stored_object(content_type, payload)
                    if resource is not None:
                        guard.on_object(resource)

            def _reply(self, status, reason, headers, payload: bytes):
                self.send_response(status, reason)
                length = str(len(payload))
                for key, value in headers:
                    if key.lower() == "content-length" and self.command == "HEAD":
                        length = value  # HEAD: the upstream's length of the body it did not send
                    elif key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gcs-guard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
