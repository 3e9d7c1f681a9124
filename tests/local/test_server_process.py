"""The one launcher of the functions server (functions/local/server_process.py), with the
real server: what it starts, with which environment, how it reports a server that fails to
start or to get ready, and that a stop that runs out of patience ends the whole group."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bench.cpu import children
from functions.local.emulator import free_port
from functions.local.server_process import ServerExited, ServerNotReady, ServerProcess, server_env
from tests.waiting import wait_for

HOST = "127.0.0.1"


def test_extra_env_wins_and_dropped_settings_stay_out(monkeypatch):
    monkeypatch.setenv("TOP_K", "7")
    monkeypatch.setenv("WORKERS", "4")
    env = server_env({"TOP_K": 3, "ALLOWED_BUCKETS": "photos"}, drop={"WORKERS", "TOP_K"})
    assert env["TOP_K"] == "3" and env["ALLOWED_BUCKETS"] == "photos"
    assert "WORKERS" not in env
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_a_server_that_exits_while_starting_fails_with_its_log_tail(tmp_path):
    server = ServerProcess(port=free_port(HOST), env=server_env(), host=HOST, target="no_such_target",
                           stdout=tmp_path / "out.log", stderr=tmp_path / "err.log", name="the lone target")
    server.start()
    with pytest.raises(ServerExited) as failed:
        server.wait_ready("/", lambda response: True, timeout=60)
    message = str(failed.value)
    assert message.startswith("the lone target exited with code")
    assert "no_such_target" in message  # functions-framework's own words, from stderr


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # ended, waiting to be reaped by whoever adopted it


def test_not_ready_in_time_names_the_timeout_and_a_stop_out_of_patience_ends_the_group(tmp_path):
    server = ServerProcess(port=free_port(HOST), env=server_env(), host=HOST, stdout=tmp_path / "out.log",
                           stderr=tmp_path / "err.log")
    workers: list[int] = []
    server.start()
    try:
        with pytest.raises(ServerNotReady, match="the functions server was not ready within 1 s"):
            server.wait_ready("/healthz", lambda response: False, timeout=1)
        answer = server.wait_ready("/healthz", lambda response: response.status_code == 200, timeout=120)
        assert answer.json()["status"] == "ready"
        workers = children(server.pid)
        assert workers, "gunicorn's worker"
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # a stuck worker: it neither stops gracefully nor notices its master go
        server.stop(timeout=1)
        assert not server.alive()
        wait_for(lambda: all(_gone(pid) for pid in workers), timeout=10, what="the stuck worker to be killed too")
    finally:
        server.stop(timeout=1)
        for pid in workers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
