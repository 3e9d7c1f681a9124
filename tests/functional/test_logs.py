"""The server's stdout is the log stream Cloud Logging ingests: JSON lines only, the
logging library's diagnostic entry first, then one line per classified image, and no
secret from a request URL anywhere."""
from __future__ import annotations

import json

import requests
from _functional_support import ALLOWED_BUCKET, COFFEE_IDS, new_id

DIAGNOSTIC = "logging.googleapis.com/diagnostic"


def test_no_secrets_in_logs(start_server, events, gcs, images):
    """The first requests a fresh process serves carry secrets in their query strings (a
    Pub/Sub push endpoint's ?token=, a signed-URL-like query): none reaches a log."""
    server = start_server("secrets")
    secret = "s3cr3t" + new_id()
    cat = gcs.upload(images.chelsea)
    signed = (f"X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=bucketeye%40demo.iam.gserviceaccount.com"
              f"&X-Goog-Signature={secret}&token={secret}")

    responses = [
        events.post_json(f"{server.url}/events/pubsub?token={secret}",
                         events.envelope(f"gs://{ALLOWED_BUCKET}/{cat['name']}".encode())),
        requests.post(f"{server.url}/?{signed}", data=images.coffee, headers={"Content-Type": "image/png"},
                      timeout=60),
        requests.post(f"{server.url}/events/storage?token={secret}", data=b"junk",
                      headers={"Content-Type": "application/json"}, timeout=30),
        requests.post(f"{server.url}/?token={secret}", data=b"not an image", timeout=30),
        requests.get(f"{server.url}/?token={secret}", timeout=10),
        requests.get(f"{server.url}/nowhere?token={secret}", timeout=10),
    ]

    assert [r.status_code for r in responses] == [200, 200, 200, 415, 200, 404]
    lines = server.log.wait_results(0, 4)
    assert [line["status"] for line in lines] == ["ok", "ok", "error", "error"]
    assert lines[1]["predictions"][0]["label_id"] in COFFEE_IDS
    stdout = server.log.path.read_text()
    assert server.log.raw_lines()[0].startswith("{") and DIAGNOSTIC in stdout
    assert secret not in stdout
    assert secret not in server.stderr_tail(10 ** 7)


def test_stdout_is_json_lines_diagnostic_first(server, images):
    for data in (images.coffee, b"junk"):
        requests.post(server.url + "/", data=data, headers={"Content-Type": "image/png"}, timeout=60)
    server.log.wait_results(0, 2)

    raw = server.log.raw_lines()
    parsed = [json.loads(line) for line in raw]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in parsed)
    first, rest = parsed[0], parsed[1:]
    assert DIAGNOSTIC in first and "app" not in first
    assert first[DIAGNOSTIC]["instrumentation_source"][0]["name"] == "python"
    assert "httpRequest" not in first or not first["httpRequest"].get("requestUrl")
    # result lines, and operational lines (no `app` tag: the sink never exports them)
    assert all(entry.get("app") == "bucketeye" or ("event" in entry and "app" not in entry) for entry in rest)
    assert [entry["event"] for entry in rest if "app" not in entry] == ["model_ready"]
    assert sum(DIAGNOSTIC in entry for entry in parsed) == 1


def test_one_line_per_image_with_the_record_fields(server, images):
    mark = server.log.mark()

    response = requests.post(server.url + "/", files=[("f", (f"{i}.png", images.coffee, "image/png"))
                                                      for i in range(3)], timeout=60)

    assert response.status_code == 200
    lines = server.log.wait_results(mark, 3)
    for line in lines:
        assert {"app", "schema_version", "result_id", "status", "source", "image", "model", "predictions",
                "top_label", "top_score", "timings_ms", "error", "severity", "message"} <= set(line)
        assert line["schema_version"] == 1
        assert set(line["source"]) >= {"trigger", "uri", "bucket", "object", "generation", "event_id",
                                       "content_type", "size_bytes"}
        assert line["httpRequest"] == {}
    # the same bytes are the same source: one result_id, three lines (HTTP is not de-duplicated)
    assert len({line["result_id"] for line in lines}) == 1
