"""Where work messages go: the requests topic, in the cloud or on the local stack's
Pub/Sub emulator (whose push subscription delivers them to the local server).

publish(messages) returns only when every message of the call has been accepted or
has failed: the runner checkpoints a page only after all its messages are out.
"""
from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass, field

from functions.backfill.messages import ATTRIBUTES
from functions.console.errors import EXIT_USAGE, CommandError

# Client-side batching: many messages per Publish call; flow control bounds what waits in memory.
MAX_MESSAGES_PER_REQUEST = 100
MAX_BYTES_PER_REQUEST = 1_000_000
MAX_LATENCY_S = 0.05
MAX_OUTSTANDING_MESSAGES = 1000
MAX_OUTSTANDING_BYTES = 10_000_000
PUBLISH_TIMEOUT_S = 300.0


@dataclass
class Outcome:
    published: int                 # messages accepted
    failed_uris: int = 0           # URIs in the messages that failed
    failures: list[str] = field(default_factory=list)  # one line per message that failed


def topic_path(topic: str, project: str | None) -> str:
    """projects/P/topics/T as given, or a bare topic name completed with the project."""
    if topic.startswith("projects/"):
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] != "topics" or not parts[1] or not parts[3]:
            raise CommandError(f"--topic {topic!r}: expected projects/PROJECT/topics/TOPIC", EXIT_USAGE)
        return topic
    if not project:
        raise CommandError(f"--topic {topic!r} names no project: give projects/PROJECT/topics/{topic}", EXIT_USAGE)
    return f"projects/{project}/topics/{topic}"


class PubSubPublisher:
    """google-cloud-pubsub's PublisherClient; `emulator_host`: the local stack's Pub/Sub
    emulator (PUBSUB_EMULATOR_HOST, when set, is honoured by the client too)."""

    def __init__(self, topic: str, *, emulator_host: str | None = None):
        self.topic = topic
        self.description = topic
        self.emulator_host = emulator_host
        self._client = None

    def client(self):
        if self._client is None:
            from google.cloud import pubsub_v1
            from google.cloud.pubsub_v1.types import (
                BatchSettings,
                LimitExceededBehavior,
                PublisherOptions,
                PublishFlowControl,
            )
            options = dict(
                batch_settings=BatchSettings(max_bytes=MAX_BYTES_PER_REQUEST, max_latency=MAX_LATENCY_S,
                                             max_messages=MAX_MESSAGES_PER_REQUEST),
                publisher_options=PublisherOptions(flow_control=PublishFlowControl(
                    message_limit=MAX_OUTSTANDING_MESSAGES, byte_limit=MAX_OUTSTANDING_BYTES,
                    limit_exceeded_behavior=LimitExceededBehavior.BLOCK)))
            if self.emulator_host:
                from functions.local import pubsub
                self._client = pubsub.publisher(self.emulator_host, **options)
            else:
                self._client = pubsub_v1.PublisherClient(**options)
        return self._client

    def publish(self, messages: list[tuple[list[str], bytes]]) -> Outcome:
        client = self.client()
        futures = {client.publish(self.topic, data, **ATTRIBUTES): uris for uris, data in messages}
        outcome = Outcome(0)
        done, pending = concurrent.futures.wait(futures, timeout=PUBLISH_TIMEOUT_S)
        for future in list(done) + list(pending):
            uris = futures[future]
            if future in done:
                error = future.exception(timeout=0)
            else:
                error = TimeoutError(f"no answer in {PUBLISH_TIMEOUT_S:.0f} s")
            if error is None:
                outcome.published += 1
            else:
                outcome.failed_uris += len(uris)
                outcome.failures.append(f"{len(uris)} URIs from {uris[0]}: {_describe(error)}")
        return outcome

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()  # sends what is still batched, then stops the batching threads
            self._client.transport.close()


def _describe(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return f"{type(error).__name__}: {message}"


def describe_message(uris: list[str], data: bytes) -> str:
    return json.dumps({"data": json.loads(data), "attributes": ATTRIBUTES})
