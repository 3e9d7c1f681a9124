"""The Pub/Sub topology infra/ deploys, read from infra/delivery.json (tests/infra checks
that infra/pubsub.tf and the variables' defaults say the same): for each source (uploads: bucket notifications; requests: published work) a
topic, a push subscription to the service's route with retry and dead-letter policy, a
dead-letter topic and the pull subscription that keeps what reaches it. Names follow
infra/pubsub.tf: SERVICE-SOURCE, SERVICE-SOURCE-push, SERVICE-SOURCE-dead-letter."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

DELIVERY_FILE = Path(__file__).resolve().parents[2] / "infra" / "delivery.json"


@dataclass(frozen=True)
class Retry:
    """A push subscription's delivery settings (infra's variables of the same names). The
    backoff is infra's; the local stack cannot apply it (see pubsub.create)."""
    ack_deadline_s: int
    minimum_backoff_s: float
    maximum_backoff_s: float
    max_delivery_attempts: int


@dataclass(frozen=True)
class Source:
    name: str            # "uploads" | "requests"
    route: str           # the service's route the push subscription posts to
    topic: str           # short names; full paths come from Topology.path
    push_subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str


@dataclass(frozen=True)
class Topology:
    sources: dict[str, Source]
    retry: Retry
    dead_letter_ack_deadline_s: int
    skip_prefixes: tuple[str, ...]

    @property
    def uploads(self) -> Source:
        return self.sources["uploads"]

    @property
    def requests(self) -> Source:
        return self.sources["requests"]

    def with_retry(self, **changes) -> Topology:
        """The same topology with other delivery settings (tests shorten the backoff)."""
        return replace(self, retry=replace(self.retry, **changes))

    def source_of_push_subscription(self, short_name: str) -> Source | None:
        return next((s for s in self.sources.values() if s.push_subscription == short_name), None)


def load(path: Path = DELIVERY_FILE) -> Topology:
    spec = json.loads(Path(path).read_text())
    service = spec["service_name"]
    sources = {name: Source(name, item["route"], f"{service}-{name}", f"{service}-{name}-push",
                            f"{service}-{name}-dead-letter", f"{service}-{name}-dead-letter")
               for name, item in spec["sources"].items()}
    push = spec["push"]
    retry = Retry(push["ack_deadline_seconds"], push["retry_minimum_backoff_seconds"],
                  push["retry_maximum_backoff_seconds"], push["max_delivery_attempts"])
    return Topology(sources, retry, spec["dead_letter"]["ack_deadline_seconds"], tuple(spec["skip_prefixes"]))


def topic_path(project: str, name: str) -> str:
    return f"projects/{project}/topics/{name}"


def subscription_path(project: str, name: str) -> str:
    return f"projects/{project}/subscriptions/{name}"
