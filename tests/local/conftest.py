"""Shared pieces for the local-stack tests: free loopback ports, a tmp state directory,
the CLI as a subprocess, a real GCS emulator."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from functions.local.statedir import StateDir

REPO = Path(__file__).resolve().parents[2]
PHOTOS = Path(importlib.util.find_spec("skimage").origin).parent / "data"  # real photos for the tests


def run_cli(*args, state: StateDir, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args), "--state-dir", str(state.root)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture()
def state(tmp_path) -> StateDir:
    return StateDir(tmp_path / "state").ensure()

