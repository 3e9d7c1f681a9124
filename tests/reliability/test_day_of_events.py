"""A day of mixed events through the local stack, and one SQL query proving that every event
has exactly one visible row in `results`, with the right status, `ok` rows winning.

The stack is used through its public parts only: start it, upload objects to its GCS
emulator (the stack delivers their upload events itself), send what a platform would
send besides (a redelivered event, a late one, a delete notification, Pub/Sub requests)
to its server's event routes, and query its warehouse. The server runs with an empty
de-duplication window (DEDUP_WINDOW_S=0, as a freshly started instance), so redeliveries
really are logged again and the view has something to hide.
"""
from __future__ import annotations

import base64
import io
import json
import time
import uuid
from datetime import UTC, datetime

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from PIL import Image

from functions.local import gcs
from functions.local.emulator import free_port
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from tests.conftest import fresh_project
from tests.reliability._support import FIGURES

BUCKET = "day-uploads"
FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"
ROWS_WAIT_S = 180

# One query: what the results view shows per subject (the object, or the message when it names none).
ONE_QUERY = """SELECT COALESCE(uri, event_id) AS subject, status, COALESCE(error_code, '') AS code, COUNT(*) AS n
FROM results
GROUP BY subject, status, code
ORDER BY subject, status, code"""


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 72), 20 + seed).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _resource(blob) -> dict:
    """The object resource an upload event carries (int64 fields as strings)."""
    return {"bucket": blob.bucket.name, "name": blob.name, "generation": str(blob.generation),
            "size": str(blob.size), "contentType": blob.content_type or "", "md5Hash": blob.md5_hash or ""}


def _storage_event(server_url: str, resource: dict, *, event_type: str = FINALIZED, event_id: str = "",
                   when: datetime | None = None) -> requests.Response:
    moment = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = CloudEvent({"type": event_type, "id": event_id or uuid.uuid4().hex, "time": moment,
                        "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
                        "subject": f"objects/{resource['name']}", "datacontenttype": "application/json"}, resource)
    headers, body = to_binary(event)
    return requests.post(server_url + "/events/storage", data=body, headers=headers, timeout=60)


def _pubsub(server_url: str, data: bytes, message_id: str) -> requests.Response:
    envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                            "publishTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
                "subscription": "projects/local/subscriptions/requests"}
    return requests.post(server_url + "/events/pubsub", json=envelope, timeout=60)


def _wait_for_rows(stack: Stack, subjects: int) -> list[tuple]:
    deadline = time.monotonic() + ROWS_WAIT_S
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        try:
            rows = stack.warehouse.query(ONE_QUERY)[1]
        except Exception:  # noqa: BLE001 - the file may not exist or be locked for a moment yet
            rows = []
        if len(rows) >= subjects:
            return rows
        time.sleep(0.5)
    return rows


