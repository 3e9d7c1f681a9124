"""`serve` listens on loopback unless it runs on Cloud Run (K_SERVICE) or is told otherwise:
the real command is started and the kernel's table of listening sockets is read."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from functions.local.emulator import free_port
from shared.config import SETTINGS

REPO = Path(__file__).resolve().parents[2]
LISTEN = "0A"


def _listening_address(port: int) -> str | None:
    """The local address a socket listens on at `port` (IPv4), as /proc/net/tcp spells it."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == LISTEN:
            return address
    return None


@pytest.mark.parametrize("extra, argv, expected", [
    ({}, [], "0100007F"),                           # 127.0.0.1
    ({"K_SERVICE": "bucketeye"}, [], "00000000"),   # 0.0.0.0 on Cloud Run
    ({}, ["--host", "0.0.0.0"], "00000000"),        # told otherwise
])
def test_serve_binds_loopback_unless_on_cloud_run_or_told(extra, argv, expected):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "K_SERVICE"} | extra
    process = subprocess.Popen([sys.executable, "main.py", "serve", "--port", str(port), *argv], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, address = time.monotonic() + 60, None
        while address is None and time.monotonic() < deadline and process.poll() is None:
            address = _listening_address(port)
            time.sleep(0.1)
        assert address == expected
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_the_server_uses_only_public_functions_framework_apis():
    """A private module (functions_framework._http) may change in any minor release."""
    import ast
    tree = ast.parse((REPO / "functions" / "server.py").read_text(encoding="utf-8"))
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and any(part.startswith("_") for part in m.split(".")[1:])]


def test_gunicorn_gets_functions_framework_settings_and_a_bounded_request_line():
    from functions.server import LIMIT_REQUEST_LINE, gunicorn_options
    options = gunicorn_options("127.0.0.1", 8080, {"WORKERS": "3", "THREADS": "5"})
    assert options == {"bind": "127.0.0.1:8080", "workers": 3, "threads": 5, "timeout": 0, "loglevel": "error",
                       "limit_request_line": LIMIT_REQUEST_LINE}
    assert 0 < LIMIT_REQUEST_LINE < 65536
