"""Shared pieces for the local-stack tests: free loopback ports, a tmp state directory,
the CLI as a subprocess, a real GCS emulator."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from functions.local.statedir import StateDir

REPO = Path(__file__).resolve().parents[2]
PHOTOS = Path(importlib.util.find_spec("skimage").origin).parent / "data"  # real photos for the tests


def run_cli(*args, state: StateDir, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args), "--state-dir", str(state.root)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture()
def state(tmp_path) -> StateDir:
    return StateDir(tmp_path / "state").ensure()

