"""Backfill's two rules about what to send: which earlier results count as done (only an
answer no retry can change), and which listed objects are images (a generic content
type is decided by the object's first bytes, as the storage trigger decides it).

Real parts: a DuckDB warehouse file written through the result log handler, and the GCS
emulator (fake-gcs-server) listed and read by google-cloud-storage.
"""
from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from functions.backfill import runner
from functions.backfill.checkpoint import CheckpointFile
from functions.backfill.done import DuckDBResults, Nothing
from functions.backfill.listing import storage_client
from functions.backfill.target import Target
from functions.local.emulator import GcsEmulator
from functions.warehouse.log_entry import entry_from_line
from functions.warehouse.store import Warehouse
from shared.errors import BucketeyeError, Skip
from shared.refs import ImageRef
from shared.result_log import _ResultHandler, log_result
from shared.results import Prediction, Result

MODEL = {"name": "m", "version": "1", "id": "m@1"}


def _result(name: str, *, error: str = "", skip: str = "") -> Result:
    ref = ImageRef(trigger="pubsub", uri=f"gs://b/{name}", bucket="b", object=name, generation="1")
    return Result(ref=ref, model=MODEL, predictions=[] if error or skip else [Prediction("tabby", 281, 0.9)],
                  error=BucketeyeError(error) if error else None, skip=Skip(skip) if skip else None)


def _warehouse(tmp_path, results: list[Result]) -> Warehouse:
    house = Warehouse(tmp_path / "bucketeye.duckdb")
    house.setup()
    stream = io.StringIO()
    logger = logging.Logger("backfill-rules")
    logger.addHandler(_ResultHandler(stream=stream))
    start = datetime(2026, 3, 1, tzinfo=UTC)
    entries = []
    for i, result in enumerate(results):
        log_result(result, logger=logger)
        entries.append(entry_from_line(stream.getvalue().splitlines()[-1], written=start + timedelta(seconds=i),
                                       instance_id="i"))
    house.append(entries)
    return house


def test_only_answers_a_retry_cannot_change_count_as_done(tmp_path):
    outcomes = {"ok.jpg": {}, "corrupt.jpg": {"error": "corrupt_image"}, "text.bin": {"skip": "not_an_image"},
                "empty.jpg": {"error": "empty_object"}, "late.jpg": {"error": "stale_event"},
                "private.jpg": {"error": "forbidden_source"}, "flaky.jpg": {"error": "fetch_failed"},
                "model.jpg": {"error": "model_error"}}
    house = _warehouse(tmp_path, [_result(name, **kind) for name, kind in outcomes.items()])
    pairs = [(f"gs://b/{name}", "1") for name in [*outcomes, "never.jpg"]]

    done = DuckDBResults(house.path).done(MODEL["id"], pairs)

    assert sorted(uri.rpartition("/")[2] for uri, _ in done) == ["corrupt.jpg", "empty.jpg", "ok.jpg", "text.bin"]
    redo = DuckDBResults(house.path, redo_errors=True).done(MODEL["id"], pairs)
    assert [uri for uri, _ in redo] == ["gs://b/ok.jpg"]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    root = tmp_path_factory.mktemp("gcs")
    emulator = GcsEmulator(root / "data", log_path=root / "emulator.log").start()
    client = storage_client(emulator.url)
    client.create_bucket("uploads")
    yield client, "uploads"
    emulator.stop()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "JPEG")
    return out.getvalue()


def test_generic_types_are_identified_by_their_bytes(bucket, tmp_path):
    client, name = bucket
    objects = {"photo-no-suffix": (_jpeg(), "application/octet-stream"),  # an image by its bytes alone
               "notes.jpg": (b"just some text, not a picture", "application/octet-stream"),  # a misleading name
               "labelled.png": (_jpeg(), "image/png"),
               "readme.txt": (b"text", "text/plain"),
               "empty.jpg": (b"", "application/octet-stream")}
    for object_name, (data, content_type) in objects.items():
        client.bucket(name).blob(object_name).upload_from_string(data, content_type=content_type)

    plan = runner.Plan(target=Target(name), model_id=MODEL["id"], dry_run=True)
    report = runner.run(plan, storage=client, results=Nothing(), publisher=None, report=runner.Report(),
                        checkpoints=CheckpointFile(tmp_path, name, "", MODEL["id"], "dry-run"))

    assert sorted(uri for message in report.sample for uri in message) == [
        f"gs://{name}/labelled.png", f"gs://{name}/photo-no-suffix"]
    assert (report.counts.listed, report.counts.images, report.counts.not_images) == (5, 2, 3)
