"""Nothing lost, nothing hidden: the repros of what once broke it, on the real server.

1. a late redelivery (ce-time in 2020) of an image already classified, and a not_found after
   the object was deleted, never hide its `ok` row in the `results` view;
2. uploads with a generic or missing content type are identified by their bytes;
3. backfill (and any request) messages are not subject to the event-age cutoff;
4. a bad setting stops the server with one line; a model that fails to load answers 503 with
   the reason and logs it at ERROR;
5. operational lines ("model ready") are structured and carry the operator's facts;
and the least-privilege and size rules for what callers name.

The `results` view is read the way it is in production: the server's stdout lines become
LogEntries (functions.warehouse.log_entry) in a DuckDB file with infra/sql's views.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from _functional_support import ALLOWED_BUCKET, CAT_IDS, PRIVATE_BUCKET, days_ago, new_id

from functions.backfill import messages as backfill_messages
from functions.warehouse.log_entry import entry_from_line
from functions.warehouse.store import Warehouse
from shared.config import SETTINGS

STORAGE, PUBSUB = "/events/storage", "/events/pubsub"
REPO = Path(__file__).resolve().parents[2]


def _env(**settings) -> dict:
    """This environment without any bucketeye setting, plus `settings`."""
    return {key: value for key, value in os.environ.items() if key not in SETTINGS} | settings


@pytest.fixture(scope="module")
def other_instance(start_server):
    """A second instance with nothing in its de-duplication window (as after a scale-out)."""
    return start_server("other-instance", env={"DEDUP_WINDOW_S": "0"})


def _warehouse(tmp_path, *servers) -> Warehouse:
    """The servers' stdout, in the order the lines were written, as the sink would load it."""
    house = Warehouse(tmp_path / "bucketeye.duckdb")
    house.setup()
    start = datetime.now(UTC)
    lines = [line for server in servers for line in server.log.raw_lines()]
    house.append([entry_from_line(line, written=start + timedelta(milliseconds=i), instance_id="i")
                  for i, line in enumerate(lines)])
    return house


def _visible(house: Warehouse, uri: str) -> list[tuple]:
    return house.query("SELECT status, error_code, top_label FROM results WHERE uri = ? ORDER BY status", [uri])[1]


# --- 1. a late error never hides a good result ------------------------------------------------

def test_a_late_redelivery_is_a_no_op_and_never_hides_the_result(server, other_instance, gcs, images, events,
                                                                  tmp_path):
    resource = gcs.upload(images.unique("chelsea"))
    uri = f"gs://{ALLOWED_BUCKET}/{resource['name']}"
    event = events.storage(resource)
    mark = server.log.mark()
    assert events.post_binary(server.url + STORAGE, event).status_code == 200
    assert server.log.one_result(mark)["status"] == "ok"

    late = events.storage(resource, event_id=event["id"], time=datetime(2020, 1, 1, tzinfo=UTC))
    again = events.post_binary(server.url + STORAGE, late)

    # The same instance: de-duplication runs before the age check, so this is a no-op.
    assert again.status_code == 200 and len(again.json()["duplicates"]) == 1, again.text
    assert server.log.results(mark + 1) == []
    # Another instance has not seen it: it logs stale_event, and the view still shows the ok row.
    other_mark = other_instance.log.mark()
    assert events.post_binary(other_instance.url + STORAGE, late).status_code == 200
    assert other_instance.log.one_result(other_mark)["error"]["code"] == "stale_event"
    house = _warehouse(tmp_path, server, other_instance)
    status, _, label = _visible(house, uri)[0]
    assert (len(_visible(house, uri)), status) == (1, "ok")
    top = house.query("SELECT label_id FROM predictions WHERE uri = ? AND rank = 1", [uri])[1]
    assert top[0][0] in CAT_IDS


def test_not_found_after_a_delete_never_hides_the_result(server, other_instance, gcs, images, events, tmp_path):
    resource = gcs.upload(images.unique("coffee"))
    uri = f"gs://{ALLOWED_BUCKET}/{resource['name']}"
    mark = server.log.mark()
    assert events.post_binary(server.url + STORAGE, events.storage(resource)).status_code == 200
    assert server.log.one_result(mark)["status"] == "ok"
    gcs.delete(ALLOWED_BUCKET, resource["name"])

    other_mark = other_instance.log.mark()
    events.post_binary(other_instance.url + STORAGE, events.storage(resource))  # a second notification, later
    assert other_instance.log.one_result(other_mark)["error"]["code"] == "not_found"

    assert [row[:2] for row in _visible(_warehouse(tmp_path, server, other_instance), uri)] == [("ok", None)]


# --- 2. generic content types: the bytes decide -------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/octet-stream", "binary/octet-stream", ""])
def test_an_image_without_an_image_type_is_classified(server, gcs, images, events, content_type):
    resource = gcs.upload(images.unique("chelsea"), name=f"uploads/{new_id()}", content_type=content_type or None)
    if not content_type:  # the client library labels an untyped upload; remove the label as some uploaders do
        resource.pop("contentType", None)
    mark = server.log.mark()

    response = events.post_binary(server.url + STORAGE, events.storage(resource))

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert line["status"] == "ok" and line["predictions"][0]["label_id"] in CAT_IDS


def test_a_non_image_without_a_type_is_skipped_with_its_reason(server, gcs, events):
    resource = gcs.upload(b"%PDF-1.7 not a picture", name=f"uploads/{new_id()}.jpg",
                          content_type="application/octet-stream")
    mark = server.log.mark()

    response = events.post_binary(server.url + STORAGE, events.storage(resource))

    assert response.status_code == 200 and response.json()["skipped"][0]["reason"] == "not_an_image"
    line = server.log.one_result(mark)
    assert (line["status"], line["error"]["code"], line["severity"]) == ("skipped", "not_an_image", "INFO")