def test_a_day_of_mixed_events_leaves_one_visible_row_per_event(tmp_path, pubsub_emulator):
    state = StateDir(tmp_path / "state").ensure()
    config = StackConfig(state=state, port=free_port(), gcs_port=free_port(), buckets=(BUCKET,),
                         pubsub_host=pubsub_emulator.host, project=fresh_project(),
                         server_env={"SKIP_PREFIXES": "thumbnails/", "DEDUP_WINDOW_S": "0", "MODEL_URI": ""})
    expected: dict[str, tuple[str, str]] = {}  # subject -> (status, code) the view must show
    sent = 0  # events the service received, counting each redelivery and each carrier

    with Stack(config) as stack:
        bucket = gcs.client(stack.emulator.url, stack.emulator.cert).bucket(BUCKET)
        server = stack.server.url

        def upload(name: str, data: bytes, content_type: str | None, status: str, code: str = "") -> dict:
            nonlocal sent
            blob = bucket.blob(name)
            blob.upload_from_string(data, content_type=content_type)
            blob.reload()
            expected[f"gs://{BUCKET}/{name}"] = (status, code)
            sent += 1  # the stack delivers its upload event
            return _resource(blob)

        good = [upload(f"day/good-{i}.jpg", _jpeg(i), "image/jpeg", "ok") for i in range(3)]
        upload("day/corrupt.jpg", _jpeg(9)[:600], "image/jpeg", "error", "corrupt_image")
        upload("day/no-type-photo", _jpeg(10), "application/octet-stream", "ok")
        upload("day/no-type-notes.jpg", b"minutes of the meeting", "application/octet-stream",
               "skipped", "not_an_image")
        upload("day/notes.txt", b"plain text", "text/plain", "skipped", "not_an_image")
        upload("thumbnails/good-0.jpg", _jpeg(11), "image/jpeg", "skipped", "skipped_prefix")
        # Wait for the uploads' own rows before the platform's extras arrive.
        assert len(_wait_for_rows(stack, len(expected))) == len(expected)

        # Duplicated: good-0's event delivered twice more (at least once, as Pub/Sub does).
        for _ in range(2):
            assert _storage_event(server, good[0], event_id="dup-good-0").status_code == 200
            sent += 1
        # Late: good-1's event redelivered from 2020, and an event for a version nobody ever saw.
        assert _storage_event(server, good[1], when=datetime(2020, 1, 1, tzinfo=UTC)).status_code == 200
        never = {**good[1], "name": "day/late-only.jpg", "generation": "1"}
        assert _storage_event(server, never, when=datetime(2020, 1, 1, tzinfo=UTC)).status_code == 200
        expected[f"gs://{BUCKET}/day/late-only.jpg"] = ("error", "stale_event")
        sent += 2
        # Deleted: good-2 goes away; its delete notification arrives, then a late finalize redelivery.
        bucket.blob(good[2]["name"]).delete()
        assert _storage_event(server, good[2], event_type=DELETED).status_code == 200
        assert _storage_event(server, good[2]).status_code == 200
        sent += 2
        # Requests: one naming a bucket nobody may read, one that is not a message at all.
        assert _pubsub(server, b'{"uris": ["gs://someone-elses-bucket/x.jpg"]}', "forbidden-1").status_code == 200
        assert _pubsub(server, b"{not json", "garbled-1").status_code == 200
        expected["gs://someone-elses-bucket/x.jpg"] = ("error", "forbidden_source")
        expected["garbled-1"] = ("error", "bad_message")
        sent += 2
        deleted_row = (f"gs://{BUCKET}/{good[2]['name']}", "skipped", "not_finalized", 1)

        _wait_for_rows(stack, len(expected) + 1)
        stack.sink.flush()
        rows = stack.warehouse.query(ONE_QUERY)[1]
        hidden = stack.warehouse.query(
            "SELECT jsonPayload.error.code AS code, COUNT(*) FROM run_googleapis_com_stdout "
            "WHERE jsonPayload.app = 'bucketeye' GROUP BY code ORDER BY code")[1]
        raw = sum(n for _, n in hidden)

    want = sorted([(subject, status, code, 1) for subject, (status, code) in expected.items()] + [deleted_row])
    assert rows == want, json.dumps({"got": rows, "want": want}, indent=1, default=str)
    # The raw table holds what the view hides: the redeliveries' ok rows, a stale_event and a
    # not_found for images whose ok row still wins.
    raw_codes = dict(hidden)
    assert raw_codes.get("stale_event") == 2 and raw_codes.get("not_found") == 1, hidden
    assert raw >= sent and len(rows) == len(want)
    FIGURES.append(f"RELIABILITY day: events={sent} raw_rows={raw} visible_rows={len(rows)} "
                   f"ok={sum(1 for r in rows if r[1] == 'ok')} errors={sum(1 for r in rows if r[1] == 'error')} "
                   f"skipped={sum(1 for r in rows if r[1] == 'skipped')} hidden_behind_ok="
                   f"{raw_codes.get('stale_event', 0) - 1 + raw_codes.get('not_found', 0)}")
