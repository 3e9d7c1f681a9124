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
