"""Google's Pub/Sub emulator (gcloud's `pubsub-emulator` component, Java) as a child
process on loopback. `python -m functions.local.pubsub_emulator` checks that it is
installed (make demo / make test run it first): one line and exit 1 when it is not.

It is started through its own launcher, the one `gcloud beta emulators pubsub start`
runs, because only that takes `--projects`: the emulator then refuses every other
project. It answers any web origin (CORS) with no other check, so a stack's project id
is random (`secret_project_id`): a web page that cannot read the stack's card cannot name
a topic or subscription, so it cannot publish, pull or add a push subscription."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

from functions.console.errors import CommandError
from functions.local.probe import answers

PACKAGE = "google-cloud-cli-pubsub-emulator"


def launcher() -> Path | None:
    """The emulator's own start script inside gcloud's installation, if installed."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    path = Path(os.path.realpath(gcloud)).parents[1] / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return path if path.is_file() else None


def missing() -> str | None:
    """Why the emulator cannot run here, naming what to install; None when it can."""
    if shutil.which("gcloud") is None:
        return f"the Pub/Sub emulator is not installed: install the Debian package {PACKAGE} (it brings gcloud)"
    if launcher() is None:
        return f"gcloud's Pub/Sub emulator is not installed: install the Debian package {PACKAGE}"
    if shutil.which("java") is None:
        return "the Pub/Sub emulator needs Java 17 or newer: install the Debian package default-jre-headless"
    return None


def secret_project_id() -> str:
    """A valid project id (6-30 characters, a letter first) no one can guess: 24 random
    lowercase letters and digits, about 124 bits."""
    alphabet = string.ascii_lowercase + string.digits
    return "local-" + "".join(secrets.choice(alphabet) for _ in range(24))


class PubSubEmulator:
    """start() / stop(); `host` is the PUBSUB_EMULATOR_HOST value. `projects`: the only
    project ids it serves (None: any, as a test session's shared emulator needs)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int, projects: tuple[str, ...] | None = None,
                 log_path: Path | None = None):
        self.host = f"{host}:{port}"
        self.projects = projects
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> PubSubEmulator:
        problem = missing()
        if problem:
            raise CommandError(problem)
        address, port = self.host.rsplit(":", 1)
        argv = [str(launcher()), f"--host={address}", f"--port={port}"]
        if self.projects:
            argv.append("--projects=" + ",".join(self.projects))
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            # Its own process group: stop() ends the launcher and the java it starts together.
            self._process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
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
        # The launcher may be gone while java still runs in the group: end whatever is left.
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
