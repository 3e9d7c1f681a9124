"""Local-stack commands for `python main.py` (up, down, demo, upload, publish, query,
results, dead-letters, replay-dead-letters). Problems the user can fix end as one clear line on
stderr and an exit code (1 failed, 2 usage), never a traceback."""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import time

from functions.cli_args import positive_int
from functions.console.errors import EXIT_USAGE, CommandError

RESULTS_SQL = """SELECT timestamp, COALESCE(uri, key, trigger || ' ' || event_id) AS source, status, top_label,
       ROUND(top_score, 3) AS score, ROUND(total_ms, 1) AS total_ms, error_code
FROM results
ORDER BY timestamp DESC
LIMIT {limit}"""


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 1-65535")
    return value


def _bucket_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a bucket name: 3-63 lowercase letters, digits, "
                                         "dots, dashes or underscores")
    return text


def state_parent() -> argparse.ArgumentParser:
    """The --state-dir flag every command on the local state shares."""
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", default=None, metavar="DIR",
                       help="where the local stack keeps everything (default: $BUCKETEYE_STATE_DIR or .state/)")
    return state


def add_commands(sub, state: argparse.ArgumentParser) -> None:
    """Register this module's subcommands on the main parser's subparsers."""
    from functions.local.defaults import DEFAULT_BUCKET, DEFAULT_GCS_PORT, DEFAULT_PORT, DEFAULT_PUBSUB_PORT
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument("--port", type=_port, default=None, help=f"functions server port (default {DEFAULT_PORT})")
    stack.add_argument("--gcs-port", type=_port, default=None, help=f"GCS emulator port (default {DEFAULT_GCS_PORT})")
    stack.add_argument("--pubsub-port", type=_port, default=None,
                       help=f"Pub/Sub emulator port (default {DEFAULT_PUBSUB_PORT})")
    stack.add_argument("--bucket", dest="buckets", action="append", default=[], metavar="NAME", type=_bucket_name,
                       help=f"another bucket to create, whose uploads are classified (always: {DEFAULT_BUCKET}); "
                       "repeatable")

    sub.add_parser("up", parents=[state, stack], help="run the local stack (GCS and Pub/Sub emulators, server, "
                   "sink into DuckDB) until Ctrl-C")
    sub.add_parser("down", parents=[state], help="stop the local stack started by `up` on this state directory")
    demo = sub.add_parser("demo", parents=[state, stack], help="the product end to end: upload photos, classify, "
                          "query the results in SQL")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack running afterwards (Ctrl-C stops)")

    upload = sub.add_parser("upload", parents=[state], help="upload image files to the local stack's bucket")
    upload.add_argument("paths", nargs="+", metavar="PATH", help="image file or directory")
    upload.add_argument("--bucket", default=DEFAULT_BUCKET, type=_bucket_name, help=f"default {DEFAULT_BUCKET}")
    upload.add_argument("--prefix", default="", help="object name prefix, e.g. photos/")
    upload.add_argument("--wait", action="store_true", help="wait for each upload's row and show the results")

    publish = sub.add_parser("publish", parents=[state], help="publish a Pub/Sub message (gs:// URIs or an inline "
                             "image) to the running local stack's requests topic")
    publish.add_argument("uris", nargs="*", metavar="gs://BUCKET/OBJECT", help="images to classify (one message)")
    publish.add_argument("--image", action="append", default=[], metavar="PATH",
                         help="an image file sent inline (base64) in its own message; repeatable")

    query = sub.add_parser("query", parents=[state], help="run SQL on the local results (DuckDB; BigQuery's table "
                           "and view names)")
    query.add_argument("sql", help='e.g. "SELECT top_label, COUNT(*) FROM results GROUP BY 1"')

    results = sub.add_parser("results", parents=[state], help="the latest rows of the results view")
    results.add_argument("--limit", type=positive_int, default=20)

    sub.add_parser("dead-letters", parents=[state], help="list the messages the dead-letter topics hold")
    sub.add_parser("replay-dead-letters", parents=[state], help="publish the dead letters again to the topics they "
                   "came from")


