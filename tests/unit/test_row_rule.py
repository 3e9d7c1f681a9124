"""Which row the `results` view shows for an image: an `ok` row is never hidden by a later
error for the same image and model, and among errors the newest wins.

Rows go the way they go in production: a Result is written by the structured log handler,
the line becomes a LogEntry (functions.warehouse.log_entry) and lands in a real DuckDB file
(functions.warehouse.store). Both views are checked: infra/sql/results.sql (the BigQuery
SQL, translated) and the warehouse's built-in stand-in for it.
"""
from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest

from functions.warehouse.log_entry import entry_from_line
from functions.warehouse.store import INFRA, Warehouse
from shared.errors import BucketeyeError, Skip
from shared.refs import ImageRef
from shared.result_log import _ResultHandler, log_result
from shared.results import ImageInfo, Prediction, Result

MODEL = {"name": "m", "version": "1", "id": "m@1"}
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["infra-sql", "built-in"])
def warehouse(request, tmp_path):
    infra = INFRA if request.param == "infra-sql" else tmp_path / "no-infra"  # no sql/: the built-in views
    house = Warehouse(tmp_path / "bucketeye.duckdb", infra=infra)
    house.setup()
    return house


def _cat(name: str = "cat.jpg", generation: str = "7") -> ImageRef:
    return ImageRef(trigger="storage", uri=f"gs://b/{name}", bucket="b", object=name, generation=generation)


def _ok(ref: ImageRef, label: str = "tabby") -> Result:
    return Result(ref=ref, model=MODEL, image=ImageInfo("JPEG", 4, 4), predictions=[Prediction(label, 281, 0.9)])


def _error(ref: ImageRef, code: str) -> Result:
    return Result(ref=ref, model=MODEL, error=BucketeyeError(code))


def _write(warehouse: Warehouse, results: list[Result], start: datetime = START) -> None:
    """Each result through the real log handler, one minute after the one before."""
    stream = io.StringIO()
    logger = logging.Logger("row-rule")
    logger.addHandler(_ResultHandler(stream=stream))
    entries = []
    for minute, result in enumerate(results):
        log_result(result, logger=logger)
        line = stream.getvalue().splitlines()[-1]
        entries.append(entry_from_line(line, written=start + timedelta(minutes=minute), instance_id="i"))
    warehouse.append(entries)


def _rows(warehouse: Warehouse) -> list[tuple]:
    return warehouse.query("SELECT uri, status, error_code, top_label FROM results ORDER BY uri, status")[1]


def test_a_late_error_never_hides_an_ok_row(warehouse):
    cat, dog = _cat(), _cat("dog.jpg")
    _write(warehouse, [_ok(cat), _error(cat, "stale_event"), _ok(dog, "beagle"), _error(dog, "not_found")])

    assert _rows(warehouse) == [("gs://b/cat.jpg", "ok", None, "tabby"), ("gs://b/dog.jpg", "ok", None, "beagle")]
    labels = warehouse.query("SELECT uri, label FROM predictions ORDER BY uri")[1]
    assert labels == [("gs://b/cat.jpg", "tabby"), ("gs://b/dog.jpg", "beagle")]


def test_an_ok_row_wins_over_an_earlier_error(warehouse):
    cat = _cat()
    _write(warehouse, [_error(cat, "fetch_failed"), _ok(cat), _error(cat, "fetch_failed")])

    assert _rows(warehouse) == [("gs://b/cat.jpg", "ok", None, "tabby")]


def test_among_errors_the_newest_wins(warehouse):
    cat = _cat()
    _write(warehouse, [_error(cat, "fetch_failed"), _error(cat, "corrupt_image")])
    assert _rows(warehouse) == [("gs://b/cat.jpg", "error", "corrupt_image", None)]

    _write(warehouse, [_error(cat, "not_found")], start=START + timedelta(hours=1))
    assert _rows(warehouse) == [("gs://b/cat.jpg", "error", "not_found", None)]


def test_among_ok_rows_the_newest_wins(warehouse):
    cat = _cat()
    _write(warehouse, [_ok(cat, "tabby"), _ok(cat, "tiger cat")])

    assert _rows(warehouse) == [("gs://b/cat.jpg", "ok", None, "tiger cat")]


def test_a_skipped_event_is_its_own_row_beside_the_image(warehouse):
    cat = _cat()
    deleted = Result(ref=cat, model=MODEL, skip=Skip("not_finalized", "an OBJECT_DELETE event"))
    _write(warehouse, [_ok(cat), deleted, deleted])  # the delete notification, redelivered once

    assert _rows(warehouse) == [("gs://b/cat.jpg", "ok", None, "tabby"),
                                ("gs://b/cat.jpg", "skipped", "not_finalized", None)]


def test_each_unparseable_message_is_its_own_row(warehouse):
    first = ImageRef(trigger="pubsub", event_id="msg-1")
    second = ImageRef(trigger="pubsub", event_id="msg-2")
    bad = BucketeyeError("bad_message")
    _write(warehouse, [Result(ref=first, model=MODEL, error=bad), Result(ref=second, model=MODEL, error=bad),
                       Result(ref=first, model=MODEL, error=bad)])  # msg-1 redelivered

    rows = warehouse.query("SELECT event_id, error_code FROM results ORDER BY event_id")[1]
    assert rows == [("msg-1", "bad_message"), ("msg-2", "bad_message")]



def test_skipped_records_are_no_stored_images_in_duplicates(warehouse):
    same = "md5-of-the-bytes"
    copies = [ImageRef(trigger="storage", uri=f"gs://b/{n}", bucket="b", object=n, generation="1", md5_hash=same)
              for n in ("a.txt", "b.txt", "c.jpg", "d.jpg")]
    _write(warehouse, [Result(ref=copies[0], model=MODEL, skip=Skip("not_an_image")),
                       Result(ref=copies[1], model=MODEL, skip=Skip("not_an_image")),
                       _ok(copies[2]), _ok(copies[3])])

    rows = warehouse.query("SELECT content_md5, copies FROM duplicates")[1]
    assert rows == [(same, 2)]  # the two images, not the two skipped text files
