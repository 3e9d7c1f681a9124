"""Faults and duplicates through the real local stack (GCS emulator, Google's Pub/Sub
emulator with infra's push subscriptions, retry and dead-letter policy, functions server,
DuckDB sink), built in-process so the tests can reach its parts. The server reads the GCS
emulator through a fault-injecting proxy; the pushes reach the server through a proxy that
records each one and its answer.

What every test proves for its uploads: each one ends as exactly one row in the
de-duplicated `results` view, or as one dead letter on the dead-letter topic; none is
both, none is neither.

    .venv/bin/python -m pytest tests/reliability/test_faults.py -s
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests

from functions.local import dead_letters, gcs, pubsub, tls, topology
from functions.local.defaults import HOST
from functions.local.server_process import FunctionsServer
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from functions.warehouse.store import Warehouse
from tests.conftest import fresh_project
from tests.reliability import _corpus
from tests.reliability._support import (
    REPO,
    FaultProxy,
    FaultRule,
    Push,
    PushCounter,
    Store,
    children,
    figure,
    free_port,
    seeded,
    wait_for,
)

WATCHED, SIDE = "uploads", "side"  # `uploads` notifies; `side` is allowed but only gets notifications we publish
# The emulator redelivers a failed push about once a second (no retry policy: see functions/local/pubsub.py),
# so 30 attempts are ~30 s of redelivery, which outlasts a server restart.
RETRY = dict(max_delivery_attempts=30)
SETTLE_S = 120.0


def notification(resource: dict) -> tuple[bytes, dict]:
    """What Cloud Storage (and fake-gcs-server) publishes for a stored object (JSON_API_V1)."""
    return json.dumps(resource).encode(), {
        "bucketId": resource["bucket"], "objectId": resource["name"], "objectGeneration": str(resource["generation"]),
        "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
        "eventTime": resource.get("updated") or resource.get("timeCreated")}


class Harness:
    """The stack plus what the tests need to drive and read it."""

    def __init__(self, root, proxy: FaultProxy, gcs_port: int, pubsub_host: str):
        self.proxy = proxy
        self.state = StateDir(root / "state").ensure()
        port = free_port()
        self.pushes = PushCounter(port)
        self.base_env = {"STORAGE_EMULATOR_HOST": proxy.url, "ALLOWED_BUCKETS": f"{WATCHED},{SIDE}",
                         "FETCH_TIMEOUT_S": "1", "MODEL_URI": "", "DEDUP_WINDOW_S": "600", "MAX_EVENT_AGE_S": "0"}
        config = StackConfig(state=self.state, port=port, gcs_port=gcs_port, buckets=(WATCHED,),
                             pubsub_host=pubsub_host, project=fresh_project(), push_url=self.pushes.url,
                             topology=topology.load().with_retry(**RETRY), server_env=dict(self.base_env))
        self.stack = Stack(config)
        self.warehouse = Warehouse(self.state.warehouse)

    def start(self) -> Harness:
        self.stack.start()
        emulator = self.stack.emulator
        gcs.ensure_buckets(emulator.url, [SIDE], emulator.cert)
        self.store = Store(emulator.url, emulator.cert)  # uploads go straight to the emulator, not via the proxy
        return self

    # -- driving -------------------------------------------------------------------------
    def upload(self, prefix: str, count: int, *, bucket: str = WATCHED, seed: int = 0, names=None) -> list[dict]:
        names = names or [f"{prefix}img-{i:04d}.jpg" for i in range(count)]
        return [self.store.upload(bucket, name, _corpus.jpeg((64, 64), seed=seed * 100_000 + i))
                for i, name in enumerate(names)]

    def notify(self, resources: list[dict]) -> None:
        """Publish objects' notifications to the uploads topic, as Cloud Storage would."""
        client = pubsub.publisher(self.stack.pubsub_host)
        try:
            futures = [client.publish(self.stack.topic("uploads"), data, **attributes)
                       for data, attributes in map(notification, resources)]
            for future in futures:
                future.result(timeout=30)
        finally:
            client.stop()
            pubsub.close(client)

    @property
    def server(self) -> FunctionsServer:
        return self.stack.server

    def worker_pid(self) -> int:
        return wait_for(lambda: children(self.server.process.pid), timeout=30, what="the worker")[0]

    def kill_server(self) -> None:
        """SIGKILL the whole server (gunicorn's master and worker), as a crash would."""
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait()

    def restart_server(self, env: dict | None = None, expect: str = "ready") -> None:
        """Kill the server if it runs, start a new one on the same port, its stdout into the sink."""
        if self.server.alive():
            self.kill_server()
        cfg = self.stack.config
        server = FunctionsServer(host=HOST, port=cfg.port, gcs_url=self.stack.emulator.url, buckets=cfg.buckets,
                                 log_path=self.state.logs / "server.log", extra_env={**self.base_env, **(env or {})},
                                 ca_bundle=self.stack.emulator.tls.ca_bundle)
        self.stack.sink.attach(server.start().stdout)
        self.stack.server = server

        def status():
            try:
                return requests.get(server.url + "/healthz", timeout=2).json().get("status") == expect
            except (requests.RequestException, ValueError):
                assert server.alive(), server.log_tail()
                return False
        wait_for(status, timeout=120, interval=0.1, what=f"the server to be {expect}")

    # -- reading -------------------------------------------------------------------------
    def rows(self, uri_prefix: str) -> list[tuple]:
        """(uri, status, error_code) of each final row: ok or a permanent error. A row with a
        retryable error is not an end state: its push was answered 5xx and is redelivered."""
        return self.warehouse.query("SELECT uri, status, error_code FROM results WHERE starts_with(uri, ?) "
                                    "AND (status = 'ok' OR NOT error_retryable)", [uri_prefix])[1]

    def raw_rows(self, uri_prefix: str) -> int:
        return self.warehouse.query("SELECT COUNT(*) FROM run_googleapis_com_stdout "
                                    "WHERE starts_with(jsonPayload.source.uri, ?)", [uri_prefix])[1][0][0]

    def dead(self, uri_prefix: str) -> list[dead_letters.DeadLetter]:
        return [d for d in dead_letters.read(self.stack.topology, host=self.stack.pubsub_host,
                                             project=self.stack.config.project)
                if d.description.startswith(uri_prefix)]

    def sent(self, uri_prefix: str) -> list[Push]:
        return self.pushes.seen(uri_prefix)

    def settle(self, uris: list[str], uri_prefix: str, timeout: float = SETTLE_S) -> tuple[dict, dict]:
        """Wait until every upload has a row or a dead letter; (rows by uri, dead letters by uri)."""
        missing = set(uris)

        def done():
            rows = self.rows(uri_prefix)
            have = {r[0] for r in rows}
            if set(uris) - have:
                have |= {d.description.split("#")[0] for d in self.dead(uri_prefix)}
            missing.intersection_update(set(uris) - have)
            return not missing
        try:
            wait_for(done, timeout=timeout, interval=0.5, what=f"every upload under {uri_prefix}")
        except AssertionError:
            other = self.warehouse.query("SELECT uri, status, error_code FROM results WHERE starts_with(uri, ?)",
                                         [uri_prefix])[1]
            raise AssertionError(f"no row or dead letter for {sorted(missing)[:5]} ({len(missing)} in all); "
                                 f"rows there: {[r for r in other if r[0] not in uris][:5]}, "
                                 f"pushes answered: {self.pushes.tally.counts}") from None
        time.sleep(0.5)  # let a late duplicate land before counting
        rows, dead = self.rows(uri_prefix), self.dead(uri_prefix)
        by_uri: dict = {}
        for row in rows:
            by_uri.setdefault(row[0], []).append(row)
        dead_by_uri: dict = {}
        for letter in dead:
            dead_by_uri.setdefault(letter.description.split("#")[0], []).append(letter)
        return by_uri, dead_by_uri

    def stop(self) -> None:
        self.stack.stop()
        self.pushes.close()


