"""`python main.py dataset export|faces`: flags, where the results and images come from,
and what is printed. Problems the user can fix end as one line and exit code 2."""
from __future__ import annotations

import argparse
import os

from functions.cli_args import expand_paths, positive_int
from functions.console.errors import EXIT_USAGE, CommandError


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("a share from 0 up to (not including) 1, e.g. 0.2")
    return value


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a score between 0 and 1")
    return value


def add_commands(sub) -> None:
    dataset = sub.add_parser("dataset", help="training data: export results as a dataset, or build a face set")
    commands = dataset.add_subparsers(dest="dataset_command", required=True, metavar="WHAT")

    export = commands.add_parser("export", help="results + their images -> TFRecords, CSV and Vertex AI JSONL")
    export.add_argument("out", metavar="OUT", help="a folder, or gs://BUCKET/PREFIX")
    where = export.add_mutually_exclusive_group()
    where.add_argument("--bigquery", default=None, metavar="PROJECT.DATASET",
                       help="read the cloud's results (BigQuery) instead of the local warehouse")
    where.add_argument("--state-dir", default=None, metavar="DIR",
                       help="the local stack's state (default: $BUCKETEYE_STATE_DIR or .state/)")
    export.add_argument("--format", dest="formats", action="append", choices=("tfrecord", "csv", "jsonl"),
                        help="what to write; repeatable (default: all three)")
    export.add_argument("--task", choices=("classification", "detection"), default=None,
                        help="default: detection when the results have boxes")
    export.add_argument("--label", dest="labels", action="append", default=[], metavar="LABEL",
                        help="keep only this label (top label, or each box's); repeatable")
    export.add_argument("--min-score", type=_score, default=0.0, help="keep only labels or boxes scoring this or more")
    export.add_argument("--status", choices=("ok", "error", "any"), default="ok", help="results kept (default ok)")
    export.add_argument("--model", default=None, metavar="ID", help="only results of this model id (name@version)")
    export.add_argument("--validation", type=_share, default=0.2, help="share of images for validation (default 0.2)")
    export.add_argument("--per-shard", type=positive_int, default=1000, help="examples per TFRecord shard")

    faces = commands.add_parser("faces", help="photos -> face crops: pose and sunglasses filtered, duplicates "
                                "dropped, split for training and validation")
    faces.add_argument("src", metavar="SRC", help="a folder of photos (searched recursively), a photo or a glob")
    faces.add_argument("out", metavar="OUT", help="the folder for train/, validation/, faces.csv and dropped.csv")
    faces.add_argument("--size", type=positive_int, default=96, help="side of the square crops (default 96)")
    faces.add_argument("--margin", type=_share, default=0.25, help="added around the face box on each side, as a "
                       "share of its size (default 0.25)")
    faces.add_argument("--max-angle", type=float, default=20.0, help="largest roll or yaw kept, degrees (default 20)")
    faces.add_argument("--validation", type=_share, default=0.3, help="share of faces for validation (default 0.3)")
    faces.add_argument("--sunglasses-score", type=_score, default=0.3,
                       help="drop faces the classifier scores this or more as sunglasses (default 0.3)")
    faces.add_argument("--phash-distance", type=int, default=6, choices=range(0, 33), metavar="BITS",
                       help="photos whose perceptual hashes differ in at most this many of 64 bits are copies "
                            "(default 6)")


def run(args) -> int:
    if args.dataset_command == "export":
        return run_export(args)
    if args.dataset_command == "faces":
        return run_faces(args)
    return EXIT_USAGE


def _source(args):
    from functions.report.sources import BigQuerySource, DuckDBSource
    if args.bigquery:
        return BigQuerySource(args.bigquery)
    from functions.local.statedir import resolve
    state = resolve(args.state_dir)
    if not state.warehouse.exists():
        raise CommandError(f"there are no local results ({state.warehouse} does not exist): run the local stack "
                           "first, or read BigQuery with --bigquery PROJECT.DATASET", EXIT_USAGE)
    info = state.running_stack()
    if info and info.get("gcs_url") and not os.environ.get("STORAGE_EMULATOR_HOST"):
        os.environ["STORAGE_EMULATOR_HOST"] = info["gcs_url"]  # the images live in the stack's emulator
        if info.get("gcs_ca_bundle"):  # which serves https with its own certificate
            os.environ["REQUESTS_CA_BUNDLE"] = info["gcs_ca_bundle"]
    return DuckDBSource(state.warehouse)


