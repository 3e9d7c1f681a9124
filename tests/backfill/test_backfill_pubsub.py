"""`python main.py backfill` on the cloud path, all on loopback: the real
google-cloud-storage client lists the real GCS emulator, the real google-cloud-pubsub
PublisherClient publishes over gRPC to Google's Pub/Sub emulator, and the skip check
reads a DuckDB warehouse seeded with real result rows."""
from __future__ import annotations

import json
import math

import pytest

from functions.backfill import listing
from functions.cli import main
from tests.backfill.conftest import BUCKET, TOPIC
from tests.backfill.seed import record, seed

pytestmark = pytest.mark.functional  # real servers on loopback


def backfill(*flags) -> int:
    return main(["backfill", f"gs://{BUCKET}/photos/", "--topic", TOPIC, *flags])


def checkpoint_files(root):
    return sorted((root / ".backfill").glob("*.json")) if (root / ".backfill").exists() else []


def test_every_image_is_published_once_many_uris_per_message(cloud_env, bucket, publisher, capsys):
    assert backfill("--results", "none", "--per-message", "4", "--page-size", "10") == 0
    sent = publisher.uris()
    assert sorted(sent) == sorted(bucket)                 # every image, the untyped .jpg ones too
    assert len(sent) == len(set(sent))                    # each exactly once
    assert not any(u.endswith(("notes.txt", "/blob")) or "/other/" in u for u in sent)
    sizes = [len(m.uris) for m in publisher.messages]
    assert max(sizes) == 4 and all(1 <= n <= 4 for n in sizes)
    # 25 objects in pages of 10: 10 images, 10 images, 3 images (+2 others) -> 3 + 3 + 1 messages
    assert len(sizes) == math.ceil(10 / 4) * 2 + 1
    assert all(m.attributes == {"origin": "bucketeye-backfill"} for m in publisher.messages)
    assert all(m.topic == TOPIC for m in publisher.messages)
    out = capsys.readouterr().out
    assert "published" in out and "23" in out and "not images (skipped)" in out
    [saved] = checkpoint_files(cloud_env)
    state = json.loads(saved.read_text())
    assert state["finished"] is True and state["counts"]["published"] == 23 and state["counts"]["messages"] == 7


def test_images_with_a_result_for_the_model_are_skipped(cloud_env, bucket, publisher, capsys):
    uris = sorted(bucket)
    warehouse = cloud_env / "bucketeye.duckdb"
    seed(warehouse, [
        *[record(u, bucket[u], model_id="m@1") for u in uris[:5]],                  # done
        record(uris[5], bucket[uris[5]], model_id="m@1", error="corrupt_image"),   # permanent error: done
        record(uris[6], bucket[uris[6]], model_id="m@1", error="fetch_failed"),    # transient: send again
        record(uris[7], bucket[uris[7]], model_id="m@0"),                          # another model's row
        record(uris[8], "12345", model_id="m@1"),                                  # an older generation
    ])
    assert backfill("--results", str(warehouse), "--model", "m@1") == 0
    sent = publisher.uris()
    assert sorted(sent) == uris[6:] and len(sent) == len(set(sent))
    assert "6" in capsys.readouterr().out

    # The same run again: the checkpoint says finished, so it lists again; nothing is new.
    publisher.clear()
    assert backfill("--results", str(warehouse), "--model", "m@1", "--restart") == 0
    assert sorted(publisher.uris()) == uris[6:]  # no results landed meanwhile (nothing classifies here)

    # --redo-errors sends the permanent error again too; --model m@0 leaves m@1's rows alone.
    publisher.clear()
    assert backfill("--results", str(warehouse), "--model", "m@1", "--redo-errors") == 0
    assert sorted(publisher.uris()) == uris[5:]
    publisher.clear()
    assert backfill("--results", str(warehouse), "--model", "m@0") == 0
    assert sorted(publisher.uris()) == [u for u in uris if u != uris[7]]


