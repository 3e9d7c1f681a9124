"""Concurrent requests share one batcher: they all succeed, they really are batched, and a
full queue answers 429 + Retry-After (never 500) while the server stays healthy."""
from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from _functional_support import ALLOWED_BUCKET, CAT_IDS, COFFEE_IDS

from shared.config import Settings
from shared.models.default_model import ensure_default_model


def _burst(url: str, bodies: list[tuple[bytes, str]]) -> list[requests.Response]:
    """POST every body at once (threads released together by a barrier), in order."""
    barrier = threading.Barrier(len(bodies))

    def post(item):
        data, content_type = item
        barrier.wait(timeout=30)
        return requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=120)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.fixture(scope="module")
def batching_server(start_server, tmp_path_factory):
    """The built-in model as a SavedModel alone: the runtime that batches (the GPU service's).
    On CPU, LiteRT runs one image per call in lanes instead (tests/unit/test_batching.py)."""
    built = ensure_default_model(Settings.from_env().model_cache_dir)
    bundle = tmp_path_factory.mktemp("savedmodel-bundle")
    (bundle / "saved_model").symlink_to(built / "saved_model", target_is_directory=True)
    for name in ("labels.txt", "model.json"):
        shutil.copy(built / name, bundle / name)
    return start_server("batching", env={"BATCH_MAX_DELAY_MS": "50", "BATCH_MAX_SIZE": "8", "MODEL_URI": str(bundle)})


@pytest.fixture(scope="module")
def tiny_queue_server(start_server):
    return start_server("tiny-queue", env={"BATCH_QUEUE_SIZE": "1", "BATCH_MAX_SIZE": "1", "DECODE_WORKERS": "8"})


def test_sixteen_concurrent_requests_are_batched(batching_server, images):
    server = batching_server
    bodies = [(images.chelsea, "image/png") if i % 2 else (images.coffee_jpeg, "image/jpeg") for i in range(16)]
    mark = server.log.mark()

    responses = _burst(server.url + "/?top_k=1", bodies)

    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses if r.status_code != 200]
    for i, response in enumerate(responses):
        [prediction] = response.json()["predictions"]
        assert prediction["predictions"][0]["label_id"] in (CAT_IDS if i % 2 else COFFEE_IDS), (i, prediction)
    lines = server.log.wait_results(mark, 16)
    assert sorted(line["result_id"] for line in lines) == sorted(r.json()["predictions"][0]["result_id"]
                                                                 for r in responses)
    # Images of one batch share one model run: its inference time is the same number in each
    # of their lines. Fewer distinct runs than images means requests were batched together.
    runs = Counter(line["timings_ms"]["inference"] for line in lines)
    assert len(runs) < 16 and max(runs.values()) >= 2, runs
    assert sum(runs.values()) == 16
    waited = [line["timings_ms"]["queue"] for line in lines]
    assert max(waited) >= 10.0, waited  # the first image of a batch waited for others to join


def test_full_queue_answers_429_never_500(tiny_queue_server, images):
    server = tiny_queue_server
    statuses: Counter = Counter()
    overloaded = []
    for _ in range(3):  # one burst nearly always overflows a one-slot queue; allow a few
        responses = _burst(server.url + "/", [(images.coffee_jpeg, "image/jpeg")] * 24)
        statuses.update(r.status_code for r in responses)
        overloaded += [r for r in responses if r.status_code == 429]
        if overloaded:
            break

    assert set(statuses) <= {200, 429}, statuses
    assert overloaded and statuses[200] >= 1, statuses
    for response in overloaded:
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
    health = requests.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    after = requests.post(server.url + "/", data=images.chelsea, headers={"Content-Type": "image/png"}, timeout=60)
    assert after.status_code == 200
    assert after.json()["predictions"][0]["predictions"][0]["label_id"] in CAT_IDS


def test_overloaded_event_is_redelivered_and_finished(tiny_queue_server, gcs, images, events):
    """Overloaded images of a message answer 429 (redeliver); the next delivery classifies only
    the images still missing, so each image ends with exactly one ok line."""
    server = tiny_queue_server
    uris = [f"gs://{ALLOWED_BUCKET}/{gcs.upload(images.coffee_jpeg, content_type='image/jpeg')['name']}"
            for _ in range(12)]
    envelope = events.envelope(json.dumps(uris).encode())
    mark = server.log.mark()

    responses = []
    for _ in range(10):  # the platform redelivers until it is acknowledged
        responses.append(events.post_json(server.url + "/events/pubsub", envelope))
        if responses[-1].status_code == 200:
            break

    assert len(responses) >= 2, "12 images never overflowed a one-slot queue"
    assert [r.status_code for r in responses[:-1]] == [429] * (len(responses) - 1)
    assert responses[-1].status_code == 200, [r.text for r in responses]
    assert all(r.headers["Retry-After"] == "1" for r in responses[:-1])
    lines = server.log.results(mark)
    ok = [line for line in lines if line["status"] == "ok"]
    assert sorted(line["source"]["uri"] for line in ok) == sorted(uris)  # each image once
    assert all(line["error"]["code"] == "overloaded" and line["severity"] == "ERROR"
               for line in lines if line["status"] != "ok")
    assert all(line["predictions"][0]["label_id"] in COFFEE_IDS for line in ok)
