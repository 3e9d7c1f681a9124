"""The one local state directory (.state/ in the repo unless --state-dir or
BUCKETEYE_STATE_DIR says otherwise): every file the local stack keeps, by name, the
lock that makes one stack per directory, and the running stack's address card."""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from functions.console.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "BUCKETEYE_STATE_DIR"


def resolve(path: str | os.PathLike | None = None) -> StateDir:
    chosen = path or os.environ.get(ENV_VAR) or REPO / ".state"
    return StateDir(Path(chosen).expanduser().absolute())


@dataclass(frozen=True)
class StateDir:
    root: Path

    gcs = property(lambda self: self.root / "gcs")                       # fake-gcs-server's working directory
    tls = property(lambda self: self.root / "tls")                       # the GCS emulator's certificate and key
    logs = property(lambda self: self.root / "logs")                     # emulator, server and stack logs
    warehouse = property(lambda self: self.root / "bucketeye.duckdb")    # the local BigQuery dataset
    sink_backlog = property(lambda self: self.root / "sink-backlog.jsonl")
    stack_info = property(lambda self: self.root / "stack.json")
    lock_path = property(lambda self: self.root / "stack.lock")

    def ensure(self) -> StateDir:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def running_stack(self) -> dict | None:
        """The running stack's card (urls, buckets, pid), or None when no stack holds the lock."""
        if not self.lock_path.exists():
            return None
        with open(self.lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return read_json(self.stack_info) or {}
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None


class StackLock:
    """One stack per state directory: an flock held for the stack's lifetime."""

    def __init__(self, state: StateDir):
        self.state = state
        self._handle = None

    def acquire(self) -> None:
        self.state.ensure()
        handle = open(self.state.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            info = read_json(self.state.stack_info) or {}
            pid = f" (pid {info['pid']})" if info.get("pid") else ""
            raise CommandError(f"a local stack is already running on {self.state.root}{pid}: stop it with "
                               "`python main.py down` or Ctrl-C, or use another --state-dir") from None
        self._handle = handle

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file, fsync, rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes it owner-only
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
