"""The checkpoint: where an interrupted backfill continues, and what it did so far.

One JSON file per (bucket, prefix, model id, destination) in the checkpoint directory,
named by a hash of those, rewritten atomically (temporary file, fsync, rename) after
every page whose messages were all published. A page is therefore either wholly
before the checkpoint (published) or wholly after it (listed again on resume).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from functions.local.statedir import read_json, write_json_atomic

VERSION = 1


@dataclass
class Counts:
    listed: int = 0        # objects listed
    images: int = 0        # of those, images (content type or extension)
    skipped: int = 0       # images that already have a result for the model
    published: int = 0     # images named in a published message
    messages: int = 0      # messages published
    failed: int = 0        # images whose message could not be published

    def add(self, other: Counts) -> None:
        for name in asdict(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def not_images(self) -> int:
        return self.listed - self.images


@dataclass
class Checkpoint:
    bucket: str
    prefix: str
    model_id: str
    destination: str
    after: str = ""                   # the last object name of the last finished page
    pages: int = 0
    counts: Counts = field(default_factory=Counts)
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished: bool = False
    version: int = VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Checkpoint:
        data = dict(data)
        data["counts"] = Counts(**data.get("counts", {}))
        return cls(**data)


def key(bucket: str, prefix: str, model_id: str, destination: str) -> str:
    return hashlib.sha256("\n".join((bucket, prefix, model_id, destination)).encode()).hexdigest()[:20]


class CheckpointFile:
    def __init__(self, directory: Path, bucket: str, prefix: str, model_id: str, destination: str):
        self.identity = (bucket, prefix, model_id, destination)
        self.path = Path(directory) / f"{key(*self.identity)}.json"

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, when there is one for exactly this run (else None)."""
        data = read_json(self.path)
        if not data or data.get("version") != VERSION:
            return None
        try:
            saved = Checkpoint.from_json(data)
        except TypeError:
            return None
        if (saved.bucket, saved.prefix, saved.model_id, saved.destination) != self.identity:
            return None
        return saved

    def fresh(self) -> Checkpoint:
        return Checkpoint(*self.identity)

    def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.updated_at = time.time()
        write_json_atomic(self.path, checkpoint.to_json())
