"""Google's Pub/Sub emulator (`gcloud beta emulators pubsub start`, Java) as a child
process on loopback. `python -m functions.local.pubsub_emulator` checks that it is
installed (make demo / make test run it first): one line and exit 1 when it is not."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from functions.console.errors import CommandError
from functions.local.probe import answers

PACKAGE = "google-cloud-cli-pubsub-emulator"


def missing() -> str | None:
    """Why the emulator cannot run here, naming what to install; None when it can."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return f"the Pub/Sub emulator is not installed: install the Debian package {PACKAGE} (it brings gcloud)"
    if not (Path(os.path.realpath(gcloud)).parents[1] / "platform" / "pubsub-emulator").is_dir():
        return f"gcloud's Pub/Sub emulator is not installed: install the Debian package {PACKAGE}"
    if shutil.which("java") is None:
        return "the Pub/Sub emulator needs Java 17 or newer: install the Debian package default-jre-headless"
    return None


class PubSubEmulator:
    """start() / stop(); `host` is the PUBSUB_EMULATOR_HOST value."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int, log_path: Path | None = None):
        self.data_dir = Path(data_dir)
        self.host = f"{host}:{port}"
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> PubSubEmulator:
        problem = missing()
        if problem:
            raise CommandError(problem)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            # Its own process group: gcloud starts java as a child, and stop() ends both.
            self._process = subprocess.Popen(
                ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={self.host}",
                 f"--data-dir={self.data_dir}", "--quiet"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log_path:
                log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise CommandError(f"the Pub/Sub emulator exited with code {code} while starting"
                                 + (f"; see {self.log_path}" if self.log_path else ""))
            if reachable(self.host):
                return
            time.sleep(0.1)
        self.stop()
        raise CommandError(f"the Pub/Sub emulator did not answer on {self.host} within {timeout_s:.0f} s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        # gcloud may be gone while java still runs in the group: end whatever is left.
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def reachable(host: str, timeout_s: float = 1.0) -> bool:
    return answers(f"http://{host}/", timeout_s)


if __name__ == "__main__":
    problem = missing()
    if problem:
        print(f"bucketeye: {problem}", file=sys.stderr)
        sys.exit(1)