def accounted(uris: list[str], rows: dict, dead: dict) -> None:
    """Each upload: exactly one row, or exactly one dead letter after every attempt; never both, never none."""
    for uri in uris:
        n_rows, n_dead = len(rows.get(uri, [])), len(dead.get(uri, []))
        assert (n_rows, n_dead) in ((1, 0), (0, 1)), f"{uri}: {n_rows} rows and {n_dead} dead letters"
        for letter in dead.get(uri, []):
            assert letter.attempts == str(RETRY["max_delivery_attempts"]), (uri, letter.attempts)
    extra = set(rows) - set(uris)
    assert not extra, f"rows for uploads never made: {sorted(extra)[:5]}"


@pytest.fixture(scope="module")
def harness(tmp_path_factory, pubsub_emulator):
    root = tmp_path_factory.mktemp("faults")
    gcs_port = free_port()
    # The stack's emulator serves https with the state folder's certificate: made here first, reused by the stack.
    proxy = FaultProxy(gcs_port, upstream_cert=tls.ensure(StateDir(root / "state").tls).cert)
    running = Harness(root, proxy, gcs_port, pubsub_emulator.host)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        proxy.close()


@pytest.fixture()
def healthy(harness):
    """Each test starts and ends with a serving server and no fault rules."""
    harness.proxy.rules = []
    if not harness.server.alive():
        harness.restart_server()
    yield harness
    harness.proxy.rules = []
    if not harness.server.alive() or requests.get(harness.server.url + "/healthz", timeout=5).status_code != 200:
        harness.restart_server()


