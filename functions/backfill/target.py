"""The command's argument: gs://BUCKET or gs://BUCKET/PREFIX."""
from __future__ import annotations

import re
from dataclasses import dataclass

from functions.console.errors import EXIT_USAGE, CommandError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str = ""

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket}/{name}"

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


def parse_target(text: str) -> Target:
    """gs://bucket[/prefix] -> Target; the prefix is taken as given (no trailing slash added)."""
    if not text.lower().startswith("gs://"):
        raise CommandError(f"not a gs:// bucket or prefix: {text!r} (e.g. gs://my-bucket/photos/)", EXIT_USAGE)
    bucket, _, prefix = text[5:].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise CommandError(f"{bucket!r} is not a bucket name", EXIT_USAGE)
    return Target(bucket, prefix)
