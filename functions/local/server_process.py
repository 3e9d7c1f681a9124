"""The functions server (`python main.py serve`) as a child process of the stack, on
loopback, pointed at the emulator; its stdout goes to the sink, its stderr to a log."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from functions.local.defaults import PROJECT
from functions.local.errors import LocalError
from functions.routes import HEALTH_ROUTE

MAIN = Path(__file__).resolve().parents[2] / "main.py"


class FunctionsServer:
    def __init__(self, *, host: str, port: int, gcs_url: str, buckets, log_path: Path, extra_env: dict | None = None):
        self.host, self.port = host, port
        self.log_path = Path(log_path)
        self.env = dict(os.environ, STORAGE_EMULATOR_HOST=gcs_url, ALLOWED_BUCKETS=",".join(buckets),
                        GOOGLE_CLOUD_PROJECT=PROJECT, PYTHONUNBUFFERED="1")
        # extra_env overrides the above (it was passed as more keywords: an overlap raised TypeError)
        self.env.update(extra_env or {})
        self.env.pop("PORT", None)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C in the terminal reaches the stack, which stops the
            # server after the emulators, so nothing is cut off mid-delivery.
            self.process = subprocess.Popen(
                [sys.executable, str(MAIN), "serve", "--host", self.host, "--port", str(self.port)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
                cwd=str(MAIN.parent), start_new_session=True)
        return self.process

    def wait_healthy(self, timeout_s: float = 600.0, on_wait=None) -> dict:
        """Block until GET /health answers 200 (the model is loaded)."""
        deadline = time.monotonic() + timeout_s
        session = requests.Session()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalError(f"the functions server exited with code {self.process.returncode} while starting; "
                                 f"see {self.log_path}:\n{self.log_tail()}")
            try:
                response = session.get(self.url + HEALTH_ROUTE, timeout=2)
                body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                if response.status_code == 200:
                    return body
                if body.get("status") == "failed":
                    raise LocalError(f"the functions server cannot load the model: {body.get('error')}")
                if on_wait:
                    on_wait(body.get("status", str(response.status_code)))
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise LocalError(f"the functions server was not healthy within {timeout_s:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful, requests in progress finish
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker too, in the server's own group
                self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
