"""Backfill into a running local stack, end to end: objects stored while the bucket's
notifications reached no subscription (the uploads push subscription is deleted, as if
they were there before the notification existed) are listed from the real GCS emulator,
published to the requests topic on the real Pub/Sub emulator, pushed by its subscription
to the real functions server, classified by the real model, logged and sunk into
DuckDB; every object gets its row. A second run sends nothing; identical images show up
as duplicates."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from functions.local import pubsub
from functions.local.defaults import DEFAULT_BUCKET
from functions.local.emulator import free_port
from functions.local.gcs import client as gcs_client
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from functions.local.topology import subscription_path
from functions.warehouse.store import Warehouse
from tests.backfill.conftest import TopicRecorder, png

pytestmark = pytest.mark.functional  # real servers on loopback

REPO = Path(__file__).resolve().parents[2]
PHOTOS = Path(importlib.util.find_spec("skimage").origin).parent / "data"
PREFIX = "legacy/"


def cli(state: StateDir, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args, "--state-dir", str(state.root)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pubsub_emulator):
    from tests.conftest import fresh_project
    state = StateDir(tmp_path_factory.mktemp("backfill-stack") / "state").ensure()
    running = Stack(StackConfig(state=state, port=free_port(), gcs_port=free_port(), pubsub_host=pubsub_emulator.host,
                                project=fresh_project())).start()
    subscriber = pubsub.subscriber(pubsub_emulator.host)
    try:  # from here on, new objects reach the server only through the backfill
        subscriber.delete_subscription(subscription=subscription_path(running.config.project,
                                                                      running.topology.uploads.push_subscription))
    finally:
        pubsub.close(subscriber)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def requests_topic(stack, pubsub_emulator):
    recorder = TopicRecorder(pubsub_emulator.host, stack.topic("requests"), own_topic=False).start()
    yield recorder
    recorder.stop()


def test_backfill_gives_every_object_in_the_bucket_its_row(stack, requests_topic):
    state = stack.state
    bucket = gcs_client(stack.emulator.url, stack.emulator.cert).bucket(DEFAULT_BUCKET)
    uploaded = {}
    for name in ("chelsea.png", "coffee.png", "camera.png"):
        blob = bucket.blob(PREFIX + name)
        blob.upload_from_filename(str(PHOTOS / name), content_type="image/png")
        uploaded[f"gs://{DEFAULT_BUCKET}/{blob.name}"] = str(blob.generation)
    for i in range(6):
        blob = bucket.blob(f"{PREFIX}small/{i}.png")
        blob.upload_from_string(png(i), content_type="image/png")
        uploaded[f"gs://{DEFAULT_BUCKET}/{blob.name}"] = str(blob.generation)
    twin = bucket.blob(f"{PREFIX}copy-of-coffee.png")  # the same bytes under a second name
    twin.upload_from_filename(str(PHOTOS / "coffee.png"), content_type="image/png")
    uploaded[f"gs://{DEFAULT_BUCKET}/{twin.name}"] = str(twin.generation)
    bucket.blob(f"{PREFIX}readme.txt").upload_from_string(b"not an image", content_type="text/plain")

    run = cli(state, "backfill", f"gs://{DEFAULT_BUCKET}/{PREFIX}", "--per-message", "4", "--wait",
              "--wait-timeout", "150")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all 10 images have their result" in run.stdout
    assert len(requests_topic.messages) == 3  # 10 URIs, 4 per message

    rows = Warehouse(state.warehouse).query(
        "SELECT uri, generation, status, trigger, top_label, model_id FROM results WHERE uri LIKE ?",
        [f"gs://{DEFAULT_BUCKET}/{PREFIX}%"])[1]
    by_uri = {row[0]: row for row in rows}
    assert sorted(by_uri) == sorted(uploaded) and len(rows) == len(uploaded)
    assert all(row[1] == uploaded[row[0]] and row[2] == "ok" and row[3] == "pubsub" for row in rows)
    assert by_uri[f"gs://{DEFAULT_BUCKET}/{PREFIX}coffee.png"][4] == "espresso"
    assert by_uri[f"gs://{DEFAULT_BUCKET}/{PREFIX}chelsea.png"][4] == "tiger cat"

    # Again: everything has its row for the server's model, so nothing is sent.
    again = cli(state, "backfill", f"gs://{DEFAULT_BUCKET}/{PREFIX}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"model {rows[0][5]}:" in again.stdout
    assert re.search(r"already classified \(skipped\)\s+10\b", again.stdout)
    assert re.search(r"published\s+0\b", again.stdout)
    assert len(requests_topic.messages) == 3

    # The twin: one content hash under two URIs.
    dupes = cli(state, "duplicates")
    assert dupes.returncode == 0, dupes.stderr
    assert f"{PREFIX}coffee.png" in dupes.stdout and f"{PREFIX}copy-of-coffee.png" in dupes.stdout
    md5 = Warehouse(state.warehouse).query("SELECT content_md5, copies FROM duplicates")[1]
    assert md5 == [(twin.md5_hash, 2)]
