"""Functional tests: the real server (functions-framework under gunicorn) on loopback,
the real GCS emulator (fake-gcs-server), real CloudEvents and HTTP requests. Results are
read back from the JSON lines the server prints on stdout, as Cloud Logging would.

Helpers are handed to tests as fixtures: `emulator`, `gcs` (uploads), `images`,
`events` (CloudEvent / push envelope builders and senders), `start_server` (a
module-scoped factory; every server it starts is stopped when the module ends) and
`server` (the combined server, one per test module).
"""
from __future__ import annotations

import base64
import io
import json
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from _functional_support import (
    ALLOWED_BUCKET,
    FINALIZED,
    MESSAGE_PUBLISHED,
    PRIVATE_BUCKET,
    PROJECT,
    SKIP_PREFIX,
    new_id,
    rfc3339,
)
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from PIL import Image, PngImagePlugin

from functions.local.emulator import GcsEmulator, free_port
from functions.local.server_process import ServerExited, ServerProcess
from functions.local.server_process import server_env as launcher_env
from shared.config import SETTINGS

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
HOST = "127.0.0.1"

STARTUP_TIMEOUT_S = 90.0
LOG_WAIT_S = 10.0


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.functional)


# --- small helpers ------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the server's stdout ----------------------------------------------------------------------

def check_result_line(line: dict) -> dict:
    """What every result line must be: tagged for the sink, insertId = result_id, severity
    from the status (ok and skipped INFO, permanent error WARNING, retryable error ERROR)."""
    assert line["app"] == "bucketeye", line
    assert line["logging.googleapis.com/insertId"] == line["result_id"], line
    assert len(line["result_id"]) == 32, line
    if line["status"] == "ok":
        assert line["error"] is None and line["severity"] == "INFO", line
    elif line["status"] == "skipped":  # deliberately not classified: the reason rides in `error`
        assert line["error"]["retryable"] is False and line["severity"] == "INFO", line
    else:
        assert line["status"] == "error", line
        assert line["severity"] == ("ERROR" if line["error"]["retryable"] else "WARNING"), line
    return line


class ServerLog:
    """The JSON lines a server printed on stdout (complete lines only)."""

    def __init__(self, path: Path):
        self.path = path

    def raw_lines(self) -> list[str]:
        text = self.path.read_text(encoding="utf-8", errors="replace") if self.path.exists() else ""
        return text[: text.rfind("\n") + 1].splitlines()

    def lines(self) -> list[dict]:
        parsed = []
        for raw in self.raw_lines():
            try:
                parsed.append(json.loads(raw))
            except ValueError:
                continue  # test_logs asserts there are none
        return parsed

    def mark(self) -> int:
        return len(self.lines())

    def results(self, since: int = 0) -> list[dict]:
        return [line for line in self.lines()[since:] if line.get("app") == "bucketeye"]

    def wait_results(self, since: int, count: int, timeout: float = LOG_WAIT_S) -> list[dict]:
        """Exactly `count` result lines after `since` (waits for them; fails on more or fewer)."""
        deadline = time.monotonic() + timeout
        found = self.results(since)
        while len(found) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            found = self.results(since)
        assert len(found) == count, f"expected {count} result lines, got {len(found)}: {found}"
        return [check_result_line(line) for line in found]

    def one_result(self, since: int) -> dict:
        return self.wait_results(since, 1)[0]


# --- servers ------------------------------------------------------------------------------

class Server(ServerProcess):
    """A server on a loopback port, its stdout (the result lines) and stderr kept in files."""

    def __init__(self, name: str, workdir: Path, attempt: int, env: dict, *, target: str | None,
                 signature_type: str):
        self.log = ServerLog(workdir / f"stdout-{attempt}.log")
        self.stderr_path = workdir / f"stderr-{attempt}.log"
        # The caller's process group: a signal to the whole run (Ctrl-C, a CI timeout) stops servers too.
        super().__init__(port=free_port(HOST), env=env, host=HOST, target=target, signature_type=signature_type,
                         stdout=self.log.path, stderr=self.stderr_path, name=name, new_session=False)

    def stderr_tail(self, size: int = 4000) -> str:
        return self.log_tail(size)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)