# --- storage faults between the server and the emulator ------------------------------------------

def test_storage_503s_and_stalls_are_redelivered_until_every_upload_lands(healthy):
    h = healthy
    prefix = "f1/"
    rule = FaultRule(prefix, fail_every=3, stall_every=7, stall_s=1.6)  # FETCH_TIMEOUT_S is 1 s
    h.proxy.rules = [rule]
    started = time.monotonic()
    uris = [f"gs://{WATCHED}/{r['name']}" for r in h.upload(prefix, 30, seed=1)]

    rows, dead = h.settle(uris, f"gs://{WATCHED}/{prefix}")

    records = [r for r in h.proxy.snapshot() if r.object and r.object.startswith(prefix)]
    injected_503 = sum(1 for r in records if r.fault == "503")
    stalls = sum(1 for r in records if r.fault == "stall")
    sent = h.sent(f"gs://{WATCHED}/{prefix}")
    answered_503 = sum(1 for push in sent if push.status == 503)
    figure("storage_faults", uploads=len(uris), rows=sum(map(len, rows.values())), dead_letters=len(dead),
           lost=len(set(uris) - set(rows) - set(dead)), reads=len(records), injected_503=injected_503,
           injected_stalls=stalls, pushes_answered_503=answered_503, pushes=len(sent),
           raw_rows=h.raw_rows(f"gs://{WATCHED}/{prefix}"), seconds=round(time.monotonic() - started, 1))
    accounted(uris, rows, dead)
    assert not dead, "a 10-attempt retry policy outlasts these faults: nothing should be dead-lettered"
    bad = [row for found in rows.values() for row in found if row[1] != "ok"]
    assert not bad, (bad, h.warehouse.query("SELECT timestamp, receiveTimestamp, jsonPayload.status, "
                                            "jsonPayload.error.code, jsonPayload.result_id FROM "
                                            "run_googleapis_com_stdout WHERE jsonPayload.source.uri = ? "
                                            "ORDER BY timestamp", [bad[0][0]])[1])
    assert injected_503 > 0 and stalls > 0
    assert answered_503 > 0, "no fault reached a push as a 503: the test did not test redelivery"


def test_objects_gone_before_they_are_read_are_acknowledged_as_not_found(healthy):
    h = healthy
    prefix = "f2/"
    gone = h.upload(prefix, 5, bucket=SIDE, seed=2)
    for resource in gone:
        h.store.delete(SIDE, resource["name"])
    first = h.upload(prefix, 1, bucket=SIDE, seed=3, names=[f"{prefix}overwritten.jpg"])[0]
    h.upload(prefix, 1, bucket=SIDE, seed=4, names=[f"{prefix}overwritten.jpg"])  # a new generation replaces it
    h.notify(gone + [first])  # the notifications arrive after the objects are gone
    uris = [f"gs://{SIDE}/{r['name']}" for r in gone] + [f"gs://{SIDE}/{prefix}overwritten.jpg"]

    rows, dead = h.settle(uris, f"gs://{SIDE}/{prefix}")

    figure("deleted_before_read", notifications=len(gone) + 1, rows=sum(map(len, rows.values())), dead_letters=len(dead),
           not_found=sum(1 for found in rows.values() for row in found if row[2] == "not_found"))
    accounted(uris, rows, dead)
    assert not dead
    assert all(row[1:] == ("error", "not_found") for found in rows.values() for row in found)


# --- crashes ------------------------------------------------------------------------------------

