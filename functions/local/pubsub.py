"""google-cloud-pubsub against the Pub/Sub emulator: clients on an insecure loopback
channel (as PUBSUB_EMULATOR_HOST would give, without changing this process's
environment), and the topology of infra/ created on the emulator."""
from __future__ import annotations

from functions.local.topology import Topology, subscription_path, topic_path


def publisher(host: str, **options):
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)), **options)


def subscriber(host: str):
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def close(client) -> None:
    client.transport.close()


def create(topology: Topology, *, host: str, project: str, push_url: str) -> None:
    """Topics, dead-letter topics with their pull subscriptions, and push subscriptions to
    `push_url` + each source's route, with infra's ack deadline and dead-letter policy.
    Anything already there (a stack restarted on a running emulator) is replaced.

    No retry policy: with one, the emulator (0.8.20, gcloud 528.0.0) strands messages that
    back off together. Two messages due again in the same millisecond share one entry of its
    backoff table; it then no longer finds either as waiting and files them again under later
    times, and when a stale entry comes due its redelivery timer fails and stops for good.
    From then on a message of that subscription whose push fails twice is neither pushed
    again nor dead-lettered, even once the endpoint answers 2xx (20 messages, backoff
    10-600 s, pushes failing for 40 s: none pushed after 15 s, through 100 s).
    tests/local/test_emulator_retry.py shows it. Without a retry policy the emulator pushes
    a failed message again after about 1.1 s and dead-letters it after max_delivery_attempts
    (20 messages, 10 attempts: all dead-lettered at 11 s): an outage longer than that parks
    messages on the dead-letter topic (replay-dead-letters), it does not lose them."""
    from google.api_core.exceptions import AlreadyExists
    from google.pubsub_v1 import types
    topics, subs = publisher(host), subscriber(host)
    try:
        for source in topology.sources.values():
            for name in (source.topic, source.dead_letter_topic):
                try:
                    topics.create_topic(name=topic_path(project, name))
                except AlreadyExists:
                    pass
            keep = types.Subscription(name=subscription_path(project, source.dead_letter_subscription),
                                      topic=topic_path(project, source.dead_letter_topic),
                                      ack_deadline_seconds=topology.dead_letter_ack_deadline_s)
            retry = topology.retry
            push = types.Subscription(
                name=subscription_path(project, source.push_subscription), topic=topic_path(project, source.topic),
                ack_deadline_seconds=retry.ack_deadline_s,
                push_config=types.PushConfig(push_endpoint=push_url.rstrip("/") + source.route),
                dead_letter_policy=types.DeadLetterPolicy(
                    dead_letter_topic=topic_path(project, source.dead_letter_topic),
                    max_delivery_attempts=retry.max_delivery_attempts))
            for subscription in (keep, push):
                delete_subscription(subs, subscription.name)
                subs.create_subscription(request=subscription)
    finally:
        close(topics)
        close(subs)


def publish(host: str, topic: str, data: bytes, attributes: dict | None = None, *, timeout_s: float = 30.0) -> str:
    """Publish one message and wait for its id."""
    client = publisher(host)
    try:
        return client.publish(topic, data, **(attributes or {})).result(timeout=timeout_s)
    finally:
        client.stop()
        close(client)


def delete_push_subscriptions(topology: Topology, *, host: str, project: str) -> None:
    """A stopped stack's push subscriptions, so a shared emulator pushes nothing more to its port."""
    subs = subscriber(host)
    try:
        for source in topology.sources.values():
            delete_subscription(subs, subscription_path(project, source.push_subscription))
    finally:
        close(subs)


def delete_subscription(subs, name: str) -> None:
    """Delete the subscription `name` if it exists."""
    from google.api_core.exceptions import NotFound
    try:
        subs.delete_subscription(subscription=name)
    except NotFound:
        pass
