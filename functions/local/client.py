"""What the commands do against a running stack: upload files to its bucket, publish
messages to its requests topic, wait for rows."""
from __future__ import annotations

import base64
import json
import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path

from functions.console.errors import EXIT_USAGE, CommandError
from functions.console.ui import progress
from functions.local import gcs, pubsub, topology
from functions.local.statedir import StateDir
from functions.warehouse.store import Warehouse
from shared.errors import BucketeyeError
from shared.storage import parse_gs_uri

PUBSUB_MAX_BYTES = 10 * 1024 * 1024  # Pub/Sub's message size limit


def running(state: StateDir) -> dict:
    info = state.running_stack()
    if info is None:
        raise CommandError("the local stack is not running: start it with `python main.py up` "
                           "(in another terminal), or run `python main.py demo`")
    if not info.get("gcs_url"):
        raise CommandError(f"the local stack on {state.root} is still starting: try again in a moment")
    if not gcs.reachable(info["gcs_url"], info.get("gcs_cert")):
        raise CommandError(f"the local stack's GCS emulator does not answer on {info['gcs_url']}: "
                           "restart the stack with `python main.py up`")
    return info


def check_bucket(info: dict, bucket: str) -> None:
    if bucket not in info.get("buckets", []):
        served = ", ".join(info.get("buckets", [])) or "none"
        raise CommandError(f"unknown bucket {bucket!r}: the local stack serves {served}. Restart it with "
                           f"`python main.py up --bucket {bucket}` to add it", EXIT_USAGE)


@dataclass
class Uploaded:
    path: str
    bucket: str
    name: str
    generation: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def object_names(paths: list[str], prefix: str) -> list[tuple[str, str]]:
    """(local file, object name) pairs: files by their name, directories walked (image files)."""
    from functions.cli_args import IMAGE_SUFFIXES
    pairs = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                pairs.append((str(item), prefix + item.relative_to(path).as_posix()))
        elif path.is_file():
            pairs.append((given, prefix + path.name))
        else:
            raise CommandError(f"no such file or directory: {given}", EXIT_USAGE)
    if not pairs:
        raise CommandError("no image files found in " + " ".join(paths), EXIT_USAGE)
    return pairs


def upload(info: dict, pairs: list[tuple[str, str]], bucket: str, *, advance=lambda item: None) -> list[Uploaded]:
    storage = gcs.client(info["gcs_url"], info.get("gcs_cert")).bucket(bucket)
    done = []
    for path, name in pairs:
        blob = storage.blob(name)
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        blob.upload_from_filename(path, content_type=content_type, timeout=60)
        item = Uploaded(path, bucket, name, str(blob.generation))
        done.append(item)
        advance(item)
    return done


def requests_topic(info: dict) -> str:
    return topology.topic_path(info["project"], topology.load().requests.topic)


def _publish(info: dict, data: bytes, what: str) -> str:
    from google.api_core.exceptions import GoogleAPICallError
    try:
        return pubsub.publish(info["pubsub_host"], requests_topic(info), data)
    except (GoogleAPICallError, TimeoutError) as exc:
        raise CommandError(f"publishing {what} to the local Pub/Sub emulator ({info['pubsub_host']}) failed: "
                           f"{exc}") from None


def publish_uris(info: dict, uris: list[str]) -> str:
    for uri in uris:
        try:
            target = parse_gs_uri(uri)
        except BucketeyeError as exc:
            raise CommandError(exc.message, EXIT_USAGE) from None
        check_bucket(info, target.bucket)
    data = {"uri": uris[0]} if len(uris) == 1 else {"uris": uris}
    return _publish(info, json.dumps(data).encode(), " ".join(uris))


def publish_image(info: dict, path: str) -> str:
    if not os.path.isfile(path):
        raise CommandError(f"no such file: {path}", EXIT_USAGE)
    raw = Path(path).read_bytes()
    data = json.dumps({"b64": base64.b64encode(raw).decode(), "key": Path(path).name}).encode()
    if len(data) > PUBSUB_MAX_BYTES:
        raise CommandError(f"{path} is {len(raw) / 1e6:.1f} MB; inline in a Pub/Sub message (base64) it would exceed "
                           "Pub/Sub's 10 MB limit: upload it instead (`python main.py upload`)", EXIT_USAGE)
    return _publish(info, data, path)


def wait_for_rows(warehouse: Warehouse, uploaded: list[Uploaded], *, state: StateDir, failure=None,
                  timeout_s: float = 180.0) -> list[tuple]:
    """Until every upload has its row in the results view (a progress bar meanwhile);
    returns those rows: (uri, generation, object, top_label, score, total_ms, error_code)."""
    wanted = {(item.uri, item.generation) for item in uploaded}
    sql = ("SELECT uri, generation, object, top_label, ROUND(top_score, 3), ROUND(total_ms, 1), error_code "
           "FROM results WHERE uri IN (SELECT UNNEST(?::VARCHAR[]))")
    deadline = time.monotonic() + timeout_s
    landed: dict = {}
    with progress() as bar:
        task = bar.add_task("classified, in the table", total=len(wanted))
        while True:
            if warehouse.path.exists():
                rows = warehouse.query(sql, [sorted({uri for uri, _ in wanted})])[1]
                landed = {(row[0], row[1]): row for row in rows if (row[0], row[1]) in wanted}
                bar.update(task, completed=len(landed))
                if len(landed) == len(wanted):
                    return [landed[(item.uri, item.generation)] for item in uploaded]
            problem = failure() if failure else None
            if problem:
                raise CommandError(problem)
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(uri for uri, generation in wanted if (uri, generation) not in landed))
                raise CommandError(f"no row after {timeout_s:.0f} s for: {missing}. See {state.logs / 'server.log'} "
                                   "and `python main.py dead-letters`")
            time.sleep(0.2)
