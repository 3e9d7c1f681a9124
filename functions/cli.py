"""The command line: `python main.py COMMAND …` (see `python main.py --help`).

Exit codes: 0 every image ok, 1 some result is an error (all results still printed),
2 usage errors (bad flags or settings, nothing to classify, a model that cannot be loaded).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from functions.cli_args import expand_paths, positive_int
from shared.config import SettingError, Settings
from shared.errors import BucketeyeError

TOOL_PACKAGES = ("functions.local", "functions.warehouse", "functions.console", "functions.backfill", "functions.report",
                 "functions.dataset")

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python main.py", description="bucketeye: classify images with a TensorFlow model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = sub.add_parser("classify", help="classify image files, directories or globs")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="image file, directory (recursive) or glob")
    classify.add_argument("--json", action="store_true", help="print one result record (JSON) per line")
    classify.add_argument("--top-k", type=positive_int, default=None, help="labels per image (default: TOP_K or 5)")
    classify.add_argument("--model", default=None, help="model path or gs:// URI (default: MODEL_URI or the built-in model)")

    inspect = sub.add_parser("inspect", help="show a model's inputs, outputs and derived input spec")
    inspect.add_argument("model", nargs="?", default=None, help="model path or gs:// URI (default: the built-in model)")

    sub.add_parser("model", help="build the built-in model into the cache (make model)")

    serve = sub.add_parser("serve", help="serve all three triggers on one functions-framework server")
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: 0.0.0.0 on Cloud Run, where K_SERVICE is set; "
                            "127.0.0.1 elsewhere)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    serve.add_argument("--dev", action="store_true", help="Flask's single-process dev server instead of gunicorn")

    if tools_installed():
        _add_tool_commands(sub)
    return parser


def tools_installed() -> bool:
    """The workstation tools (local stack, backfill, report, dataset) are left out of the
    service images (.dockerignore): there the CLI offers the serving commands alone."""
    return all(importlib.util.find_spec(name) is not None for name in TOOL_PACKAGES)


def _add_tool_commands(sub) -> None:
    from functions.backfill import cli as backfill_cli
    from functions.dataset import cli as dataset_cli
    from functions.local import commands as local_commands
    from functions.report import cli as report_cli
    state = local_commands.state_parent()
    local_commands.add_commands(sub, state)
    backfill_cli.add_commands(sub, state)
    report_cli.add_commands(sub, state)
    dataset_cli.add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("classify", "inspect", "model", "serve"):
        try:  # validated once, before any work: one line naming the setting, its value and what is allowed
            Settings.from_env()
        except SettingError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
    if args.command == "classify":
        return cmd_classify(args)
    if args.command == "inspect":
        return cmd_inspect(args)
    if args.command == "model":
        return cmd_model()
    if args.command == "serve":
        from functions.server import serve
        return serve(args.host or default_host(), args.port, dev=args.dev)
    from functions.console.errors import run_command
    from functions.local import commands as local_commands
    handler = local_commands.COMMANDS.get(args.command) or _WORKSTATION_COMMANDS[args.command]
    return run_command(handler, args)


def _backfill(args) -> int:
    from functions.backfill import cli
    return cli.run(args)


def _report(args) -> int:
    from functions.report import cli
    return cli.run_report(args)


def _duplicates(args) -> int:
    from functions.report import cli
    return cli.run_duplicates(args)


def _dataset(args) -> int:
    from functions.dataset import cli
    return cli.run(args)


_WORKSTATION_COMMANDS = {"backfill": _backfill, "report": _report, "duplicates": _duplicates, "dataset": _dataset}


def default_host() -> str:
    """All interfaces on Cloud Run (its front end is the only way in); loopback anywhere else,
    so a laptop's server is not open to its network unless asked (--host 0.0.0.0)."""
    return "0.0.0.0" if os.environ.get("K_SERVICE") else "127.0.0.1"


def _load_engine(model_uri: str | None):
    from shared.engine import Engine
    from shared.models.loader import load_model
    settings = Settings.from_env(model_uri=model_uri)
    try:
        return Engine(settings, load_model(settings))
    except BucketeyeError as exc:
        print(f"bucketeye: cannot load the model: {exc.code}: {exc.message}", file=sys.stderr)
        return None


def cmd_classify(args) -> int:
    from shared.refs import ImageRef
    paths = expand_paths(args.paths)
    if not paths:
        print("bucketeye: no image files found in " + " ".join(args.paths), file=sys.stderr)
        return EXIT_USAGE
    engine = _load_engine(args.model)
    if engine is None:
        return EXIT_USAGE
    refs = (ImageRef(trigger="cli", uri=p, object=os.path.basename(p), local_path=p) for p in paths)
    from functions.cli_output import ResultPrinter
    printer = ResultPrinter(json_lines=args.json, total=len(paths))
    errors = 0
    with printer:
        for result in engine.classify_iter(refs, top_k=args.top_k):
            errors += 0 if result.ok else 1
            printer.add(result)
    engine.close()
    return EXIT_ERRORS if errors else EXIT_OK


def cmd_inspect(args) -> int:
    from shared.models.loader import load_model
    try:
        model = load_model(Settings.from_env(), args.model)
    except BucketeyeError as exc:
        print(f"bucketeye: cannot load the model: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(model.describe(), indent=2))
    return EXIT_OK


def cmd_model() -> int:
    from shared.models.default_model import ensure_default_model
    print(ensure_default_model(Settings.from_env().model_cache_dir))
    return EXIT_OK
