"""Reliability and security tests: the real server (gunicorn) and the real local stack on
loopback, under hostile input, injected faults, duplicates and bursts.

Session fixtures: `emulator` (fake-gcs-server), `store` (uploads straight to it), `proxy`
(a recording proxy the server reads the emulator through), `listener` (a loopback port
nothing may ever connect to), and `server` (the combined server, reading via the proxy).
Each test prints its figures as `RELIABILITY name: ...` lines; they are repeated at the
end of the run (docs/reliability.md quotes them).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from functions.local import gcs
from functions.local.emulator import GcsEmulator, free_port
from tests.reliability._support import (
    ALLOWED_BUCKET,
    FIGURES,
    PRIVATE_BUCKET,
    PROJECT,
    SERVER_LIMITS,
    FaultProxy,
    Listener,
    ServerProcess,
    Store,
    clean_env,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "burst: the 2,000-upload burst through the local stack (-m burst)")
    config.addinivalue_line("markers", "reliability: hostile inputs, faults, duplicates, load and security")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.functional)  # real servers on loopback


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability-gcs")
    emu = GcsEmulator(root / "data", port=free_port(), log_path=root / "emulator.log").start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def store(emulator) -> Store:
    gcs.ensure_buckets(emulator.url, [ALLOWED_BUCKET, PRIVATE_BUCKET])
    return Store(emulator.url)


@pytest.fixture(scope="session")
def proxy(emulator):
    running = FaultProxy(emulator.port)
    yield running
    running.close()


@pytest.fixture(scope="session")
def listener():
    running = Listener()
    yield running
    running.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory, store, proxy) -> ServerProcess:
    """The combined server (python main.py serve), reading the emulator through the proxy."""
    env = clean_env({"STORAGE_EMULATOR_HOST": proxy.url, "ALLOWED_BUCKETS": ALLOWED_BUCKET,
                     "GOOGLE_CLOUD_PROJECT": PROJECT, "FETCH_TIMEOUT_S": 10, **SERVER_LIMITS})
    running = ServerProcess("reliability-server", tmp_path_factory.mktemp("server"), env).start()
    yield running
    running.stop()

