"""The one launcher of the functions server as a child process, for the local stack, the
tests and the benchmarks (serving never imports it): the command (`python main.py serve` or
one functions-framework target), its environment, where its output goes, readiness, and a
graceful stop. `FunctionsServer` is the stack's server: loopback, pointed at the emulator,
stdout piped to the sink and stderr to a log."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import requests

from functions.console.errors import CommandError
from functions.local.defaults import PROJECT
from functions.routes import HEALTH_ROUTE

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
Output = Path | int  # a file (appended to) or subprocess.PIPE / subprocess.DEVNULL


class ServerExited(RuntimeError):
    """The server exited before it was ready (a port taken meanwhile, a bad setting)."""


class ServerNotReady(RuntimeError):
    """The server ran but did not pass its readiness probe in time."""


def server_command(host: str, port: int, *, target: str | None = None, signature_type: str = "http") -> list[str]:
    """`main.py serve` (every route, target None) or functions-framework serving one target."""
    if target is None:
        return [sys.executable, str(MAIN), "serve", "--host", host, "--port", str(port)]
    return [sys.executable, "-m", "functions_framework", "--target", target, "--signature-type", signature_type,
            "--source", str(MAIN), "--host", host, "--port", str(port)]


def server_env(extra: Mapping | None = None, *, drop: Iterable[str] = ()) -> dict:
    """This process's environment less `drop`, unbuffered output, then `extra` (wins)."""
    dropped = set(drop)
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["PYTHONUNBUFFERED"] = "1"  # result lines reach a pipe or file as they are printed
    env.update({key: str(value) for key, value in (extra or {}).items()})
    return env


class ServerProcess:
    """One server process: start, wait until a probe says ready, stop."""

    def __init__(self, *, port: int, env: Mapping, host: str = "127.0.0.1", target: str | None = None,
                 signature_type: str = "http", stdout: Output = subprocess.DEVNULL,
                 stderr: Output = subprocess.DEVNULL, name: str = "the functions server", new_session: bool = True):
        self.host, self.port, self.name = host, port, name
        self.target, self.signature_type = target, signature_type
        self.env = dict(env)
        self.stdout, self.stderr = stdout, stderr
        # Its own session: a terminal's Ctrl-C reaches only the caller, which stops the server in
        # its own order; the caller's group instead when a signal to it must stop the server too.
        self.new_session = new_session
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> subprocess.Popen:
        self.started = time.perf_counter()
        with contextlib.ExitStack() as files:  # the child keeps its own copies of these
            out, err = (_opened(files, output) for output in (self.stdout, self.stderr))
            argv = server_command(self.host, self.port, target=self.target, signature_type=self.signature_type)
            self.process = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, start_new_session=self.new_session)
        return self.process

    def wait_ready(self, probe: str, ready: Callable[[requests.Response], bool], timeout: float,
                   *, interval: float = 0.1) -> requests.Response:
        """GET `probe` until `ready(response)` is true and return that response; `ready` may
        raise to give up at once. Fails with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerExited(f"{self.name} exited with code {self.process.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            try:
                response = requests.get(self.url + probe, timeout=2)
                if ready(response):
                    return response
            except (requests.RequestException, ValueError):  # not listening yet, or a body that is not JSON
                pass
            time.sleep(interval)
        raise ServerNotReady(f"{self.name} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (gunicorn lets requests in progress finish), then SIGKILL after `timeout`."""
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if self.new_session:
                os.killpg(self.process.pid, signal.SIGKILL)  # the workers too, in the server's own group
            else:
                self.process.kill()  # an orphaned gunicorn worker notices and exits by itself
            self.process.wait()

    def log_tail(self, size: int = 4000) -> str:
        """The end of stderr (where the server logs) when it goes to a file."""
        if not isinstance(self.stderr, Path):
            return ""
        try:
            return self.stderr.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def _opened(files: contextlib.ExitStack, output: Output):
    """A Path opened for appending (its folder made), or a subprocess constant as is."""
    if not isinstance(output, Path):
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    return files.enter_context(open(output, "ab"))


class FunctionsServer(ServerProcess):
    """The local stack's server: loopback, pointed at the emulator, stdout to the sink.
    `ca_bundle`: over https, the usual CA roots plus the emulator's certificate."""

    def __init__(self, *, host: str, port: int, gcs_url: str, buckets, log_path: Path, extra_env: dict | None = None,
                 ca_bundle: Path | None = None):
        trust = {"REQUESTS_CA_BUNDLE": str(ca_bundle)} if ca_bundle else {}
        env = server_env({"STORAGE_EMULATOR_HOST": gcs_url, "ALLOWED_BUCKETS": ",".join(buckets),
                          "GOOGLE_CLOUD_PROJECT": PROJECT, **trust, **(extra_env or {})}, drop=("PORT",))
        super().__init__(host=host, port=port, env=env, stdout=subprocess.PIPE, stderr=Path(log_path))
        self.log_path = Path(log_path)

    def wait_healthy(self, timeout_s: float = 600.0, on_wait=None) -> dict:
        """Block until GET /health answers 200 (the model is loaded)."""
        body: dict = {}

        def healthy(response: requests.Response) -> bool:
            is_json = response.headers.get("content-type", "").startswith("application/json")
            body.clear()
            body.update(response.json() if is_json else {})
            if response.status_code == 200:
                return True
            if body.get("status") == "failed":
                raise CommandError(f"the functions server cannot load the model: {body.get('error')}")
            if on_wait:
                on_wait(body.get("status", str(response.status_code)))
            return False

        try:
            self.wait_ready(HEALTH_ROUTE, healthy, timeout_s)
        except ServerExited:
            raise CommandError(f"the functions server exited with code {self.process.returncode} while starting; "
                               f"see {self.log_path}:\n{self.log_tail()}") from None
        except ServerNotReady:
            raise CommandError(f"the functions server was not healthy within {timeout_s:.0f} s; "
                               f"see {self.log_path}") from None
        return body