def test_worker_and_whole_server_killed_mid_batch(healthy):
    h = healthy
    results = {}
    for label, prefix, kill in (("worker", "f3a/", "worker"), ("server", "f3b/", "server")):
        uri_prefix = f"gs://{WATCHED}/{prefix}"
        started = time.monotonic()
        h.proxy.rules = [FaultRule(prefix, delay_s=0.2)]  # slow reads: deliveries are in flight at the kill
        uris: list[str] = []
        seed = 5 if kill == "worker" else 6
        uploading = threading.Thread(target=lambda uris=uris, prefix=prefix, seed=seed: uris.extend(
            f"gs://{WATCHED}/{r['name']}" for r in h.upload(prefix, 60, seed=seed)))
        uploading.start()  # the kill comes while uploads still arrive and deliveries are in flight
        wait_for(lambda uri_prefix=uri_prefix: sum(1 for push in h.sent(uri_prefix) if push.status == 200) >= 10,
                 timeout=60,
                 interval=0.01, what="the first deliveries")
        old_worker = h.worker_pid()
        killed_at = [push for push in h.sent(uri_prefix) if push.status == 200]
        if kill == "worker":
            os.kill(old_worker, signal.SIGKILL)  # gunicorn's master starts a new worker, which loads the model
            new_worker = wait_for(lambda old_worker=old_worker: [p for p in children(h.server.process.pid)
                                                                 if p != old_worker],
                                  timeout=60, what="a new worker")[0]
        else:
            h.kill_server()
            time.sleep(1.0)  # the pushes meet a closed port for a while
            h.restart_server()
            new_worker = h.worker_pid()
        uploading.join(timeout=120)
        delivered_at_kill = len(killed_at)
        rows, dead = h.settle(uris, uri_prefix)
        results[label] = (uris, rows, dead)
        sent = h.sent(uri_prefix)
        figure(f"killed_{label}", uploads=len(uris), delivered_before_kill=delivered_at_kill,
               rows=sum(map(len, rows.values())), dead_letters=len(dead), lost=len(set(uris) - set(rows) - set(dead)),
               raw_rows=h.raw_rows(uri_prefix), failed_pushes=sum(1 for push in sent if push.status != 200),
               seconds=round(time.monotonic() - started, 1))
        assert delivered_at_kill < len(uris) // 2, "most had landed before the kill: nothing was mid-batch"
        assert new_worker != old_worker
        if kill == "worker":
            assert any(push.status is None for push in sent), \
                "no delivery was cut off by the kill: nothing was in flight"
    h.proxy.rules = []
    for label, (uris, rows, dead) in results.items():
        accounted(uris, rows, dead)
        assert not dead, f"{label}: the retry policy outlasts a restart"
        assert all(row[1] == "ok" for found in rows.values() for row in found)


# --- a model that fails to load ---------------------------------------------------------------------

ESCAPE_MARK = "escape-" + uuid.uuid4().hex[:12]
HOSTILE_NAMES = [  # object names that must stay data, never become paths outside the state directory
    f"f4/../../../../../../../../tmp/{ESCAPE_MARK}-dotdot.jpg",
    f"f4/..\\..\\..\\{ESCAPE_MARK}-backslash.jpg",
    f"f4//{ESCAPE_MARK}/absolute/etc/passwd.jpg",
    f"f4/%2e%2e%2f%2e%2e%2f{ESCAPE_MARK}-encoded.jpg",
    f"f4/nul\x00{ESCAPE_MARK}.jpg",
    f"f4/new\nline {ESCAPE_MARK} \"quoted\" <b>.jpg",
    f"f4/..dots../..{ESCAPE_MARK}..jpg",
    f"f4/~/.ssh/{ESCAPE_MARK}.jpg",
    f"f4/C:\\Windows\\{ESCAPE_MARK}.jpg",
    "f4/" + "L" * 240 + f"-{ESCAPE_MARK}.jpg",
]


def _upload_hostile(h, names) -> tuple[list[str], list[str]]:
    """(accepted names, names refused): a refused upload is not an accepted one. Accepted names are
    read back from the bucket's listing (the emulator folds "//" into "/")."""
    refused = []
    for i, name in enumerate(names):
        try:
            h.store.upload(WATCHED, name, _corpus.jpeg((64, 64), seed=700 + i))
        except Exception:  # the emulator refuses the name
            refused.append(name)
    accepted = [blob.name for blob in h.store.client.list_blobs(WATCHED) if ESCAPE_MARK in blob.name]
    return accepted, refused


