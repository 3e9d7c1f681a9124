"""Byte-input models served for real: the AI Platform-style detector and the built-in
classifier behind `encoded_image` (tests/byte_models.py), each as MODEL_URI of `main.py
serve`, through HTTP, Cloud Storage events and Pub/Sub, and the detector's boxes read back
through the local sink into the DuckDB `results` view (the BigQuery view's SQL)."""
from __future__ import annotations

import base64
import json

import pytest
from _functional_support import ALLOWED_BUCKET, CAT_IDS, COFFEE_IDS, new_id

from functions.warehouse.sink import Sink
from functions.warehouse.store import Warehouse
from tests.byte_models import built, encode, paint_boxes, photo

CORNERS = ("ymin", "xmin", "ymax", "xmax")
# A different pair of rectangles (left, top, right, bottom) per picture, so no answer fits two.
LAYOUTS = {
    "a": {1: (20, 30, 120, 90), 2: (200, 150, 300, 290)},
    "b": {1: (300, 10, 440, 60)},
    "c": {2: (5, 200, 60, 295), 1: (100, 100, 180, 180)},
}


@pytest.fixture(scope="module")
def detector(start_server):
    return start_server("byte-detector", env={"MODEL_URI": built("detector"), "SCORE_THRESHOLD": "0.5"})


@pytest.fixture(scope="module")
def classifier(start_server):
    return start_server("byte-classifier", env={"MODEL_URI": built("classifier")})


@pytest.fixture(scope="module")
def pictures():
    """{name: (PNG bytes, JPEG bytes, ground truth)} painted on the cat photo (451 x 300)."""
    out = {}
    for name, layout in LAYOUTS.items():
        img, truth = paint_boxes(photo("chelsea.png"), layout)
        out[name] = (encode(img, "PNG"), encode(img, "JPEG", quality=92), truth)
    return out


def _check_boxes(detections: list[dict], truth: dict, tolerance: float) -> None:
    found = {d["label_id"]: d for d in detections}
    assert set(found) == set(truth), detections
    for class_id, box in truth.items():
        assert found[class_id]["label"] == ("magenta_box" if class_id == 1 else "cyan_box")
        assert found[class_id]["score"] > 0.9
        got = [found[class_id]["box"][corner] for corner in CORNERS]
        assert all(abs(g - t) <= tolerance for g, t in zip(got, box)), (class_id, got, box)
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_http_instances_in_the_ai_platform_shape(detector, events, pictures):
    png, jpeg, truth = pictures["a"]
    body = {"instances": [{"image_bytes": {"b64": _b64(png)}, "key": "first"},
                          {"encoded_image": {"b64": _b64(jpeg)}, "key": "second"},
                          {"image": {"b64": _b64(encode(photo("coffee.png")))}, "key": "no boxes"}]}
    mark = detector.log.mark()

    response = events.post_json(detector.url + "/", body)

    assert response.status_code == 200, response.text
    first, second, empty = response.json()["predictions"]
    assert [first["key"], second["key"], empty["key"]] == ["first", "second", "no boxes"]
    _check_boxes(first["detections"], truth, 1e-6)
    _check_boxes(second["detections"], truth, 0.01)
    assert "detections" not in empty and empty["top_label"] is None
    assert first["image"] == {"format": "PNG", "width": 451, "height": 300}
    assert second["image"]["format"] == "JPEG" and first["model"]["id"] == "box_detector@1"
    lines = detector.log.wait_results(mark, 3)
    assert [line["source"]["key"] for line in lines] == ["first", "second", "no boxes"]
    assert [line["source"]["size_bytes"] for line in lines[:2]] == [len(png), len(jpeg)]


def test_http_refuses_what_the_model_cannot_decode(detector, events):
    from PIL import Image
    tiff = encode(Image.new("RGB", (20, 20), (255, 0, 255)), "TIFF")

    response = events.post_json(detector.url + "/", {"instances": [{"image_bytes": {"b64": _b64(tiff)}}]})

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["error"]["code"] == "unsupported_format"


def test_storage_event(detector, gcs, events, pictures):
    _, jpeg, truth = pictures["b"]
    resource = gcs.upload(jpeg, name=f"boxes/{new_id()}.jpg", content_type="image/jpeg")
    mark = detector.log.mark()

    response = events.post_binary(detector.url + "/events/storage", events.storage(resource))

    assert response.status_code == 200, response.text
    line = detector.log.one_result(mark)
    assert line["status"] == "ok" and line["source"]["trigger"] == "storage"
    assert line["source"]["content_md5"] == resource["md5Hash"]
    assert line["image"] == {"format": "JPEG", "width": 451, "height": 300}
    _check_boxes(line["detections"], truth, 0.01)
    assert line["top_label"] == line["detections"][0]["label"]


