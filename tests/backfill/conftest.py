"""Fixtures for the backfill tests: a real GCS emulator holding a bucket of images (and
some objects that are not), the requests topic on the session's real Pub/Sub emulator
with a pull subscription recording what is published to it, and the CLI run in this
process with the environment the cloud path reads."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
from PIL import Image

from functions.local import pubsub
from functions.local.gcs import client as gcs_client

BUCKET = "archive"
TOPIC = "projects/backfill-tests/topics/bucketeye-requests"


@dataclass
class Received:
    topic: str
    data: bytes
    attributes: dict
    message_id: str

    @property
    def uris(self) -> list[str]:
        return json.loads(self.data)["uris"]


class TopicRecorder:
    """A topic on the Pub/Sub emulator and a pull subscription of ours on it: everything
    published to the topic, read back as the emulator stored it."""

    def __init__(self, host: str, topic: str, *, own_topic: bool = True):
        self.host, self.topic, self.own_topic = host, topic, own_topic
        project, name = topic.split("/")[1], topic.split("/")[3]
        self.subscription = f"projects/{project}/subscriptions/{name}-recorder"
        self._client = pubsub.subscriber(host)
        self._received: list[Received] = []

    def start(self) -> TopicRecorder:
        if self.own_topic:
            self.create_topic()
        else:
            self._subscribe()
        return self

    def create_topic(self) -> None:
        publisher = pubsub.publisher(self.host)
        try:
            publisher.create_topic(name=self.topic)
        finally:
            pubsub.close(publisher)
        self._subscribe()

    def _subscribe(self) -> None:
        pubsub.delete_subscription(self._client, self.subscription)
        self._client.create_subscription(name=self.subscription, topic=self.topic)

    def delete_topic(self) -> None:
        """From now on a publish answers NOT_FOUND (what was published before is kept here)."""
        self._drain()
        self._delete_topic()

    def _delete_topic(self) -> None:
        publisher = pubsub.publisher(self.host)
        try:
            publisher.delete_topic(topic=self.topic)
        finally:
            pubsub.close(publisher)

    def _drain(self) -> None:
        while True:
            answer = self._client.pull(subscription=self.subscription, max_messages=1000, return_immediately=True,
                                       timeout=10)
            if not answer.received_messages:
                return
            for item in answer.received_messages:
                message = item.message
                self._received.append(Received(self.topic, bytes(message.data), dict(message.attributes),
                                               message.message_id))
            self._client.acknowledge(subscription=self.subscription,
                                     ack_ids=[item.ack_id for item in answer.received_messages])

    @property
    def messages(self) -> list[Received]:
        self._drain()
        return list(self._received)

    def uris(self) -> list[str]:
        return [uri for m in self.messages for uri in m.uris]

    def clear(self) -> None:
        self._drain()
        self._received.clear()

    def stop(self) -> None:
        from google.api_core.exceptions import NotFound
        if self.own_topic:
            try:
                self._delete_topic()
            except NotFound:
                pass
        pubsub.delete_subscription(self._client, self.subscription)
        pubsub.close(self._client)


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(buffer, "PNG")
    return buffer.getvalue()


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
def publisher(pubsub_emulator):
    recorder = TopicRecorder(pubsub_emulator.host, TOPIC).start()
    yield recorder
    recorder.stop()


@pytest.fixture()
def cloud_env(monkeypatch, emulator, publisher, tmp_path):
    """The cloud path, pointed at loopback: the storage client at the GCS emulator, the
    PublisherClient at the Pub/Sub emulator (PUBSUB_EMULATOR_HOST: insecure channel,
    anonymous credentials); checkpoints in a tmp dir."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", publisher.host)
    for name in ("BACKFILL_TOPIC", "BACKFILL_RESULTS", "BACKFILL_MODEL_ID", "GOOGLE_CLOUD_PROJECT",
                 "BACKFILL_COST_PER_IMAGE_USD", "BACKFILL_IMAGES_PER_SECOND", "MAX_INSTANCES", "SKIP_PREFIXES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