def test_a_model_that_fails_to_load_dead_letters_then_replays_once_fixed(healthy, tmp_path):
    h = healthy
    prefix = "f4/"
    uri_prefix = f"gs://{WATCHED}/{prefix}"
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x1c\x00\x00\x00TFL3" + seeded(4).randbytes(4000))
    h.restart_server({"MODEL_URI": str(garbage)}, expect="failed")
    files_before = _files_outside(h)

    names = [r["name"] for r in h.upload(prefix, 8, seed=7)]
    hostile, refused = _upload_hostile(h, HOSTILE_NAMES)
    uris = [f"gs://{WATCHED}/{n}" for n in names + hostile]
    wait_for(lambda: len(h.dead(uri_prefix)) >= len(uris), timeout=SETTLE_S, interval=1,
             what="every notification to be dead-lettered while the model is broken")
    dead_while_broken = h.dead(uri_prefix)
    rows_while_broken = h.rows(uri_prefix)
    answers_while_broken = {push.status for push in h.sent(uri_prefix)}

    h.restart_server()  # the model fixed: the built-in one again
    replayed = dead_letters.replay(h.stack.topology, host=h.stack.pubsub_host, project=h.stack.config.project)
    rows, dead = h.settle(uris, uri_prefix)  # the replay emptied the dead-letter topic: rows only now

    figure("model_load_failure", uploads=len(uris), hostile_names=len(hostile), refused_names=len(refused),
           dead_lettered_while_broken=len(dead_while_broken), rows_while_broken=len(rows_while_broken),
           replayed=len(replayed), rows_after_fix=sum(map(len, rows.values())),
           dead_letters_after_replay=len(h.dead(uri_prefix)), lost=len(set(uris) - set(rows)))
    assert not rows_while_broken
    assert len(dead_while_broken) == len(uris)
    assert answers_while_broken == {503}, answers_while_broken  # model_error: transient, so redelivered
    assert all(letter.attempts == str(RETRY["max_delivery_attempts"]) for letter in dead_while_broken)
    assert {d.description.split("#")[0] for d in dead_while_broken} == set(uris)
    assert all(not outcome.startswith("not replayed") for _, outcome in replayed)
    accounted(uris, rows, dead)
    assert not dead  # replayed: the dead-letter topic was emptied
    assert all(row[1] == "ok" for found in rows.values() for row in found)
    # The hostile names stayed data (the dead letters named them verbatim) and no file carrying
    # them appeared anywhere, inside the state directory or out: the emulator keeps objects in memory.
    assert _files_outside(h) == files_before, "a file appeared outside the state directory"
    assert not list(h.state.root.rglob(f"*{ESCAPE_MARK}*"))
    assert len(hostile) == len(HOSTILE_NAMES) - len(refused) and len(hostile) >= 3, refused


def _files_outside(h) -> set[str]:
    """Files carrying the marker where a traversal would put them: /tmp, the repo, pytest's temp tree."""
    places = [("/tmp", 1), (str(REPO), 2), (str(h.state.root.parents[2]), 4)]
    found = set()
    for place, depth in places:
        for path in _walk(place, depth):
            if ESCAPE_MARK in path and not path.startswith(str(h.state.root) + os.sep):
                found.add(path)
    return found


def _walk(root, depth: int):
    root = str(root)
    base = root.rstrip(os.sep).count(os.sep)
    for folder, dirs, files in os.walk(root):
        if folder.count(os.sep) - base >= depth or "/.venv" in folder or "/.git" in folder:
            dirs[:] = []
        for name in dirs + files:
            yield os.path.join(folder, name)


# --- duplicates, out of order -----------------------------------------------------------------------

def test_every_event_twice_out_of_order_and_again_after_a_restart_gives_one_row_each(healthy):
    h = healthy
    prefix = "f5/"
    uri_prefix = f"gs://{SIDE}/{prefix}"
    resources = h.upload(prefix, 30, bucket=SIDE, seed=8)
    uris = [f"gs://{SIDE}/{r['name']}" for r in resources]  # each upload's notification, published four times
    rng = seeded(5)

    def delivered() -> int:
        return len([push for push in h.sent(uri_prefix) if push.status == 200])

    def replay_twice() -> None:
        shuffled = list(resources)
        rng.shuffle(shuffled)
        before = delivered()
        h.notify(list(reversed(resources)))
        h.notify(shuffled)
        wait_for(lambda: delivered() >= before + 2 * len(uris), timeout=SETTLE_S, interval=0.2,
                 what="both replays delivered")

    replay_twice()
    h.restart_server()  # a fresh process: its de-duplication window is empty, so SQL must do it
    replay_twice()
    rows, dead = h.settle(uris, uri_prefix)
    raw = h.raw_rows(uri_prefix)

    figure("duplicates", uploads=len(uris), deliveries=delivered(), raw_rows=raw, rows=sum(map(len, rows.values())),
           dead_letters=len(dead), lost=len(set(uris) - set(rows)))
    assert delivered() == 4 * len(uris)
    accounted(uris, rows, dead)
    assert not dead
    assert raw >= 2 * len(uris), "each server process logs each upload once: the view had nothing to de-duplicate"
    assert all(row[1] == "ok" for found in rows.values() for row in found)
