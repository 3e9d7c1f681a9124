"""`python main.py report` and `python main.py duplicates`: flags and what they print."""
from __future__ import annotations

import argparse

from functions.cli_args import positive_int
from functions.console.errors import EXIT_USAGE, CommandError


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError("a score between 0 and 1")
    return value


def add_commands(sub, state_parent: argparse.ArgumentParser) -> None:
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--bigquery", default=None, metavar="PROJECT.DATASET",
                        help="read the cloud's results (BigQuery) instead of the local warehouse")

    report = sub.add_parser("report", parents=[state_parent, source],
                            help="an HTML report of the results: labels, errors, latency, scores, duplicates, "
                                 "low-confidence images (self-contained; charts also as PNG)")
    report.add_argument("--out", default="report.html", metavar="FILE",
                        help="the HTML file (default report.html; charts in FILE_STEM_files/)")
    report.add_argument("--model", default=None, metavar="ID", help="only results of this model id")
    report.add_argument("--threshold", type=_score, default=0.3,
                        help="top_score below this is low confidence (default 0.3)")
    report.add_argument("--limit", type=positive_int, default=25, help="low-confidence images listed (default 25)")

    duplicates = sub.add_parser("duplicates", parents=[state_parent, source],
                                help="images stored more than once (the same content MD5 under several URIs)")
    duplicates.add_argument("--limit", type=positive_int, default=50, help="hashes listed (default 50)")


def _source(args):
    from functions.report.sources import BigQuerySource, DuckDBSource
    if args.bigquery:
        if args.state_dir:
            raise CommandError("--bigquery reads the cloud's results; --state-dir the local ones: choose one", EXIT_USAGE)
        return BigQuerySource(args.bigquery)
    from functions.local.statedir import resolve
    return DuckDBSource(resolve(args.state_dir).warehouse)


def run_report(args) -> int:
    from functions.console.ui import console
    from functions.report import page
    from functions.report.collect import collect
    source = _source(args)
    with console.status(f"querying {source.description}"):
        data = collect(source, model_id=args.model, threshold=args.threshold, low_confidence=args.limit)
    with console.status("drawing the charts"):
        written = page.write(data, args.out)
    console.print(f"report: {written[0]} ({int(data.totals.get('results') or 0):,} results)", markup=False)
    for path in written[1:]:
        console.print(f"  chart: {path}", markup=False)
    return 0


def run_duplicates(args) -> int:
    from functions.console.ui import console, table
    from functions.report import queries
    source = _source(args)
    rows = source.query(queries.DUPLICATES, limit=int(args.limit))
    totals = source.query(queries.DUPLICATE_TOTALS)[0]
    if not rows:
        console.print("no image is stored more than once", markup=False)
        return 0
    view = [(r["content_md5"], r["copies"], r.get("wasted_bytes"), "\n".join(r.get("uris") or [])) for r in rows]
    console.print(table(["content_md5", "copies", "extra_bytes", "uris"], view,
                        title=f"images stored more than once ({source.description})"))
    console.print(f"{int(totals['hashes']):,} images stored more than once, as {int(totals['objects']):,} objects; "
                  f"{int(totals.get('wasted_bytes') or 0):,} bytes in extra copies", markup=False)
    return 0
