"""Names the functional test modules import: the buckets, ids and event types the servers
are set up with, and small time/id helpers. The fixtures (servers, logs, emulator,
event builders) live in conftest.py; this module exists because test modules cannot
reliably `from conftest import` while tests/unit has a conftest.py of its own."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

ALLOWED_BUCKET = "photos"     # on ALLOWED_BUCKETS
PRIVATE_BUCKET = "private"    # exists in the emulator, not on the allow-list
SKIP_PREFIX = "thumbnails/"   # SKIP_PREFIXES
PROJECT = "demo"              # GOOGLE_CLOUD_PROJECT, for trace names

CAT_IDS = range(281, 286)     # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_IDS = (967, 968)       # espresso, cup

FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


def rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