def server_env(extra: dict) -> dict:
    """A clean environment: none of the caller's bucketeye settings leak in."""
    dropped = set(SETTINGS) - {"MODEL_CACHE_DIR"} | {"STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "WORKERS",
                                                        "THREADS", "PORT", "LOG_EXECUTION_ID"}
    return launcher_env(extra, drop=dropped)


def launch(name: str, workdir: Path, env: dict, *, target: str | None = None, signature_type: str = "http",
           probe: str = "/healthz", ready=lambda r: r.status_code == 200, attempts: int = 3) -> Server:
    """Start `python main.py serve` (target None) or `python -m functions_framework --target T`
    on a free loopback port; retried on another port if the server exits (a port race)."""
    workdir.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(attempts):
        server = Server(name, workdir, attempt, env, target=target, signature_type=signature_type)
        server.start()
        try:
            server.wait_ready(probe, ready, STARTUP_TIMEOUT_S)
            return server
        except ServerExited as exc:
            server.stop()
            last_error = exc
        except BaseException:
            server.stop()
            raise
    raise RuntimeError(f"{name} did not start after {attempts} attempts") from last_error


def any_answer(response) -> bool:
    return True


@pytest.fixture(scope="module")
def start_server(tmp_path_factory, emulator):
    """start_server(name, env={...}, target=None|'on_storage_event'|..., ...) -> Server."""
    started: list[Server] = []

    def start(name: str, *, env: dict | None = None, target: str | None = None, signature_type: str = "http",
              probe: str | None = None, ready=None) -> Server:
        base = {"STORAGE_EMULATOR_HOST": emulator.url, "ALLOWED_BUCKETS": ALLOWED_BUCKET,
                "GOOGLE_CLOUD_PROJECT": PROJECT, "SKIP_PREFIXES": SKIP_PREFIX}
        if target is None:
            probe, ready = probe or "/healthz", ready or (lambda r: r.status_code == 200)
        else:  # a single target serves every path: any HTTP answer means it is up
            probe, ready = probe or "/robots.txt", ready or any_answer
        server = launch(name, tmp_path_factory.mktemp(name), server_env({**base, **(env or {})}), target=target,
                        signature_type=signature_type, probe=probe, ready=ready)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(start_server) -> Server:
    """The combined server (python main.py serve), one per test module."""
    return start_server("combined")


# --- storage ------------------------------------------------------------------------------

class Store:
    """Uploads through google-cloud-storage (anonymous, project "local"), as shared/storage.py reads."""

    def __init__(self, emulator: GcsEmulator):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        self.url = emulator.url
        self.client = storage.Client(project="local", credentials=AnonymousCredentials(),
                                     client_options={"api_endpoint": emulator.url})

    def upload(self, data: bytes, *, name: str | None = None, bucket: str = ALLOWED_BUCKET,
               content_type: str = "image/png") -> dict:
        """Upload and return the object resource the JSON API gives (int64 fields as strings)."""
        name = name or f"uploads/{new_id()}.png"
        self.client.bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)
        return self.resource(bucket, name)

    def resource(self, bucket: str, name: str) -> dict:
        response = requests.get(f"{self.url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", timeout=10)
        response.raise_for_status()
        return response.json()

    def delete(self, bucket: str, name: str) -> None:
        self.client.bucket(bucket).blob(name).delete()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    root = tmp_path_factory.mktemp("gcs")
    emu = GcsEmulator(root / "data", log_path=root / "emulator.log").start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def gcs(emulator) -> Store:
    store = Store(emulator)
    for bucket in (ALLOWED_BUCKET, PRIVATE_BUCKET):
        store.client.create_bucket(bucket)
    return store


# --- images -------------------------------------------------------------------------------

class Images:
    """Real photos from scikit-image, and broken ones made from them."""

    def __init__(self):
        import skimage
        folder = Path(skimage.__file__).parent / "data"
        self.coffee_path = folder / "coffee.png"
        self.chelsea_path = folder / "chelsea.png"
        self.coffee = self.coffee_path.read_bytes()
        self.chelsea = self.chelsea_path.read_bytes()
        self.coffee_jpeg = self._jpeg(self.coffee)
        self.truncated_jpeg = self.coffee_jpeg[: len(self.coffee_jpeg) // 2]

    @staticmethod
    def _jpeg(data: bytes) -> bytes:
        out = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=90)
        return out.getvalue()

    def unique(self, which: str = "coffee") -> bytes:
        """The same pixels in new bytes (a nonce text chunk), so content-derived result ids
        never meet a result an earlier test left in the server's de-duplication window."""
        info = PngImagePlugin.PngInfo()
        info.add_text("nonce", new_id())
        out = io.BytesIO()
        Image.open(io.BytesIO(getattr(self, which))).save(out, "PNG", pnginfo=info)
        return out.getvalue()


