"""Several server processes (WORKERS): each loads its own model and batcher, and a
worker answers /healthz ready only once its own model is ready."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from functions.server import process_settings


def worker_pids(master_pid: int, count: int) -> set[int]:
    """gunicorn's worker processes, once `count` of them run (the master forks them in turn)."""
    deadline = time.monotonic() + 30
    while True:
        found = set()
        for task in Path(f"/proc/{master_pid}/task").glob("*/children"):
            found |= {int(pid) for pid in task.read_text().split()}
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_two_workers_each_ready_with_their_own_model(start_server, images):
    server = start_server("two-workers", env={"WORKERS": "2", "MODEL_URI": "null:"})
    workers = worker_pids(server.process.pid, 2)
    assert len(workers) == 2
    for _ in range(40):  # a new connection each time: either worker may take it
        answer = requests.get(server.url + "/healthz", timeout=5)
        body = answer.json()
        assert body["worker"] in workers
        if answer.status_code == 200:  # only from a worker whose own engine is loaded
            assert body["status"] == "ready" and body["compiles"] == 0 and body["device"]
        else:
            assert answer.status_code == 503 and body["status"] == "loading"
    photo = images.unique()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(server.url + "/", data=photo, timeout=30,
                                                        headers={"Content-Type": "image/png"}), range(24)))
    assert [a.status_code for a in answers] == [200] * 24
    assert all(a.json()["predictions"][0]["top_label"] for a in answers)


def test_no_worker_says_ready_when_its_model_cannot_serve(start_server):
    # ACCELERATOR=gpu on a machine (or model) without one: every worker fails its load.
    server = start_server("no-gpu-workers", env={"WORKERS": "2", "MODEL_URI": "null:", "ACCELERATOR": "gpu"},
                          ready=lambda r: r.status_code == 503 and r.json().get("status") == "failed")
    assert len(worker_pids(server.process.pid, 2)) == 2
    for _ in range(20):
        answer = requests.get(server.url + "/healthz", timeout=5)
        assert answer.status_code == 503
        assert "ACCELERATOR=gpu" in answer.json()["error"]["message"]
    # Each worker logs its own failure; the probe above may have reached the first one only.
    deadline = time.monotonic() + 30
    while True:
        failures = [line for line in server.log.raw_lines() if '"model_load_failed"' in line]
        if len(failures) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(failures) == 2 and all("ACCELERATOR=gpu" in line and '"ERROR"' in line for line in failures)


def test_workers_share_the_vcpus():
    assert process_settings({"WORKERS": "2"})["WORKERS"] == "2"
    shared = process_settings({"WORKERS": "1"})
    assert shared["INFERENCE_THREADS"] == shared["DECODE_WORKERS"] != "0"
    every = process_settings({"WORKERS": "0"})
    assert int(every["WORKERS"]) >= 1 and every["INFERENCE_THREADS"] == "1"  # one vCPU each
    assert process_settings({"WORKERS": "0", "DECODE_WORKERS": "16"})["DECODE_WORKERS"] == "16"  # set: kept
