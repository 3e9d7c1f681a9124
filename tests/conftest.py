"""Fixtures shared across test folders: one Google Pub/Sub emulator for the whole session
(it is Java: starting it costs seconds), which every in-process local stack uses in a
project of its own; a GCS emulator and a headless Chromium per test module."""
from __future__ import annotations

import itertools
import os

import pytest

from functions.local.emulator import GcsEmulator, free_port
from functions.local.pubsub_emulator import PubSubEmulator, missing
from tests.browser import Browser
from tests.browser import missing as browser_missing

_projects = itertools.count(1)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory):
    problem = missing()
    if problem:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("pubsub-emulator")
    with PubSubEmulator(port=free_port(), log_path=root / "emulator.log") as running:
        yield running


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A Cloud Storage emulator (fake-gcs-server) for one test module. The functional and
    reliability suites share one for the whole session instead (their own conftest.py)."""
    root = tmp_path_factory.mktemp("gcs")
    with GcsEmulator(root / "data", log_path=root / "emulator.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium for one test module (closing it ends its renderers and helpers)."""
    problem = browser_missing()
    if problem:
        pytest.skip(f"the browser is missing: {problem}")
    running = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield running
    running.close()


def fresh_project() -> str:
    """A project id no other stack of this session uses (topic names repeat per project)."""
    return f"test-{os.getpid()}-{next(_projects)}"
