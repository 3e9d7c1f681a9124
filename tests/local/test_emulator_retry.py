"""Why the local push subscriptions carry no retry policy (functions/local/pubsub.py): with
one, the Pub/Sub emulator strands messages when several back off at once. They are never
pushed again, nor dead-lettered, even once the endpoint answers 2xx. If this test fails, a
newer emulator has fixed that, and `pubsub.create` can apply infra's backoff."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from functions.local import pubsub
from functions.local.defaults import HOST
from functions.local.topology import subscription_path, topic_path
from tests.conftest import fresh_project
from tests.waiting import wait_for

pytestmark = pytest.mark.functional  # a real emulator pushing to a real endpoint on loopback

MESSAGES = 10
MAX_ATTEMPTS = 5  # the fewest Pub/Sub allows
QUIET_S = 5.0     # longer than the 1 s backoff plus the emulator's 1 s redelivery tick


class Endpoint:
    """Records each push by message data; answers 500 until `healthy`, then 204. Posts to
    /dead are the dead-letter topic's pushes."""

    def __init__(self):
        self.healthy = False
        self.pushes: list[tuple[float, str]] = []
        self.dead: set[str] = set()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                data = base64.b64decode(body["message"]["data"]).decode()
                with endpoint._lock:
                    if self.path == "/dead":
                        endpoint.dead.add(data)
                    else:
                        endpoint.pushes.append((time.monotonic(), data))
                self.send_response(204 if self.path == "/dead" or endpoint.healthy else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def quiet_for(self, seconds: float) -> bool:
        with self._lock:
            return bool(self.pushes) and time.monotonic() - self.pushes[-1][0] > seconds

    def pushed_since(self, moment: float) -> set[str]:
        with self._lock:
            return {data for at, data in self.pushes if at > moment}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_retry_policy_strands_messages_that_back_off_together(pubsub_emulator):
    from google.protobuf.duration_pb2 import Duration
    from google.pubsub_v1 import types
    project, endpoint = fresh_project(), Endpoint()
    topic, dead_topic = topic_path(project, "work"), topic_path(project, "work-dead-letter")
    publisher, subscriber = pubsub.publisher(pubsub_emulator.host), pubsub.subscriber(pubsub_emulator.host)
    try:
        for name in (topic, dead_topic):
            publisher.create_topic(name=name)
        subscriber.create_subscription(request=types.Subscription(
            name=subscription_path(project, "work-dead-letter"), topic=dead_topic,
            push_config=types.PushConfig(push_endpoint=endpoint.url + "/dead")))
        subscriber.create_subscription(request=types.Subscription(
            name=subscription_path(project, "work-push"), topic=topic, ack_deadline_seconds=10,
            push_config=types.PushConfig(push_endpoint=endpoint.url + "/push"),
            retry_policy=types.RetryPolicy(minimum_backoff=Duration(seconds=1), maximum_backoff=Duration(seconds=2)),
            dead_letter_policy=types.DeadLetterPolicy(dead_letter_topic=dead_topic,
                                                      max_delivery_attempts=MAX_ATTEMPTS)))
        sent = {f"m{i}" for i in range(MESSAGES)}
        for data in sorted(sent):
            publisher.publish(topic, data.encode()).result(timeout=30)
        # Backing off 1-2 s, every message is dead-lettered within ~15 s, or pushes stop.
        wait_for(lambda: endpoint.dead >= sent or endpoint.quiet_for(QUIET_S), timeout=30,
                 what="every message dead-lettered, or the pushes to stop")
        stranded = sent - endpoint.dead
        assert stranded, ("the emulator's retry policy dead-lettered every message: give the local push "
                          "subscriptions infra's backoff (functions/local/pubsub.py)")
        endpoint.healthy, healed_at = True, time.monotonic()
        time.sleep(QUIET_S)
        assert not stranded & endpoint.pushed_since(healed_at), "stranded messages were pushed again"
        assert not stranded & endpoint.dead, "stranded messages were dead-lettered after all"
    finally:
        publisher.stop()
        pubsub.close(publisher)
        pubsub.close(subscriber)
        endpoint.close()
