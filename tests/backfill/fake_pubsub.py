"""A fake Pub/Sub Publisher service on loopback: a real gRPC server implementing
google.pubsub.v1.Publisher's Publish and GetTopic with a generic handler and the
request/response messages shipped in google-cloud-pubsub. It records what it receives,
so tests can read exactly what the real PublisherClient sent over the wire."""
from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.pubsub_v1 import types

SERVICE = "google.pubsub.v1.Publisher"


@dataclass
class Received:
    topic: str
    data: bytes
    attributes: dict
    message_id: str

    @property
    def uris(self) -> list[str]:
        return json.loads(self.data)["uris"]


class FakePublisher:
    def __init__(self, topics=("projects/p/topics/bucketeye-requests",)):
        self.topics = set(topics)
        self.requests: list[list[Received]] = []   # one list per Publish call
        self.fail_with: grpc.StatusCode | None = None
        self._lock = threading.Lock()
        self._next_id = 1
        handlers = {
            "Publish": grpc.unary_unary_rpc_method_handler(
                self._publish, request_deserializer=types.PublishRequest.deserialize,
                response_serializer=types.PublishResponse.serialize),
            "GetTopic": grpc.unary_unary_rpc_method_handler(
                self._get_topic, request_deserializer=types.GetTopicRequest.deserialize,
                response_serializer=types.Topic.serialize),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    def start(self) -> "FakePublisher":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)

    def _publish(self, request, context):
        if self.fail_with is not None:
            context.abort(self.fail_with, "injected failure")
        if request.topic not in self.topics:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={request.topic.split('/')[-1]}).")
        with self._lock:
            batch, ids = [], []
            for message in request.messages:
                message_id = str(self._next_id)
                self._next_id += 1
                batch.append(Received(request.topic, bytes(message.data), dict(message.attributes), message_id))
                ids.append(message_id)
            self.requests.append(batch)
        return types.PublishResponse(message_ids=ids)

    def _get_topic(self, request, context):
        if request.topic not in self.topics:
            context.abort(grpc.StatusCode.NOT_FOUND, "Resource not found")
        return types.Topic(name=request.topic)

    # -- what tests read ---------------------------------------------------------------
    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return [m for batch in self.requests for m in batch]

    def uris(self) -> list[str]:
        return [uri for m in self.messages for uri in m.uris]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
