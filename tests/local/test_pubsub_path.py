"""The local stack's delivery path is the cloud's: an upload's bucket notification goes to
the uploads topic of Google's Pub/Sub emulator, whose push subscription (infra's retry
and dead-letter policy) posts it to the server; a push that keeps failing lands on the
dead-letter topic, where `dead-letters` lists it and `replay-dead-letters` sends it again.
In-process stacks share the session's emulator, each in a project of its own."""
from __future__ import annotations

import pytest

from functions.local import gcs, pubsub, topology
from functions.local.defaults import DEFAULT_BUCKET, HOST
from functions.local.emulator import free_port
from functions.local.server_process import FunctionsServer
from functions.local.stack import Stack, StackConfig
from functions.local.statedir import StateDir
from tests.conftest import fresh_project
from tests.local.conftest import PHOTOS, run_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.functional  # real servers on loopback

QUICK = dict(max_delivery_attempts=5)  # the fewest Pub/Sub allows


def start_stack(tmp_path, emulator, **config) -> Stack:
    state = StateDir(tmp_path / "state").ensure()
    return Stack(StackConfig(state=state, port=free_port(), gcs_port=free_port(), pubsub_host=emulator.host,
                             project=fresh_project(), **config)).start()


def results(stack: Stack, uri: str) -> list:
    return stack.warehouse.query("SELECT status, trigger, event_id, error_code FROM results WHERE uri = ?",
                                 [uri])[1] if stack.warehouse.path.exists() else []


def test_an_upload_reaches_its_row_as_a_bucket_notification_pushed_by_the_emulator(tmp_path, pubsub_emulator):
    stack = start_stack(tmp_path, pubsub_emulator)
    try:
        spec = topology.load()
        client = pubsub.subscriber(pubsub_emulator.host)
        try:
            subscriptions = {s.name.rsplit("/", 1)[1]: s for s in client.list_subscriptions(
                project=f"projects/{stack.config.project}")}
        finally:
            pubsub.close(client)
        push = subscriptions[spec.uploads.push_subscription]  # bucketeye-uploads-push, as in infra/
        assert push.topic.endswith("/topics/bucketeye-uploads")
        assert push.push_config.push_endpoint == stack.server_url + "/events/storage"
        assert push.ack_deadline_seconds == spec.retry.ack_deadline_s
        assert push.dead_letter_policy.max_delivery_attempts == spec.retry.max_delivery_attempts
        assert push.dead_letter_policy.dead_letter_topic.endswith("/topics/bucketeye-uploads-dead-letter")
        assert subscriptions[spec.requests.push_subscription].push_config.push_endpoint.endswith("/events/pubsub")
        assert spec.uploads.dead_letter_subscription in subscriptions  # dead letters are kept, not dropped

        blob = gcs.client(stack.emulator.url, stack.emulator.cert).bucket(DEFAULT_BUCKET).blob("n/coffee.png")
        blob.upload_from_filename(str(PHOTOS / "coffee.png"), content_type="image/png")
        uri = f"gs://{DEFAULT_BUCKET}/n/coffee.png"
        [(status, trigger, event_id, error)] = wait_for(lambda: results(stack, uri), what="the upload's row")
        assert (status, trigger, error) == ("ok", "storage", None)
        assert event_id and event_id.isdigit()  # the Pub/Sub message id, as a push carries it
    finally:
        stack.stop()


def test_a_push_that_keeps_failing_is_dead_lettered_listed_and_replayed(tmp_path, pubsub_emulator):
    closed = f"http://{HOST}:{free_port()}"  # storage the server cannot reach: fetch_failed, a 503, redelivery
    stack = start_stack(tmp_path, pubsub_emulator, server_env={"STORAGE_EMULATOR_HOST": closed, "FETCH_TIMEOUT_S": "1"},
                        topology=topology.load().with_retry(**QUICK))
    state = stack.state
    try:
        blob = gcs.client(stack.emulator.url, stack.emulator.cert).bucket(DEFAULT_BUCKET).blob("dl/chelsea.png")
        blob.upload_from_filename(str(PHOTOS / "chelsea.png"), content_type="image/png")
        uri = f"gs://{DEFAULT_BUCKET}/dl/chelsea.png"
        listed = wait_for(lambda: (r := run_cli("dead-letters", state=state)).returncode == 0
                          and f"{uri}#{blob.generation}" in r.stdout and r, timeout=120, interval=2,
                          what="the dead letter")
        assert "bucketeye-uploads-dead-letter" in listed.stdout and "1 dead letter(s)" in listed.stdout
        assert "after 5 attempts" in listed.stdout
        assert results(stack, uri) == [] or all(row[0] == "error" for row in results(stack, uri))
        # listing consumes nothing
        assert f"{uri}#{blob.generation}" in run_cli("dead-letters", state=state).stdout

        # The cause goes away (storage reachable again); the replay publishes the letter to its topic.
        stack.server.stop()
        fixed = FunctionsServer(host=HOST, port=stack.config.port, gcs_url=stack.emulator.url,
                                buckets=stack.config.buckets, log_path=state.logs / "server-fixed.log",
                                ca_bundle=stack.emulator.tls.ca_bundle)
        stack.sink.attach(fixed.start().stdout)
        stack.server = fixed
        fixed.wait_healthy()
        replay = run_cli("replay-dead-letters", state=state)
        assert replay.returncode == 0, replay.stderr
        assert "1 dead letter(s) published again" in replay.stdout
        wait_for(lambda: ("ok", "storage") in [row[:2] for row in results(stack, uri)], timeout=60,
                 what="the replayed notification's row")
        assert "no dead letters" in run_cli("dead-letters", state=state).stdout
    finally:
        stack.stop()


def test_dead_letter_commands_need_the_running_stack(tmp_path):
    state = StateDir(tmp_path / "idle").ensure()
    for command in ("dead-letters", "replay-dead-letters"):
        result = run_cli(command, state=state)
        assert result.returncode == 1 and "python main.py up" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_emulator_stops_at_once_with_one_line_naming_the_package(tmp_path):
    import os
    import subprocess
    import sys

    from tests.local.conftest import REPO
    env = dict(os.environ, PATH=str(tmp_path))  # no gcloud, no java
    check = subprocess.run([sys.executable, "-m", "functions.local.pubsub_emulator"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)  # what make demo / make test run first
    assert check.returncode == 1 and check.stdout == ""
    assert check.stderr.count("\n") == 1 and "google-cloud-cli-pubsub-emulator" in check.stderr
    state = StateDir(tmp_path / "state")
    up = run_cli("up", "--port", free_port(), "--gcs-port", free_port(), "--pubsub-port", free_port(), state=state,
                 env=env, timeout=60)
    assert up.returncode == 1 and "google-cloud-cli-pubsub-emulator" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr and state.running_stack() is None
