"""The local stack: GCS emulator, functions server, local sink and event bridge, on
loopback, with all state in one directory. Started in that order (each part needs the
one before), stopped in reverse: the bridge stops sending, the server finishes what it
has, the sink writes the server's last lines, the emulator goes last."""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from functions.local import gcs
from functions.local.bridge import Bridge, RetryPolicy
from functions.local.dead_letters import DeadLetters
from functions.local.defaults import DEFAULT_BUCKET, DEFAULT_GCS_PORT, DEFAULT_PORT, HOST
from functions.local.delivery_state import DeliveryState
from functions.local.emulator import GcsEmulator
from functions.local.errors import LocalError
from functions.local.server_process import FunctionsServer
from functions.local.sink import Sink
from functions.local.statedir import StackLock, StateDir, write_json_atomic
from functions.local.warehouse import Warehouse


@dataclass
class StackConfig:
    state: StateDir
    port: int = DEFAULT_PORT
    gcs_port: int = DEFAULT_GCS_PORT
    buckets: tuple[str, ...] = (DEFAULT_BUCKET,)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll_interval_s: float = 1.0  # the watcher's sweep; the guard announces new objects at once
    server_env: dict = field(default_factory=dict)
    sender_workers: int = 8  # deliveries the bridge keeps in flight at once


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_port_free(port: int, what: str, flag: str) -> None:
    if not port_is_free(port):
        raise LocalError(f"port {port} on {HOST} is in use, so the {what} cannot start there: stop whatever "
                         f"uses it, or choose another port with {flag} N")


class Stack:
    def __init__(self, config: StackConfig, *, on_rows=None, on_outcome=None):
        self.config = config
        self.state = config.state
        self.on_rows = on_rows
        self.on_outcome = on_outcome
        self.lock = StackLock(self.state)
        self.emulator: GcsEmulator | None = None
        self.server: FunctionsServer | None = None
        self.sink: Sink | None = None
        self.bridge: Bridge | None = None
        self.warehouse = Warehouse(self.state.warehouse)
        self.delivery_state: DeliveryState | None = None
        self.dead_letters = DeadLetters(self.state.dead_letters)
        self.started_at: float | None = None

    @property
    def info(self) -> dict:
        """The card other commands read (stack.json) to find the running stack."""
        return {"pid": os.getpid(), "gcs_url": self.emulator.url, "server_url": self.server.url,
                "buckets": list(self.config.buckets), "warehouse": str(self.state.warehouse),
                "started_at": self.started_at}

    def start(self, status=lambda text: None) -> "Stack":
        cfg = self.config
        self.lock.acquire()
        try:
            check_port_free(cfg.gcs_port, "GCS emulator", "--gcs-port")
            check_port_free(cfg.port, "functions server", "--port")
            status("starting the GCS emulator")
            self.emulator = GcsEmulator(self.state.gcs, host=HOST, port=cfg.gcs_port,
                                        log_path=self.state.logs / "gcs-emulator.log", new_session=True)
            try:
                self.emulator.start()
            except RuntimeError as exc:
                raise LocalError(f"the GCS emulator did not start: {exc}; "
                                 f"see {self.state.logs / 'gcs-emulator.log'}") from None
            gcs.ensure_buckets(self.emulator.url, cfg.buckets)
            status("opening the warehouse")
            self.sink = Sink(self.warehouse, backlog=self.state.sink_backlog, on_rows=self.on_rows).start()
            status("starting the functions server")
            self.server = FunctionsServer(host=HOST, port=cfg.port, gcs_url=self.emulator.url, buckets=cfg.buckets,
                                          log_path=self.state.logs / "server.log", extra_env=cfg.server_env)
            self.sink.attach(self.server.start().stdout)
            self.server.wait_healthy(on_wait=lambda s: status(f"functions server: {s} (loading the model)"))
            status("starting the event bridge")
            self.delivery_state = DeliveryState(self.state.bridge_db)
            self.bridge = Bridge(gcs_url=self.emulator.url, target_url=self.server.url, buckets=cfg.buckets,
                                 state=self.delivery_state, dead_letters=self.dead_letters, retry=cfg.retry,
                                 poll_interval_s=cfg.poll_interval_s, on_outcome=self.on_outcome,
                                 workers=cfg.sender_workers).start()
            self.emulator.announce_to(self.bridge.watcher.announce)
            self.started_at = time.time()
            write_json_atomic(self.state.stack_info, self.info)
        except BaseException:
            self.stop()
            raise
        return self

    def failure(self) -> str | None:
        """What died, if a part of the stack stopped on its own."""
        if self.emulator is not None and not self.emulator.alive():
            return f"the GCS emulator stopped; see {self.state.logs / 'gcs-emulator.log'}"
        if self.server is not None and not self.server.alive():
            return f"the functions server stopped; see {self.server.log_path}:\n{self.server.log_tail()}"
        return None

    def stop(self) -> None:
        if not self.lock.held:
            return
        self.state.stack_info.unlink(missing_ok=True)
        if self.bridge is not None:
            self.emulator.announce_to(None)
            self.bridge.stop()
            self.bridge = None
        if self.delivery_state is not None:
            self.delivery_state.close()  # reopened on next use (tests read counts after a stop)
        if self.server is not None:
            self.server.stop()
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.emulator is not None:
            self.emulator.stop()
        self.lock.release()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