# --- 3. requests are never too old --------------------------------------------------------------

def test_an_old_backfill_message_is_still_classified(server, gcs, images, events):
    resource = gcs.upload(images.unique("chelsea"))
    uri = f"gs://{ALLOWED_BUCKET}/{resource['name']}"
    envelope = events.envelope(backfill_messages.body([uri]), attributes=dict(backfill_messages.ATTRIBUTES),
                               publish_time=days_ago(30))
    mark = server.log.mark()

    response = events.post_json(server.url + PUBSUB, envelope)

    assert response.status_code == 200
    line = server.log.one_result(mark)
    assert (line["status"], line["source"]["uri"]) == ("ok", uri)


# --- 4. settings and model-load failures --------------------------------------------------------

@pytest.mark.parametrize("argv", [["main.py", "serve", "--port", "0"],
                                  ["-m", "functions_framework", "--target", "bucketeye", "--source", "main.py",
                                   "--port", "0"]], ids=["serve", "function-target"])
def test_a_bad_setting_stops_the_server_with_one_line(argv):
    done = subprocess.run([sys.executable, *argv], cwd=REPO, env=_env(TOP_K="five"), capture_output=True,
                          text=True, timeout=120)

    assert done.returncode != 0
    said = [line for line in (done.stdout + done.stderr).splitlines() if "TOP_K" in line]
    assert len(said) == 1 and "'five'" in said[0] and "an integer >= 1" in said[0], done
    assert "Traceback" not in done.stderr


def test_classify_exits_2_on_a_bad_setting(images):
    done = subprocess.run([sys.executable, "main.py", "classify", str(images.coffee_path)], cwd=REPO,
                          env=_env(RESIZE_MODE="zoom"), capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    assert done.stderr.strip() == ("bucketeye: invalid setting RESIZE_MODE='zoom': expected one of stretch, crop, "
                                   "pad (or empty)")


def test_a_model_that_fails_to_load_answers_503_with_the_reason(start_server, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    server = start_server("broken-model", env={"MODEL_URI": str(broken)}, ready=lambda r: r.status_code == 503
                          and r.json().get("status") == "failed")

    health = requests.get(server.url + "/healthz", timeout=10)

    assert health.status_code == 503
    error = health.json()["error"]
    assert error["code"] == "model_error" and "broken.tflite" in error["message"], error
    errors = [json.loads(line) for line in server.log.raw_lines() if '"model_load_failed"' in line]
    assert len(errors) == 1 and errors[0]["severity"] == "ERROR", server.log.raw_lines()
    assert errors[0]["message"].startswith("model failed to load: ") and errors[0]["error"]["code"] == "model_error"


# --- 5. operational lines -----------------------------------------------------------------------

def test_the_model_ready_line_carries_the_operator_facts(start_server):
    server = start_server("facts", env={"TOP_K": "3", "BATCH_MAX_DELAY_MS": "4"})

    ready = [json.loads(line) for line in server.log.raw_lines() if '"model_ready"' in line]

    assert len(ready) == 1, server.log.raw_lines()
    line = ready[0]
    assert line["severity"] == "INFO" and "app" not in line  # never exported as a result row
    assert line["model_id"] == "efficientnet_lite0@1" and line["message"].startswith("model efficientnet_lite0@1 ready")
    assert line["runtime"] in ("tflite", "saved_model") and line["device"] in ("cpu", "gpu") and line["load_s"] > 0
    assert line["settings"]["TOP_K"] == "3" and line["settings"]["BATCH_MAX_DELAY_MS"] == "4"
    assert "RESIZE_MODE" not in line["settings"]  # only what differs from the defaults


# --- least privilege and bounded names ---------------------------------------------------------

def test_callers_may_name_only_request_buckets(start_server, gcs, images, events):
    server = start_server("request-buckets", env={"ALLOWED_BUCKETS": f"{ALLOWED_BUCKET},{PRIVATE_BUCKET}",
                                                  "REQUEST_BUCKETS": ALLOWED_BUCKET})
    private = gcs.upload(images.unique("coffee"), bucket=PRIVATE_BUCKET)
    uri = f"gs://{PRIVATE_BUCKET}/{private['name']}"
    mark = server.log.mark()

    http = events.post_json(server.url + "/", {"instances": [{"uri": uri}]})
    pubsub = events.post_json(server.url + PUBSUB, events.envelope(uri.encode()))
    upload_event = events.post_binary(server.url + STORAGE, events.storage(private))

    assert http.json()["predictions"][0]["error"]["code"] == "forbidden_source"
    lines = server.log.wait_results(mark, 3)
    assert [line["status"] for line in lines] == ["error", "error", "ok"]  # the upload's own event may read it
    assert "REQUEST_BUCKETS" in lines[1]["error"]["message"]
    assert (pubsub.status_code, upload_event.status_code) == (200, 200)


def test_a_huge_form_file_name_is_bounded(server, images):
    mark = server.log.mark()
    name = "n" * 300_000 + ".png"

    response = requests.post(server.url + "/", files=[("f", (name, images.coffee, "image/png"))], timeout=60)

    assert response.status_code == 200, response.text[:300]
    line = server.log.one_result(mark)
    assert line["source"]["key"] == "n" * 256
    assert max(len(raw) for raw in server.log.raw_lines()) < 256 * 1024