def run_export(args) -> int:
    from functions.console.ui import console
    from functions.dataset.export import ExportOptions, check_output, export
    from functions.dataset.rows import Filters
    from shared.config import Settings
    check_output(args.out)
    options = ExportOptions(out=args.out, formats=tuple(dict.fromkeys(args.formats or ("tfrecord", "csv", "jsonl"))),
                            task=args.task, validation_share=args.validation, per_shard=args.per_shard,
                            filters=Filters(status=args.status, labels=frozenset(args.labels),
                                            min_score=args.min_score, model_id=args.model))
    settings = Settings.from_env()
    source = _source(args)
    with console.status(f"reading {source.description} and the images"):
        manifest = export(source, options, max_image_bytes=settings.max_image_bytes,
                          timeout_s=settings.fetch_timeout_s)
    counts = manifest["counts"]
    console.print(f"{manifest['task']} dataset in {args.out}: {counts['train']} training and "
                  f"{counts['validation']} validation images, {len(manifest['label_map'])} labels; "
                  f"{len(manifest['skipped'])} left out (see manifest.json)", markup=False)
    for item in manifest["skipped"][:20]:
        console.print(f"  left out {item['uri']}: {item['reason']}", markup=False)
    return 0 if manifest["examples"] else 1  # every image failed to read


def run_faces(args) -> int:
    from pathlib import Path

    from functions.console.ui import console
    from functions.dataset.faces import FaceOptions, build
    from shared.config import Settings
    paths = [p for p in expand_paths([args.src]) if Path(p).is_file()]
    if not paths:
        raise CommandError(f"no photos found in {args.src}", EXIT_USAGE)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{args.out} exists and is not a folder", EXIT_USAGE)
    options = FaceOptions(size=args.size, margin=args.margin, max_roll=args.max_angle, max_yaw=args.max_angle,
                          validation_share=args.validation, sunglasses_score=args.sunglasses_score,
                          phash_distance=args.phash_distance)
    settings = Settings.from_env()
    with console.status(f"finding faces in {len(paths)} photos"):
        with SunglassesCheck(settings) as classify:
            report = build(paths, out, options, classify=classify, max_bytes=settings.max_image_bytes,
                           max_pixels=settings.max_image_pixels)
    splits = [face.split for face in report.kept]
    console.print(f"{len(report.kept)} faces in {out}: {splits.count('train')} training, "
                  f"{splits.count('validation')} validation; {len(report.dropped)} photos or faces left out "
                  f"(dropped.csv)", markup=False)
    for item in report.dropped[:20]:
        face = f" face {item['face']}" if item["face"] != "" else ""
        console.print(f"  left out {item['source']}{face}: {item['reason']}", markup=False)
    return 0


class SunglassesCheck:
    """The built-in ImageNet classifier as a function: face crops -> {label: score} for every class."""

    def __init__(self, settings):
        self.settings = settings
        self.engine = None

    def __enter__(self):
        from shared.engine import Engine
        from shared.models.loader import load_model
        self.engine = Engine(self.settings, load_model(self.settings, ""))  # "" is the built-in model
        return self

    def __exit__(self, *exc):
        self.engine.close()

    def __call__(self, crops) -> list[dict]:
        import io

        from shared.refs import ImageRef
        refs = []
        for crop in crops:
            buffer = io.BytesIO()
            crop.save(buffer, "PNG")
            refs.append(ImageRef(trigger="cli", data=buffer.getvalue()))
        results = self.engine.classify(refs, top_k=len(self.engine.model.labels) or 1000)
        return [{p.label: p.score for p in r.predictions} if r.ok else {} for r in results]
