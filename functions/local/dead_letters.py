"""Dead letters are what the dead-letter topics hold: messages whose push kept failing
until the subscription's max_delivery_attempts. Each dead-letter topic has a pull
subscription (as in infra/), which `dead-letters` reads without consuming and
`replay-dead-letters` empties by publishing every message again to the topic it came from."""
from __future__ import annotations

import json
from dataclasses import dataclass

from functions.local import pubsub
from functions.local.topology import Source, Topology, subscription_path, topic_path

# Attributes Pub/Sub adds when it dead-letters a message; a replay leaves them off.
DEAD_LETTER_PREFIX = "CloudPubSubDeadLetter"
LEASE_S = 60  # how long a read keeps the messages it saw from being pulled again
PULL_TIMEOUT_S = 5.0


@dataclass
class DeadLetter:
    source: Source
    ack_id: str
    message_id: str
    data: bytes
    attributes: dict        # as first published
    attempts: str | None    # deliveries before it was dead-lettered
    publish_time: str

    @property
    def description(self) -> str:
        attrs = self.attributes
        if attrs.get("bucketId") and attrs.get("objectId"):
            return f"gs://{attrs['bucketId']}/{attrs['objectId']}#{attrs.get('objectGeneration', '')}"
        try:
            body = json.loads(self.data)
        except ValueError:
            return f"a {len(self.data)}-byte message"
        if isinstance(body, dict) and isinstance(body.get("uri"), str):
            return body["uri"]
        if isinstance(body, dict) and isinstance(body.get("uris"), list) and body["uris"]:
            more = len(body["uris"]) - 1
            return str(body["uris"][0]) + (f" and {more} more" if more else "")
        if isinstance(body, dict) and body.get("key"):
            return f"inline image {body['key']}"
        return f"a {len(self.data)}-byte message"


def _pull_all(client, project: str, source: Source) -> list[DeadLetter]:
    from google.api_core.exceptions import DeadlineExceeded
    name = subscription_path(project, source.dead_letter_subscription)
    letters: list[DeadLetter] = []
    while True:
        try:
            answer = client.pull(subscription=name, max_messages=100, return_immediately=True,
                                 timeout=PULL_TIMEOUT_S)
        except DeadlineExceeded:
            break
        if not answer.received_messages:
            break
        ack_ids = [item.ack_id for item in answer.received_messages]
        client.modify_ack_deadline(subscription=name, ack_ids=ack_ids, ack_deadline_seconds=LEASE_S)
        for item in answer.received_messages:
            message = item.message
            attributes = dict(message.attributes)
            letters.append(DeadLetter(
                source, item.ack_id, message.message_id, bytes(message.data),
                {k: v for k, v in attributes.items() if not k.startswith(DEAD_LETTER_PREFIX)},
                attributes.get(f"{DEAD_LETTER_PREFIX}SourceDeliveryCount"), message.publish_time.isoformat()))
    return letters


def read(topology: Topology, *, host: str, project: str) -> list[DeadLetter]:
    """Every dead letter, left where it is."""
    client = pubsub.subscriber(host)
    try:
        letters = [letter for source in topology.sources.values() for letter in _pull_all(client, project, source)]
        _release(client, project, letters)
        return letters
    finally:
        pubsub.close(client)


def replay(topology: Topology, *, host: str, project: str) -> list[tuple[DeadLetter, str]]:
    """Publish every dead letter again to its source topic, then acknowledge it (a letter
    whose publish failed stays); returns (letter, new message id or the error)."""
    client = pubsub.subscriber(host)
    publisher = pubsub.publisher(host)
    outcomes = []
    try:
        for source in topology.sources.values():
            letters = _pull_all(client, project, source)
            futures = [(letter, publisher.publish(topic_path(project, source.topic), letter.data,
                                                  **letter.attributes)) for letter in letters]
            done, failed = [], []
            for letter, future in futures:
                try:
                    outcomes.append((letter, future.result(timeout=30)))
                    done.append(letter)
                except Exception as exc:  # noqa: BLE001 - reported per letter; it stays dead-lettered
                    outcomes.append((letter, f"not replayed: {type(exc).__name__}: {exc}"))
                    failed.append(letter)
            if done:
                client.acknowledge(subscription=subscription_path(project, source.dead_letter_subscription),
                                   ack_ids=[letter.ack_id for letter in done])
            _release(client, project, failed)
    finally:
        publisher.stop()
        pubsub.close(publisher)
        pubsub.close(client)
    return outcomes


def _release(client, project: str, letters: list[DeadLetter]) -> None:
    """Make leased letters pullable again at once."""
    by_source: dict[str, list[str]] = {}
    for letter in letters:
        by_source.setdefault(letter.source.dead_letter_subscription, []).append(letter.ack_id)
    for name, ack_ids in by_source.items():
        client.modify_ack_deadline(subscription=subscription_path(project, name), ack_ids=ack_ids,
                                   ack_deadline_seconds=0)
