"""A burst of 2,000 uploads through the real local stack (bucket notifications → the Pub/Sub
emulator → push), with the server's batch queue made small (BATCH_QUEUE_SIZE=16). The
emulator pushes only a few messages at a time, so HTTP API clients share the server (and
its one batcher) meanwhile, as they do in the cloud: overload really happens, and every
upload must still end as one row (pushes answered 429 are redelivered), nothing may be
dead-lettered, and the server's worker must stay under 1 GiB. A counting proxy between
the emulator and the server sees every push and its answer.

    .venv/bin/python -m pytest tests/reliability -m burst -s
"""
from __future__ import annotations

import base64
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from functions.local import dead_letters, topology
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from functions.warehouse.store import Warehouse
from tests.conftest import fresh_project
from tests.reliability import _corpus
from tests.reliability._support import PushCounter, children, figure, free_port, proc_kib, wait_for

pytestmark = pytest.mark.burst

BUCKET = "burst"
UPLOADS = 2000
QUEUE = 16            # BATCH_QUEUE_SIZE: images waiting for the model before the server answers 429
MAX_WORKER_KIB = 1024 * 1024
DEADLINE_S = 240.0
HTTP_CLIENTS = 8      # HTTP API callers sharing the server while the uploads go on
PUSHES_429 = 50       # pushes answered 429 after which they stop


def test_a_burst_of_2000_uploads_is_fully_accounted_for(tmp_path, pubsub_emulator):
    state = StateDir(tmp_path / "state").ensure()
    port = free_port()
    counter = PushCounter(port)
    config = StackConfig(state=state, port=port, gcs_port=free_port(), buckets=(BUCKET,),
                         pubsub_host=pubsub_emulator.host, project=fresh_project(), push_url=counter.url,
                         topology=topology.load().with_retry(max_delivery_attempts=100),  # the most Pub/Sub allows
                         server_env={"BATCH_QUEUE_SIZE": str(QUEUE), "DECODE_WORKERS": "16", "MODEL_URI": "",
                                     "MAX_EVENT_AGE_S": "0"})
    images = [_corpus.jpeg((64, 64), seed=10_000 + i) for i in range(UPLOADS)]
    assert len(set(images)) == UPLOADS  # distinct content: no two uploads are one result
    warehouse = Warehouse(state.warehouse)
    with Stack(config) as stack:
        worker = children(stack.server.process.pid)[0]
        local = threading.local()
        started = time.monotonic()

        def upload(i: int) -> str:
            """A simple media upload, as any client sends it (the JSON API's uploadType=media)."""
            if not hasattr(local, "session"):
                local.session = requests.Session()
            name = f"b/{i:05d}.jpg"
            response = local.session.post(
                f"{stack.emulator.url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name="
                + urllib.parse.quote(name, safe=""), data=images[i], headers={"Content-Type": "image/jpeg"},
                timeout=60, verify=str(stack.emulator.cert))  # per request: REQUESTS_CA_BUNDLE beats session.verify
            response.raise_for_status()
            return f"gs://{BUCKET}/{name}"

        busy = threading.Event()
        http_answers: dict = {}

        def http_client(seed: int) -> None:
            """Classifies images over the HTTP API (8 in a request) again and again until
            enough pushes met a full queue (more would only slow the burst down)."""
            session = requests.Session()
            image = base64.b64encode(_corpus.jpeg((64, 64), seed=90_000 + seed)).decode()
            body = {"instances": [{"b64": image, "key": str(k)} for k in range(8)]}
            while not busy.is_set() and counter.tally.get(429) < PUSHES_429:
                status = session.post(stack.server_url + "/", json=body, timeout=60).status_code
                http_answers[status] = http_answers.get(status, 0) + 1

        clients = [threading.Thread(target=http_client, args=(n,), daemon=True) for n in range(HTTP_CLIENTS)]
        for client in clients:
            client.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            uris = list(pool.map(upload, range(UPLOADS)))
        uploaded_s = time.monotonic() - started

        def final_rows() -> int:
            return warehouse.query("SELECT COUNT(*) FROM results WHERE bucket = ? "
                                   "AND (status = 'ok' OR NOT error_retryable)", [BUCKET])[1][0][0]

        def dead_letters_here() -> list:
            return [d for d in dead_letters.read(stack.topology, host=stack.pubsub_host, project=config.project)
                    if d.description.startswith(f"gs://{BUCKET}/")]

        def settled():
            return final_rows() >= UPLOADS or (final_rows() + len(dead_letters_here()) >= UPLOADS)
        try:
            wait_for(settled, timeout=DEADLINE_S, interval=0.5, what=f"{UPLOADS} rows or dead letters")
        finally:
            busy.set()
            for client in clients:
                client.join(timeout=60)
        seconds = time.monotonic() - started
        time.sleep(0.5)
        peak_kib = proc_kib(worker, "VmHWM")
        same_worker = children(stack.server.process.pid) == [worker]
        rows = warehouse.query("SELECT uri, status FROM results WHERE bucket = ?", [BUCKET])[1]
        raw = warehouse.query("SELECT COUNT(*) FROM run_googleapis_com_stdout WHERE jsonPayload.source.bucket = ?",
                              [BUCKET])[1][0][0]
        dead = dead_letters_here()
    counter.close()

    by_uri: dict = {}
    for uri, status in rows:
        by_uri.setdefault(uri, []).append(status)
    figure("burst", uploads=UPLOADS, rows=len(rows), dead_letters=len(dead),
           lost=len(set(uris) - set(by_uri) - {d.description.split("#")[0] for d in dead}),
           pushes_429=counter.tally.get(429), pushes=counter.pushes(),
           http_api_requests=sum(http_answers.values()), http_api_429=http_answers.get(429, 0),
           raw_rows=raw, peak_rss_mib=peak_kib // 1024, seconds=round(seconds, 1), upload_seconds=round(uploaded_s, 1),
           images_per_s=round(UPLOADS / seconds, 1), batch_queue=QUEUE)
    assert not dead, f"{len(dead)} dead letters: {[d.description for d in dead[:2]]}"
    assert set(by_uri) == set(uris) and len(rows) == UPLOADS
    assert all(statuses == ["ok"] for statuses in by_uri.values()), [u for u, s in by_uri.items() if s != ["ok"]][:5]
    assert counter.tally.get(429) > 0, "no push answered 429: the server was never overloaded, so redelivery went untested"
    assert peak_kib < MAX_WORKER_KIB, f"the worker peaked at {peak_kib // 1024} MiB"
    assert same_worker, "the worker was replaced during the burst"
