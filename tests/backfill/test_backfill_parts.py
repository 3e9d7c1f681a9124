"""The backfill's small parts on their own: which objects are images, the gs:// argument,
the checkpoint file, topic names, and messages the service's Pub/Sub route really parses."""
from __future__ import annotations

import json

import pytest

from functions.backfill import messages
from functions.backfill.checkpoint import CheckpointFile, Counts
from functions.backfill.listing import ListedObject, is_image
from functions.backfill.publishers import topic_path
from functions.backfill.target import parse_target
from functions.console.errors import CommandError


@pytest.mark.parametrize("name, content_type, expected", [
    ("a.jpg", "image/jpeg", True),
    ("no-extension", "IMAGE/PNG; charset=binary", True),
    ("a.JPG", "application/octet-stream", True),      # what Cloud Storage records when none was given
    ("a.webp", "", True),
    ("a.txt", "application/octet-stream", True),     # generic: its bytes decide (listing.needs_sniff)
    ("a.jpg", "text/plain", False),                   # a content type that says otherwise wins
    ("a.json", "application/json", False),
    ("outputs/a.jpg", "image/jpeg", False),           # under SKIP_PREFIXES
])
def test_which_objects_are_images(name, content_type, expected):
    assert is_image(ListedObject(name, "1", content_type, 10), skip_prefixes=("outputs/",)) is expected


def test_the_target_argument():
    assert parse_target("gs://bucket") == parse_target("gs://bucket/")
    target = parse_target("gs://bucket/photos/2019/")
    assert (target.bucket, target.prefix, target.uri("photos/2019/a.jpg")) == \
        ("bucket", "photos/2019/", "gs://bucket/photos/2019/a.jpg")
    for bad in ("bucket/x", "s3://bucket", "gs://", "gs://Bad_Bucket!"):
        with pytest.raises(CommandError):
            parse_target(bad)


def test_topic_paths():
    assert topic_path("projects/p/topics/t", None) == "projects/p/topics/t"
    assert topic_path("t", "p") == "projects/p/topics/t"
    for bad, project in (("t", None), ("projects/p/subscriptions/t", None), ("projects//topics/t", None)):
        with pytest.raises(CommandError):
            topic_path(bad, project)


def test_the_checkpoint_is_per_run_and_written_atomically(tmp_path):
    files = CheckpointFile(tmp_path, "b", "p/", "m@1", "projects/p/topics/t")
    assert files.load() is None
    checkpoint = files.fresh()
    checkpoint.after, checkpoint.pages = "p/0999.jpg", 1
    checkpoint.counts.add(Counts(listed=1000, images=990, skipped=10, published=980, messages=20))
    files.save(checkpoint)
    again = files.load()
    assert again.after == "p/0999.jpg" and again.counts.published == 980 and again.counts.not_images == 10
    assert [p.name for p in tmp_path.iterdir()] == [files.path.name]  # no temporary file left behind
    # another model or another destination is another run, with its own file
    assert CheckpointFile(tmp_path, "b", "p/", "m@2", "projects/p/topics/t").load() is None
    assert CheckpointFile(tmp_path, "b", "p/", "m@1", "local:/s").path != files.path
    files.path.write_text("{not json")
    assert files.load() is None


def test_messages_are_what_the_pubsub_route_parses():
    from functions.delivery import from_envelope
    from functions.pubsub_trigger import refs
    from shared.config import Settings
    from tests.events import pubsub_push
    uris = [f"gs://b/photos/{i}.jpg" for i in range(7)] + ["gs://b/naïve name #1.png"]
    batch = messages.bodies(uris, 3)
    assert [len(group) for group, _ in batch] == [3, 3, 2]
    for group, data in batch:
        assert json.loads(data) == {"uris": group}
        push = pubsub_push(data, dict(messages.ATTRIBUTES), description="test")
        parsed = refs(from_envelope(json.loads(push.body), "pubsub"), max_images=Settings.from_env({}).max_instances)
        assert [ref.uri for ref in parsed] == group
        assert all(ref.trigger == "pubsub" and ref.bucket == "b" for ref in parsed)
