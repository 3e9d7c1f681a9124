"""The local stack, wired as infra/ wires the cloud: fake-gcs-server publishes each new
object's notification to the uploads topic of Google's Pub/Sub emulator; push
subscriptions (retry policy, dead-letter topic) deliver notifications and published work
to the functions server; the sink writes the server's result lines into DuckDB.

Started so that nothing is published before it can be delivered (Pub/Sub and its
topology, then storage, the sink, the server), stopped so that nothing new arrives while
the rest finishes: storage, then Pub/Sub, the server, the sink. Storage serves HTTPS only,
with the state folder's own certificate (functions/local/tls.py), so no web page reaches it."""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from functions.console.errors import CommandError
from functions.local import gcs, pubsub, tls, topology
from functions.local.defaults import DEFAULT_BUCKET, DEFAULT_GCS_PORT, DEFAULT_PORT, DEFAULT_PUBSUB_PORT, HOST
from functions.local.emulator import GcsEmulator, Notify
from functions.local.pubsub_emulator import PubSubEmulator, secret_project_id
from functions.local.server_process import FunctionsServer
from functions.local.statedir import StackLock, StateDir, write_json_atomic
from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse


@dataclass
class StackConfig:
    state: StateDir
    port: int = DEFAULT_PORT
    gcs_port: int = DEFAULT_GCS_PORT
    pubsub_port: int = DEFAULT_PUBSUB_PORT
    buckets: tuple[str, ...] = (DEFAULT_BUCKET,)
    server_env: dict = field(default_factory=dict)
    topology: topology.Topology = field(default_factory=topology.load)
    # A Pub/Sub emulator already running (host:port) to use instead of starting one: tests
    # share one per session, each stack in a project of its own.
    pubsub_host: str | None = None
    # The Pub/Sub project: random unless given, and the only one a stack's own emulator
    # serves (see pubsub_emulator: it answers any web origin).
    project: str = field(default_factory=secret_project_id)
    push_url: str | None = None  # where push subscriptions post; None: the functions server (tests observe via a proxy)


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
        raise CommandError(f"port {port} on {HOST} is in use, so the {what} cannot start there: stop whatever "
                           f"uses it, or choose another port with {flag} N")


class Stack:
    def __init__(self, config: StackConfig, *, on_rows=None):
        self.config = config
        self.state = config.state
        self.topology = config.topology
        self.on_rows = on_rows
        self.lock = StackLock(self.state)
        self.pubsub_emulator: PubSubEmulator | None = None
        self.pubsub_host: str | None = config.pubsub_host
        self.emulator: GcsEmulator | None = None
        self.server: FunctionsServer | None = None
        self.sink: Sink | None = None
        self.warehouse = Warehouse(self.state.warehouse)
        self.started_at: float | None = None

    @property
    def server_url(self) -> str:
        return f"http://{HOST}:{self.config.port}"

    @property
    def info(self) -> dict:
        """The card other commands read (stack.json) to find the running stack."""
        return {"pid": os.getpid(), "gcs_url": self.emulator.url, "gcs_cert": str(self.emulator.cert),
                "gcs_ca_bundle": str(self.emulator.tls.ca_bundle), "server_url": self.server.url,
                "pubsub_host": self.pubsub_host, "project": self.config.project,
                "buckets": list(self.config.buckets), "warehouse": str(self.state.warehouse),
                "started_at": self.started_at}

    def topic(self, source: str) -> str:
        return topology.topic_path(self.config.project, self.topology.sources[source].topic)

    def start(self, status=lambda text: None) -> Stack:
        cfg = self.config
        self.lock.acquire()
        try:
            check_port_free(cfg.gcs_port, "GCS emulator", "--gcs-port")
            check_port_free(cfg.port, "functions server", "--port")
            if self.pubsub_host is None:
                check_port_free(cfg.pubsub_port, "Pub/Sub emulator", "--pubsub-port")
                status("starting the Pub/Sub emulator")
                self.pubsub_emulator = PubSubEmulator(host=HOST, port=cfg.pubsub_port, projects=(cfg.project,),
                                                      log_path=self.state.logs / "pubsub-emulator.log").start()
                self.pubsub_host = self.pubsub_emulator.host
            status("creating topics and subscriptions")
            pubsub.create(self.topology, host=self.pubsub_host, project=cfg.project,
                          push_url=cfg.push_url or self.server_url)
            status("starting the GCS emulator")
            self.emulator = GcsEmulator(self.state.gcs, host=HOST, port=cfg.gcs_port,
                                        log_path=self.state.logs / "gcs-emulator.log", new_session=True,
                                        notify=Notify(self.pubsub_host, cfg.project, self.topology.uploads.topic,
                                                      bucket=cfg.buckets[0] if len(cfg.buckets) == 1 else None),
                                        tls=tls.ensure(self.state.tls))
            try:
                self.emulator.start()
            except RuntimeError as exc:
                raise CommandError(f"the GCS emulator did not start: {exc}; "
                                   f"see {self.state.logs / 'gcs-emulator.log'}") from None
            gcs.ensure_buckets(self.emulator.url, cfg.buckets, self.emulator.cert)
            status("opening the warehouse")
            self.sink = Sink(self.warehouse, backlog=self.state.sink_backlog, on_rows=self.on_rows).start()
            status("starting the functions server")
            server_env = {"SKIP_PREFIXES": ",".join(self.topology.skip_prefixes), **cfg.server_env}
            self.server = FunctionsServer(host=HOST, port=cfg.port, gcs_url=self.emulator.url, buckets=cfg.buckets,
                                          log_path=self.state.logs / "server.log", extra_env=server_env,
                                          ca_bundle=self.emulator.tls.ca_bundle)
            self.sink.attach(self.server.start().stdout)
            self.server.wait_healthy(on_wait=lambda s: status(f"functions server: {s} (loading the model)"))
            self.started_at = time.time()
            write_json_atomic(self.state.stack_info, self.info)
        except BaseException:
            self.stop()
            raise
        return self

    def failure(self) -> str | None:
        """What died, if a part of the stack stopped on its own."""
        if self.pubsub_emulator is not None and not self.pubsub_emulator.alive():
            return f"the Pub/Sub emulator stopped; see {self.state.logs / 'pubsub-emulator.log'}"
        if self.emulator is not None and not self.emulator.alive():
            return f"the GCS emulator stopped; see {self.state.logs / 'gcs-emulator.log'}"
        if self.server is not None and not self.server.alive():
            return f"the functions server stopped; see {self.server.log_path}:\n{self.server.log_tail()}"
        return None

    def stop(self) -> None:
        if not self.lock.held:
            return
        self.state.stack_info.unlink(missing_ok=True)
        if self.emulator is not None:
            self.emulator.stop()
        if self.pubsub_emulator is not None:
            self.pubsub_emulator.stop()
            self.pubsub_emulator = None
        elif self.pubsub_host is not None:  # a shared emulator: no push may outlive this server
            pubsub.delete_push_subscriptions(self.topology, host=self.pubsub_host, project=self.config.project)
        if self.server is not None:
            self.server.stop()
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        self.lock.release()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