def _state(args):
    from functions.local.statedir import resolve
    return resolve(args.state_dir)


def _config(args, *, any_free_port: bool = False):
    """The stack's settings from the flags. any_free_port: a default port that is taken is
    swapped for a free one (the demo needs no fixed address; `up` does, and says so)."""
    from functions.local.defaults import DEFAULT_BUCKET, DEFAULT_GCS_PORT, DEFAULT_PORT, DEFAULT_PUBSUB_PORT
    from functions.local.emulator import free_port
    from functions.local.stack import StackConfig, port_is_free
    ports = []
    for given, default in ((args.port, DEFAULT_PORT), (args.gcs_port, DEFAULT_GCS_PORT),
                           (args.pubsub_port, DEFAULT_PUBSUB_PORT)):
        port = default if given is None else given
        if given is None and any_free_port and not port_is_free(port):
            port = free_port()
        ports.append(port)
    buckets = tuple(dict.fromkeys([DEFAULT_BUCKET, *args.buckets]))
    return StackConfig(state=_state(args).ensure(), port=ports[0], gcs_port=ports[1], pubsub_port=ports[2],
                       buckets=buckets)


def _log_to_file(state) -> None:
    """The stack's own diagnostics go to logs/stack.log; warnings also to the terminal."""
    handler = logging.FileHandler(state.logs / "stack.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bucketeye.local")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("bucketeye: %(message)s"))
    root.addHandler(console)
    root.propagate = False


def cmd_up(args) -> int:
    from functions.console.ui import console
    from functions.local import lifecycle
    from functions.local.stack import Stack
    from functions.local.ui import result_line, stack_card
    config = _config(args)
    _log_to_file(config.state)

    # Each row as it lands; dead letters and other trouble come through the log (stderr).
    stack = Stack(config, on_rows=lambda rows: [console.print(result_line(r)) for r in rows])
    with lifecycle.sigterm_interrupts():
        try:
            lifecycle.start(stack)
            console.print(stack_card(stack.info, config.state.root))
            lifecycle.wait_until_stopped(stack)
        except KeyboardInterrupt:
            pass
        finally:
            lifecycle.stop(stack)
    console.print("local stack stopped")
    return 0