@pytest.mark.parametrize("carrier", ["push", "cloudevent"])
def test_pubsub_messages(detector, gcs, events, pictures, carrier):
    png, _, truth = pictures["c"]
    resource = gcs.upload(png, name=f"boxes/{new_id()}.png")
    envelope = events.envelope(json.dumps({"uris": [f"gs://{ALLOWED_BUCKET}/{resource['name']}"]}).encode())
    mark = detector.log.mark()

    if carrier == "push":
        response = events.post_json(detector.url + "/events/pubsub", envelope)
    else:
        response = events.post_binary(detector.url + "/events/pubsub", events.pubsub(envelope))

    assert response.status_code == 200, response.text
    line = detector.log.one_result(mark)
    assert line["source"]["trigger"] == "pubsub" and line["source"]["uri"].endswith(resource["name"])
    _check_boxes(line["detections"], truth, 1e-6)


def test_inline_pubsub_image(detector, events, pictures):
    png, _, truth = pictures["a"]
    mark = detector.log.mark()

    response = events.post_json(detector.url + "/events/pubsub", events.envelope(png))

    assert response.status_code == 200, response.text
    _check_boxes(detector.log.one_result(mark)["detections"], truth, 1e-6)


def test_boxes_through_the_sink_into_the_results_view(detector, gcs, events, pictures, tmp_path):
    """The server's stdout, through the local sink's filter and LogEntry shape, queried with
    the `results` view (infra/sql/results.sql) as BigQuery would be."""
    truths = {}
    mark = detector.log.mark()
    for name, (png, _, truth) in pictures.items():
        resource = gcs.upload(png, name=f"view/{name}-{new_id()}.png")
        assert events.post_binary(detector.url + "/events/storage", events.storage(resource)).status_code == 200
        truths[f"gs://{ALLOWED_BUCKET}/{resource['name']}"] = truth
    detector.log.wait_results(mark, len(pictures))

    warehouse = Warehouse(tmp_path / "bucketeye.duckdb")
    sink = Sink(warehouse, backlog=tmp_path / "backlog.jsonl", interval_s=0.01).start()
    try:
        for raw in detector.log.raw_lines():
            sink.feed(raw)
        assert sink.flush()
    finally:
        sink.stop()
    _, rows = warehouse.query(
        "SELECT r.uri, d.label_id, d.label, d.score, d.box.ymin, d.box.xmin, d.box.ymax, d.box.xmax "
        "FROM results AS r CROSS JOIN UNNEST(r.detections) AS d "
        "WHERE r.model_id = 'box_detector@1' AND r.uri LIKE 'gs://%/view/%' ORDER BY r.uri, d.label_id")

    by_uri: dict = {}
    for uri, label_id, label, score, *box in rows:
        by_uri.setdefault(uri, []).append({"label_id": int(label_id), "label": label, "score": score,
                                           "box": dict(zip(CORNERS, box))})
    assert set(by_uri) == set(truths)
    for uri, truth in truths.items():
        detections = sorted(by_uri[uri], key=lambda d: -d["score"])
        _check_boxes(detections, truth, 1e-6)


def test_wrapped_classifier_labels_real_photos(classifier, events, images):
    body = {"instances": [{"image_bytes": {"b64": _b64(images.chelsea)}, "key": "cat"},
                          {"image_bytes": {"b64": _b64(images.coffee_jpeg)}, "key": "coffee"}]}

    response = events.post_json(classifier.url + "/", body)

    assert response.status_code == 200, response.text
    cat, coffee = response.json()["predictions"]
    assert cat["predictions"][0]["label_id"] in CAT_IDS, cat
    assert coffee["predictions"][0]["label_id"] in COFFEE_IDS, coffee
    assert cat["model"]["id"] == "efficientnet_lite0_bytes@1"
    assert coffee["image"] == {"format": "JPEG", "width": 600, "height": 400}


def test_wrapped_classifier_through_a_storage_event(classifier, gcs, events, images):
    resource = gcs.upload(images.chelsea, name=f"cats/{new_id()}.png")
    mark = classifier.log.mark()

    response = events.post_structured(classifier.url + "/events/storage", events.storage(resource))

    assert response.status_code == 200, response.text
    line = classifier.log.one_result(mark)
    assert line["predictions"][0]["label_id"] in CAT_IDS and line["image"]["format"] == "PNG"
