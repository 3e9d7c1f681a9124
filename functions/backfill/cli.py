"""`python main.py backfill`: the flags, and the pieces they choose (where to list, where
to publish, where to look for results, where to keep the checkpoint).

Cloud (the default): list with google-cloud-storage, publish to the requests topic with
google-cloud-pubsub, skip what BigQuery's `results` view already has. Local (`--local`,
or `--state-dir DIR`): list the running local stack's GCS emulator, publish to the
requests topic on its Pub/Sub emulator, skip what its DuckDB warehouse already has.
"""
from __future__ import annotations

import argparse
import json
import os
import urllib.request
from pathlib import Path

from functions.cli_args import positive_int
from functions.console.errors import EXIT_USAGE, CommandError
from functions.routes import HEALTH_ROUTE

DEFAULT_PER_MESSAGE = 50
DEFAULT_TOPIC_NAME = "bucketeye-requests"   # Terraform: "${var.service_name}-requests"
DEFAULT_DATASET = "bucketeye"                # Terraform: var.dataset_id


def _page_size(text: str) -> int:
    value = positive_int(text)
    if value > 1000:
        raise argparse.ArgumentTypeError("Cloud Storage lists at most 1000 objects per page")
    return value


def add_commands(sub, state_parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "backfill", parents=[state_parent],
        help="classify the images a bucket already holds: list, skip what has results, publish work messages",
        description="List gs://BUCKET[/PREFIX], skip images that already have a result for the model, and publish "
                    'the rest as work messages ({"uris": [...]}) to the requests topic (with --local, the one on the '
                    "local stack's Pub/Sub emulator). Interrupted runs continue from their checkpoint.")
    p.add_argument("target", metavar="gs://BUCKET[/PREFIX]", help="the bucket, or the object-name prefix, to classify")
    p.add_argument("--local", action="store_true", help="feed the local stack (also implied by --state-dir)")
    p.add_argument("--topic", default=None, help="requests topic, projects/P/topics/T (default: $BACKFILL_TOPIC, "
                   f"else projects/$GOOGLE_CLOUD_PROJECT/topics/{DEFAULT_TOPIC_NAME})")
    p.add_argument("--project", default=None, help="project for the default topic and dataset "
                   "(default: $GOOGLE_CLOUD_PROJECT)")
    p.add_argument("--results", default=None, metavar="PROJECT.DATASET|FILE.duckdb|none",
                   help="where to look for existing results (default: $BACKFILL_RESULTS, else the topic's project's "
                        f"{DEFAULT_DATASET} dataset; locally the stack's warehouse)")
    p.add_argument("--model", default=None, metavar="ID",
                   help="the model id the target service runs (name@version, as in results' model.id): images with "
                        "a result of this id are skipped; other ids' rows are left alone (default: $BACKFILL_MODEL_ID; "
                        "locally the running server's model; else the built-in model)")
    p.add_argument("--per-message", type=positive_int, default=DEFAULT_PER_MESSAGE, metavar="N",
                   help=f"URIs per message (default {DEFAULT_PER_MESSAGE}; at most MAX_INSTANCES)")
    p.add_argument("--page-size", type=_page_size, default=1000, metavar="N",
                   help="objects per listing page, and per checkpoint (default 1000)")
    p.add_argument("--dry-run", action="store_true", help="list and check, print what would be sent and what it "
                   "would cost; publish nothing")
    p.add_argument("--restart", action="store_true", help="ignore the checkpoint of an unfinished run")
    p.add_argument("--redo-errors", action="store_true", help="send images whose result is an error again")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="where checkpoints are kept (default .backfill/; locally STATE/backfill/)")
    p.add_argument("--wait", action="store_true", help="afterwards, watch the results of the images sent land")
    p.add_argument("--wait-timeout", type=float, default=None, metavar="S",
                   help="how long --wait waits (default 600 s locally, 6 h in the cloud)")


def run(args) -> int:
    from functions.backfill.session import Session
    from functions.backfill.target import parse_target
    target = parse_target(args.target)
    local = args.local or args.state_dir is not None
    if local and args.topic:
        raise CommandError("--topic publishes to Pub/Sub; --local (or --state-dir) feeds the local stack: "
                           "choose one", EXIT_USAGE)
    setup = _local_setup(args, target) if local else _cloud_setup(args, target)
    return Session(args, target, **setup).run()


def builtin_model_id() -> str:
    from shared.models.default_model import NAME, VERSION
    return f"{NAME}@{VERSION}"


def _server_model_id(server_url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{server_url}{HEALTH_ROUTE}", timeout=5) as response:
            return json.load(response)["model"]["id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _local_setup(args, target) -> dict:
    from functions.backfill import done
    from functions.backfill.publishers import PubSubPublisher
    from functions.local import client, gcs
    from functions.local.statedir import resolve
    state = resolve(args.state_dir)
    info = client.running(state)
    client.check_bucket(info, target.bucket)
    model_id = args.model or os.environ.get("BACKFILL_MODEL_ID") or _server_model_id(info["server_url"])
    topic = client.requests_topic(info)
    results = done.open_results(args.results, redo_errors=args.redo_errors) if args.results \
        else done.DuckDBResults(state.warehouse, redo_errors=args.redo_errors)
    landed = done.open_results(args.results, which="any") if args.results \
        else done.DuckDBResults(state.warehouse, which="any")
    return dict(storage=lambda: gcs.client(info["gcs_url"], info.get("gcs_cert")), results=results, landed=landed,
                publisher=None if args.dry_run else PubSubPublisher(topic, emulator_host=info["pubsub_host"]),
                destination=f"local:{state.root}",
                destination_text=f"{topic} on the local Pub/Sub emulator ({info['pubsub_host']})",
                model_id=model_id or builtin_model_id(),
                checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else state.root / "backfill",
                wait_interval_s=1.0, wait_timeout_s=args.wait_timeout or 600.0)


def _cloud_setup(args, target) -> dict:
    from functions.backfill import done, listing
    from functions.backfill.publishers import PubSubPublisher, topic_path
    project = args.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    topic = args.topic or os.environ.get("BACKFILL_TOPIC") or (DEFAULT_TOPIC_NAME if project else None)
    if not topic:
        raise CommandError("where should the work go? give --topic projects/PROJECT/topics/TOPIC, set BACKFILL_TOPIC "
                           "(export $(terraform -chdir=infra output -raw backfill_env)) or GOOGLE_CLOUD_PROJECT, or "
                           "use --local for the local stack", EXIT_USAGE)
    topic = topic_path(topic, project)
    spec = args.results or os.environ.get("BACKFILL_RESULTS") or f"{topic.split('/')[1]}.{DEFAULT_DATASET}"
    return dict(storage=listing.storage_client, results=done.open_results(spec, redo_errors=args.redo_errors),
                landed=done.open_results(spec, which="any"),
                publisher=None if args.dry_run else PubSubPublisher(topic),
                destination=topic, destination_text=topic,
                model_id=args.model or os.environ.get("BACKFILL_MODEL_ID") or builtin_model_id(),
                checkpoint_dir=Path(args.checkpoint_dir or ".backfill"),
                wait_interval_s=30.0, wait_timeout_s=args.wait_timeout or 6 * 3600.0)