def cmd_down(args) -> int:
    from functions.console.ui import console
    state = _state(args)
    info = state.running_stack()
    if info is None:
        console.print(f"no local stack is running on {state.root}", markup=False)
        return 0
    if not info.get("pid"):
        raise CommandError(f"a local stack holds {state.lock_path} but has not written its pid yet; try again")
    os.kill(int(info["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 60
    with console.status("stopping the local stack"):
        while state.running_stack() is not None:
            if time.monotonic() > deadline:
                raise CommandError(f"the local stack (pid {info['pid']}) did not stop within 60 s")
            time.sleep(0.2)
    console.print("local stack stopped")
    return 0


def cmd_demo(args) -> int:
    from functions.local import demo
    config = _config(args, any_free_port=True)
    _log_to_file(config.state)
    return demo.run(config.state, config, keep_running=args.keep_running)


def cmd_upload(args) -> int:
    from functions.console.ui import console, progress, table
    from functions.local import client
    from functions.warehouse.store import Warehouse
    state = _state(args)
    pairs = client.object_names(args.paths, args.prefix)
    info = client.running(state)
    client.check_bucket(info, args.bucket)
    with progress() as bar:
        task = bar.add_task(f"uploading to gs://{args.bucket}", total=len(pairs))
        uploaded = client.upload(info, pairs, args.bucket, advance=lambda _: bar.advance(task))
    if not args.wait:
        for item in uploaded:
            console.print(f"{item.path} → {item.uri} (generation {item.generation})", markup=False)
        console.print("the results appear in a moment: python main.py results (or upload --wait)")
        return 0
    rows = client.wait_for_rows(Warehouse(state.warehouse), uploaded, state=state)
    console.print(table(["object", "top_label", "score", "total_ms", "error_code"], [row[2:] for row in rows],
                        title=f"gs://{args.bucket}"))
    return 1 if any(row[6] for row in rows) else 0


def cmd_publish(args) -> int:
    from functions.console.ui import console
    from functions.local import client
    if not args.uris and not args.image:
        raise CommandError("publish what? give gs:// URIs or --image PATH", EXIT_USAGE)
    info = client.running(_state(args))
    published = []
    if args.uris:
        published.append((" ".join(args.uris), client.publish_uris(info, args.uris)))
    for path in args.image:
        published.append((path, client.publish_image(info, path)))
    for what, message_id in published:
        console.print(f"published message {message_id} to {client.requests_topic(info)}: {what}", markup=False)
    console.print("the push subscription delivers it now: python main.py results")
    return 0


def _print_query(sql: str, state, title: str | None = None) -> int:
    import duckdb

    from functions.console.ui import console, table
    from functions.warehouse.bq_sql import SqlTranslationError
    from functions.warehouse.store import Warehouse
    try:
        columns, rows = Warehouse(state.warehouse).query(sql, prepare=_sql_functions(sql, state),
                                                         dialect="bigquery")
    except (duckdb.Error, SqlTranslationError) as exc:
        raise CommandError(f"SQL error: {exc}", EXIT_USAGE) from None
    console.print(table(columns, rows, title=title))
    console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")
    return 0


def _sql_functions(sql: str, state):
    """classify(uri) and uploads_objects, when the SQL uses them: they need the running stack."""
    import re
    if not re.search(r"\b(classify|classify_top_k)\s*\(|\buploads_objects\b", sql, re.IGNORECASE):
        return None
    from functions.local import client, gcs
    from functions.warehouse import sql_functions
    info = client.running(state)
    storage = gcs.client(info["gcs_url"], info.get("gcs_cert"))
    return lambda con: sql_functions.install(con, server_url=info["server_url"], gcs_client=storage,
                                             buckets=info["buckets"])


def cmd_query(args) -> int:
    return _print_query(args.sql, _state(args))


def cmd_results(args) -> int:
    return _print_query(RESULTS_SQL.format(limit=args.limit), _state(args), title="latest results")


def cmd_dead_letters(args) -> int:
    from functions.console.ui import console
    from functions.local import client, dead_letters, topology
    info = client.running(_state(args))
    letters = dead_letters.read(topology.load(), host=info["pubsub_host"], project=info["project"])
    if not letters:
        console.print("no dead letters")
        return 0
    for letter in letters:  # one line each, never wrapped: names stay whole and copyable
        console.print(f"{letter.source.dead_letter_topic}  message {letter.message_id}  published "
                      f"{letter.publish_time}  after {letter.attempts} attempts  {letter.description}",
                      markup=False, soft_wrap=True)
    console.print(f"{len(letters)} dead letter(s); `python main.py replay-dead-letters` publishes them again")
    return 0


def cmd_replay(args) -> int:
    from functions.console.ui import console
    from functions.local import client, dead_letters, topology
    info = client.running(_state(args))
    outcomes = dead_letters.replay(topology.load(), host=info["pubsub_host"], project=info["project"])
    if not outcomes:
        console.print("no dead letters")
        return 0
    for letter, outcome in outcomes:
        console.print(f"{letter.description}: {outcome}", markup=False)
    failed = sum(1 for _, outcome in outcomes if outcome.startswith("not replayed"))
    console.print(f"{len(outcomes) - failed} dead letter(s) published again to their topics"
                  + (f"; {failed} could not be and stay dead-lettered" if failed else ""))
    return 1 if failed else 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "demo": cmd_demo, "upload": cmd_upload, "publish": cmd_publish,
            "query": cmd_query, "results": cmd_results, "dead-letters": cmd_dead_letters,
            "replay-dead-letters": cmd_replay}