@pytest.mark.parametrize("interruption, exit_code", [(KeyboardInterrupt, 130), ("unavailable", 1)])
def test_an_interrupted_run_continues_from_its_checkpoint(cloud_env, bucket, publisher, monkeypatch, capsys,
                                                          interruption, exit_code):
    from google.api_core.exceptions import ServiceUnavailable
    real = listing.list_pages

    def two_pages_then_fail(*args, **kwargs):
        for number, page in enumerate(real(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt if interruption is KeyboardInterrupt else ServiceUnavailable("listing broke")
            yield page

    monkeypatch.setattr(listing, "list_pages", two_pages_then_fail)
    assert backfill("--results", "none", "--page-size", "10") == exit_code
    first = publisher.uris()
    assert sorted(first) == sorted(u for u in bucket if u.rsplit("/", 1)[1] < "020.png")  # pages 1 and 2 only
    [saved] = checkpoint_files(cloud_env)
    state = json.loads(saved.read_text())
    assert state["after"] == "photos/019.png" and state["pages"] == 2 and state["finished"] is False
    capsys.readouterr()

    monkeypatch.setattr(listing, "list_pages", real)
    publisher.clear()
    assert backfill("--results", "none", "--page-size", "10") == 0
    assert "resuming after photos/019.png" in capsys.readouterr().out
    second = publisher.uris()
    assert sorted(first + second) == sorted(bucket)       # all covered ...
    assert len(first + second) == len(set(first + second))  # ... exactly once
    state = json.loads(saved.read_text())
    assert state["finished"] is True and state["counts"]["published"] == 23 and state["pages"] == 3


def test_dry_run_sends_nothing_and_prices_the_work(cloud_env, bucket, publisher, monkeypatch, capsys):
    assert backfill("--dry-run", "--results", "none", "--per-message", "10") == 0
    assert publisher.messages == []
    assert checkpoint_files(cloud_env) == []
    out = capsys.readouterr().out
    assert "dry run: nothing was published" in out
    assert f'would send {{"uris": [10 URIs: gs://{BUCKET}/photos/000.png' in out
    assert "$0.000069 for 23 images at $3.00 per million" in out and "docs/deploy.md" in out
    assert "≈ 0 s on one instance at 230 images/s" in out
    monkeypatch.setenv("BACKFILL_COST_PER_IMAGE_USD", "0.5")
    assert backfill("--dry-run", "--results", "none") == 0
    assert "$11.50 for 23 images" in capsys.readouterr().out
    assert publisher.messages == []


def test_a_publish_failure_stops_the_run_before_its_checkpoint(cloud_env, bucket, publisher, monkeypatch, capsys):
    real = listing.list_pages

    def topic_deleted_after_the_first_page(*args, **kwargs):
        for number, page in enumerate(real(*args, **kwargs)):
            if number == 1:
                publisher.delete_topic()  # Publish now answers NOT_FOUND (permanent: no retry)
            yield page

    monkeypatch.setattr(listing, "list_pages", topic_deleted_after_the_first_page)
    assert backfill("--results", "none", "--page-size", "10") == 1
    err = capsys.readouterr().err
    assert "publishing failed" in err and "NotFound" in err and "Traceback" not in err
    first = publisher.uris()
    assert len(first) == 10
    [saved] = checkpoint_files(cloud_env)
    assert json.loads(saved.read_text())["after"] == "photos/009.png"  # before the failed page

    publisher.create_topic()
    monkeypatch.setattr(listing, "list_pages", real)
    publisher.clear()
    assert backfill("--results", "none", "--page-size", "10") == 0
    second = publisher.uris()
    assert sorted(first + second) == sorted(bucket) and len(first + second) == len(set(first + second))


def test_messages_never_hold_more_than_max_instances(cloud_env, bucket, publisher, monkeypatch, capsys):
    monkeypatch.setenv("MAX_INSTANCES", "3")
    assert backfill("--results", "none") == 0
    assert max(len(m.uris) for m in publisher.messages) == 3
    assert sorted(publisher.uris()) == sorted(bucket)
    assert "MAX_INSTANCES (3)" in capsys.readouterr().err


def test_usage_errors_are_one_line(cloud_env, capsys):
    assert main(["backfill", "s3://nope"]) == 2
    assert main(["backfill", f"gs://{BUCKET}/"]) == 2       # no topic, no project, not --local
    assert main(["backfill", f"gs://{BUCKET}/", "--local", "--topic", TOPIC]) == 2
    err = capsys.readouterr().err
    assert "not a gs://" in err and "--topic" in err and "Traceback" not in err
