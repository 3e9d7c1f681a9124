"""Fixtures for the backfill tests: a real GCS emulator holding a bucket of images (and
some objects that are not), a fake Pub/Sub Publisher on loopback, and the CLI run in
this process with the environment the cloud path reads."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from functions.local.emulator import GcsEmulator, free_port
from functions.local.gcs import client as gcs_client
from tests.backfill.fake_pubsub import FakePublisher

BUCKET = "archive"
TOPIC = "projects/p/topics/bucketeye-requests"


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with GcsEmulator(tmp_path_factory.mktemp("gcs"), port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def bucket(emulator):
    """23 images under photos/ (image/png; 3 of them without a content type but with a .jpg
    name), plus a text file, a JSON file without extension, and objects outside the prefix."""
    storage = gcs_client(emulator.url)
    storage.create_bucket(BUCKET)
    target = storage.bucket(BUCKET)
    images = {}
    for i in range(20):
        blob = target.blob(f"photos/{i:03d}.png")
        blob.upload_from_string(png(i), content_type="image/png")
        images[f"gs://{BUCKET}/{blob.name}"] = str(blob.generation)
    for i in range(3):
        blob = target.blob(f"photos/untyped-{i}.jpg")
        blob.upload_from_string(png(100 + i), content_type="application/octet-stream")  # what GCS records for none
        images[f"gs://{BUCKET}/{blob.name}"] = str(blob.generation)
    target.blob("photos/notes.txt").upload_from_string(b"not an image", content_type="text/plain")
    target.blob("photos/blob").upload_from_string(b"{}", content_type="application/octet-stream")
    target.blob("other/elsewhere.png").upload_from_string(png(7), content_type="image/png")
    return images


@pytest.fixture()
def publisher():
    fake = FakePublisher([TOPIC]).start()
    yield fake
    fake.stop()


@pytest.fixture()
def cloud_env(monkeypatch, emulator, publisher, tmp_path):
    """The cloud path, pointed at loopback: the storage client at the GCS emulator, the
    PublisherClient at the fake Publisher (PUBSUB_EMULATOR_HOST: insecure channel,
    anonymous credentials); checkpoints in a tmp dir."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", publisher.host)
    for name in ("BACKFILL_TOPIC", "BACKFILL_RESULTS", "BACKFILL_MODEL_ID", "GOOGLE_CLOUD_PROJECT",
                 "BACKFILL_COST_PER_IMAGE_USD", "BACKFILL_IMAGES_PER_SECOND", "MAX_INSTANCES", "SKIP_PREFIXES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