@pytest.fixture(scope="session")
def images() -> Images:
    return Images()


# --- events -------------------------------------------------------------------------------

class Events:
    """Builds what Eventarc and Pub/Sub send, and sends it."""

    @staticmethod
    def storage(resource: dict, *, type: str = FINALIZED, event_id: str | None = None,
                time: datetime | None = None, data=None) -> CloudEvent:
        attributes = {
            "type": type, "id": event_id or new_id("storage-"),
            "source": f"//storage.googleapis.com/projects/_/buckets/{resource.get('bucket')}",
            "subject": f"objects/{resource.get('name')}", "time": rfc3339(time),
            "datacontenttype": "application/json",
        }
        return CloudEvent(attributes, resource if data is None else data)

    @staticmethod
    def envelope(data: bytes = b"", *, attributes: dict | None = None, message_id: str | None = None,
                 publish_time: datetime | None = None) -> dict:
        message_id = message_id or new_id("msg-")
        message = {"data": b64(data), "messageId": message_id, "message_id": message_id,
                   "publishTime": rfc3339(publish_time), "publish_time": rfc3339(publish_time)}
        if attributes:
            message["attributes"] = attributes
        return {"message": message, "subscription": f"projects/{PROJECT}/subscriptions/bucketeye-push"}

    @classmethod
    def notification(cls, resource: dict, *, event_type: str = "OBJECT_FINALIZE", **kwargs) -> dict:
        """A Cloud Storage notification (payload JSON_API_V1) as a Pub/Sub push delivers it."""
        attributes = {"eventType": event_type, "bucketId": resource["bucket"], "objectId": resource["name"],
                      "objectGeneration": resource["generation"], "payloadFormat": "JSON_API_V1",
                      "notificationConfig": f"projects/_/buckets/{resource['bucket']}/notificationConfigs/1",
                      "eventTime": rfc3339()}
        return cls.envelope(json.dumps(resource).encode(), attributes=attributes, **kwargs)

    @staticmethod
    def pubsub(envelope: dict, *, event_id: str | None = None, time: datetime | None = None) -> CloudEvent:
        attributes = {"type": MESSAGE_PUBLISHED, "id": event_id or envelope["message"]["messageId"],
                      "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/images",
                      "time": rfc3339(time), "datacontenttype": "application/json"}
        return CloudEvent(attributes, envelope)

    @staticmethod
    def golden(name: str, **values) -> bytes:
        """A file from tests/data with its {{placeholders}} replaced (JSON-escaped)."""
        text = (DATA / name).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", json.dumps(str(value))[1:-1])
        assert "{{" not in text, f"unfilled placeholder in {name}: {text[text.index('{{'):][:40]}"
        return text.encode()

    @staticmethod
    def golden_values(resource: dict, **extra) -> dict:
        return {"bucket": resource["bucket"], "object": resource["name"], "generation": resource["generation"],
                "size": resource["size"], "md5": resource["md5Hash"], "content_type": resource["contentType"],
                "time": rfc3339(), "event_id": new_id("golden-"), **extra}

    @staticmethod
    def post_binary(url: str, event: CloudEvent, headers: dict | None = None, **kwargs) -> requests.Response:
        ce_headers, body = to_binary(event)
        return requests.post(url, data=body, headers={**ce_headers, **(headers or {})}, timeout=60, **kwargs)

    @staticmethod
    def post_structured(url: str, event: CloudEvent, headers: dict | None = None, **kwargs) -> requests.Response:
        ce_headers, body = to_structured(event)
        return requests.post(url, data=body, headers={**ce_headers, **(headers or {})}, timeout=60, **kwargs)

    @staticmethod
    def post_json(url: str, payload, headers: dict | None = None, **kwargs) -> requests.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return requests.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})},
                             timeout=60, **kwargs)


@pytest.fixture(scope="session")
def events() -> Events:
    return Events()
