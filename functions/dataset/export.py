"""`python main.py dataset export`: results + the images in the bucket -> a training set.

Each selected image is read at the generation its result was made from (so the bytes
are the ones that were labelled), its header checked, and written into the chosen
formats. Images that cannot be read are left out and listed, with the reason, in
manifest.json beside the data, as are results the filters dropped.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from functions.console.errors import EXIT_USAGE, CommandError
from functions.dataset import rows as dataset_rows
from functions.dataset import writers
from shared.errors import BucketeyeError

FORMATS = ("tfrecord", "csv", "jsonl")
FETCH_WORKERS = 8


@dataclass
class ExportOptions:
    out: str                                  # a folder, or gs://bucket/prefix
    formats: tuple = FORMATS
    task: str | None = None                   # None: detection when the results have boxes
    filters: dataset_rows.Filters = field(default_factory=dataset_rows.Filters)
    validation_share: float = 0.2
    per_shard: int = 1000


def export(source, options: ExportOptions, *, max_image_bytes: int, timeout_s: float) -> dict:
    """Write the dataset; returns its manifest (also written as manifest.json)."""
    found = dataset_rows.query(source, options.filters)
    selection = dataset_rows.select(found, options.filters, task=options.task,
                                    validation_share=options.validation_share)
    if not selection.examples:
        raise CommandError(f"no result in {source.description} passes the filters ({len(found)} results read, "
                           f"{len(selection.skipped)} dropped)")
    remote = options.out.startswith("gs://")
    folder = Path(tempfile.mkdtemp(prefix="bucketeye-dataset-")) if remote else Path(options.out)
    folder.mkdir(parents=True, exist_ok=True)
    _clear_previous(folder)
    try:
        kept, skipped = _write(folder, selection, options, max_image_bytes=max_image_bytes, timeout_s=timeout_s)
        manifest = _manifest(selection, kept, selection.skipped + skipped, options, source.description)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if remote:
            manifest["written"] = _upload(folder, options.out)
        return manifest
    finally:
        if remote:
            shutil.rmtree(folder, ignore_errors=True)


def _write(folder: Path, selection, options: ExportOptions, *, max_image_bytes: int, timeout_s: float):
    labels = selection.labels
    label_ids = {name: i for i, name in enumerate(labels, 1)}
    (folder / "label_map.pbtxt").write_text(writers.label_map_text(labels), encoding="utf-8")
    shards = (writers.TFRecordShards(folder, options.per_shard, selection.task, label_ids)
              if "tfrecord" in options.formats else None)
    kept, skipped = [], []
    try:
        for example, outcome in _fetched(selection.examples, max_image_bytes, timeout_s):
            if isinstance(outcome, BucketeyeError):
                skipped.append({"uri": example.uri, "reason": f"{outcome.code}: {outcome.message}"})
                continue
            data, fmt, width, height = outcome
            if shards is not None:
                shards.add(example, data, fmt, width, height)
            kept.append(example)
    finally:
        if shards is not None:
            shards.close()
    if "csv" in options.formats:
        writers.write_csv(folder, kept, selection.task)
    if "jsonl" in options.formats:
        writers.write_jsonl(folder, kept, selection.task)
    return kept, skipped


def _fetched(examples, max_image_bytes: int, timeout_s: float, window: int = 32):
    """(example, (bytes, format, width, height) or the BucketeyeError), in order, a few in flight."""
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="bucketeye-dataset") as pool:
        pending: deque = deque()
        for example in examples:
            pending.append((example, pool.submit(_read_image, example, max_image_bytes, timeout_s)))
            if len(pending) >= window:
                yield _outcome(*pending.popleft())
        while pending:
            yield _outcome(*pending.popleft())


def _outcome(example, future):
    try:
        return example, future.result()
    except BucketeyeError as exc:
        return example, exc


def _read_image(example, max_image_bytes: int, timeout_s: float):
    from PIL import Image, UnidentifiedImageError

    from shared.imaging import ALLOWED_FORMATS, FORMAT_NAMES
    from shared.storage import fetch_object
    obj = fetch_object(example.bucket, example.object, generation=example.generation,
                       max_bytes=max_image_bytes, timeout=timeout_s)
    try:
        with Image.open(io.BytesIO(obj.data), formats=ALLOWED_FORMATS) as img:  # the header only
            fmt, (width, height) = FORMAT_NAMES.get(img.format, img.format), img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BucketeyeError("unsupported_format", f"not a readable image ({type(exc).__name__})") from None
    return obj.data, fmt, width, height


def _manifest(selection, kept, skipped, options: ExportOptions, source: str) -> dict:
    labels = selection.labels
    return {
        "task": selection.task, "source": source,
        "filters": {"status": options.filters.status, "labels": sorted(options.filters.labels),
                    "min_score": options.filters.min_score, "model_id": options.filters.model_id},
        "validation_share": options.validation_share, "formats": list(options.formats),
        "label_map": {name: i for i, name in enumerate(labels, 1)},
        "counts": {split: sum(e.split == split for e in kept) for split in writers.SPLITS},
        "examples": [{"uri": e.uri, "split": e.split, "label": e.label,
                      "boxes": [asdict(b) for b in e.boxes]} for e in kept],
        "skipped": skipped,
    }


def _upload(folder: Path, target: str) -> list[str]:
    from google.api_core.exceptions import GoogleAPICallError

    from shared.storage import client
    bucket_name, _, prefix = target[5:].partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    bucket = client().bucket(bucket_name)
    written = []
    for path in sorted(folder.iterdir()):
        try:
            bucket.blob(prefix + path.name).upload_from_filename(str(path))
        except GoogleAPICallError as exc:
            raise CommandError(f"writing gs://{bucket_name}/{prefix}{path.name} failed: {exc.message}") from None
        written.append(f"gs://{bucket_name}/{prefix}{path.name}")
    return written


OUTPUT_PATTERNS = ("train-*.tfrecord", "validation-*.tfrecord", ".*.part", "train.csv", "validation.csv",
                   "vertex_import.jsonl", "label_map.pbtxt", "manifest.json")


def _clear_previous(folder: Path) -> None:
    """An earlier export's files go first: a stale shard would otherwise be read with the new ones."""
    for pattern in OUTPUT_PATTERNS:
        for path in folder.glob(pattern):
            path.unlink()


def check_output(out: str) -> None:
    if out.startswith("gs://"):
        bucket, _, prefix = out[5:].partition("/")
        if not bucket:
            raise CommandError(f"{out!r} names no bucket: use gs://BUCKET/PREFIX", EXIT_USAGE)
        _check_new_prefix(bucket, prefix.strip("/"))
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{out} exists and is not a folder", EXIT_USAGE)


def _check_new_prefix(bucket: str, prefix: str) -> None:
    """Objects are never deleted here: a prefix that already holds a dataset is refused."""
    from google.api_core.exceptions import GoogleAPICallError

    from shared.storage import client
    manifest = f"{prefix}/manifest.json" if prefix else "manifest.json"
    try:
        taken = client().bucket(bucket).blob(manifest).exists()
    except GoogleAPICallError as exc:
        raise CommandError(f"cannot check gs://{bucket}/{manifest}: {exc.message}") from None
    if taken:
        raise CommandError(f"gs://{bucket}/{manifest} exists: that prefix already holds a dataset; give a new one "
                           "(e.g. a version suffix)", EXIT_USAGE)
