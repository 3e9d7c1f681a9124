"""`python main.py dataset export`: result rows in a real local warehouse (made as the sink
makes them), real photos in a real GCS emulator, and the written files read back: the
TFRecords with TensorFlow's own tf.io.parse_example, the CSV, the Vertex AI JSONL."""
from __future__ import annotations

import csv
import json

import pytest

from functions.cli import main
from functions.local.gcs import client as gcs_client
from functions.local.statedir import StateDir
from shared.refs import ImageRef
from shared.results import Detection, ImageInfo, Prediction, Result
from tests.backfill.seed import seed
from tests.byte_models import encode, paint_boxes, photo

BUCKET = "uploads"
PHOTOS = {"cat.png": ("chelsea.png", "tabby"), "coffee.png": ("coffee.png", "espresso"),
          "astronaut.png": ("astronaut.png", "football helmet"), "rocket.jpg": ("rocket.jpg", "missile"),
          "moto.png": ("motorcycle_left.png", "moped")}
BOXES = {"boxes/a.png": {1: (20, 30, 120, 90), 2: (200, 150, 300, 290)}, "boxes/b.png": {1: (300, 10, 440, 60)}}
BOX_NAMES = {1: "magenta_box", 2: "cyan_box"}


def _result(uri: str, generation: str, *, label: str | None = None, score: float = 0.9, detections=(),
            error: str | None = None, model_id: str = "m@1", key: str = "") -> dict:
    from shared.errors import BucketeyeError
    bucket, _, name = uri[5:].partition("/") if uri else ("", "", "")
    ref = ImageRef(trigger="storage", uri=uri, bucket=bucket, object=name, generation=generation, key=key,
                   data=None if uri else b"inline")
    model_name, _, version = model_id.partition("@")
    return Result(ref=ref, model={"name": model_name, "version": version, "id": model_id},
                  predictions=[Prediction(label, 7, score)] if label else [], detections=list(detections),
                  image=ImageInfo("PNG", 1, 1), error=BucketeyeError(error) if error else None,
                  timings_ms={"total": 1.0}).to_record()


@pytest.fixture(scope="module")
def stored(emulator):
    """{uri: (bytes, generation)} for every photo and painted picture uploaded."""
    storage = gcs_client(emulator.url)
    storage.create_bucket(BUCKET)
    storage.create_bucket("exports")
    bucket = storage.bucket(BUCKET)
    out = {}
    pictures = {name: encode(photo(source), "JPEG" if name.endswith(".jpg") else "PNG")
                for name, (source, _) in PHOTOS.items()}
    pictures |= {name: encode(paint_boxes(photo("chelsea.png"), layout)[0]) for name, layout in BOXES.items()}
    for name, data in pictures.items():
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type="image/png")
        out[f"gs://{BUCKET}/{name}"] = (data, str(blob.generation))
    return out


@pytest.fixture()
def env(emulator, monkeypatch):
    from shared import storage
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    storage._client.cache_clear()
    yield
    storage._client.cache_clear()


@pytest.fixture()
def classified(tmp_path, stored, env) -> StateDir:
    """Classification results: every photo once (the cat twice: the newer result wins), plus
    rows that must not become examples."""
    state = StateDir(tmp_path / "state").ensure()
    rows = [_result("gs://uploads/cat.png", stored["gs://uploads/cat.png"][1], label="lynx", score=0.8)]  # older
    for name, (_, label) in PHOTOS.items():
        uri = f"gs://{BUCKET}/{name}"
        rows.append(_result(uri, stored[uri][1], label=label, score=0.2 if name == "moto.png" else 0.9))
    rows += [_result("gs://uploads/broken.png", "5", error="corrupt_image"),
             _result("gs://uploads/gone.png", "123", label="tabby"),  # its object was never there
             _result("", "", label="tabby", key="inline upload")]     # bytes never stored: not exportable
    seed(state.warehouse, rows)
    return state


@pytest.fixture()
def detected(tmp_path, stored, env) -> StateDir:
    state = StateDir(tmp_path / "state").ensure()
    rows = []
    for name, layout in BOXES.items():
        _, truth = paint_boxes(photo("chelsea.png"), layout)
        uri = f"gs://{BUCKET}/{name}"
        found = [Detection(BOX_NAMES[c], c, 0.99, box) for c, box in truth.items()]
        found.append(Detection("cyan_box", 2, 0.1, (0.0, 0.0, 0.05, 0.05)))  # below --min-score
        rows.append(_result(uri, stored[uri][1], detections=found, model_id="box_detector@1"))
    seed(state.warehouse, rows)
    return state


def _export(state: StateDir, out, *flags) -> int:
    return main(["dataset", "export", str(out), "--state-dir", str(state.root), *flags])


def _parse(files, features):
    import tensorflow as tf
    records = list(tf.data.TFRecordDataset([str(f) for f in files]).as_numpy_iterator())
    return records, (tf.io.parse_example(records, features) if records else None)


def test_classification_records_parse_with_tensorflow_and_round_trip_the_bytes(classified, stored, tmp_path, capsys):
    import tensorflow as tf
    out = tmp_path / "out"

    assert _export(classified, out, "--validation", "0.4", "--status", "any") == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "classification"
    assert manifest["label_map"] == {"espresso": 1, "football helmet": 2, "missile": 3, "moped": 4, "tabby": 5}
    assert (out / "label_map.pbtxt").read_text().count("item {") == 5
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/format": tf.io.FixedLenFeature([], tf.string),
                "image/filename": tf.io.FixedLenFeature([], tf.string),
                "image/height": tf.io.FixedLenFeature([], tf.int64),
                "image/width": tf.io.FixedLenFeature([], tf.int64),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64),
                "image/class/text": tf.io.FixedLenFeature([], tf.string)}
    seen = {}
    for split in ("train", "validation"):
        files = sorted(out.glob(f"{split}-*.tfrecord"))
        assert files, split
        _, parsed = _parse(files, features)
        for i in range(len(parsed["image/filename"]) if parsed else 0):
            uri = parsed["image/filename"][i].numpy().decode()
            seen[uri] = split
            assert parsed["image/encoded"][i].numpy() == stored[uri][0]  # the very bytes in the bucket
            label = PHOTOS[uri.rsplit("/", 1)[1]][1]
            assert parsed["image/class/text"][i].numpy().decode() == label
            assert int(parsed["image/class/label"][i]) == manifest["label_map"][label]
            decoded = tf.io.decode_image(parsed["image/encoded"][i])
            assert (int(parsed["image/height"][i]), int(parsed["image/width"][i])) == tuple(decoded.shape[:2])
            assert parsed["image/format"][i].numpy() in (b"png", b"jpeg")
    assert set(seen) == {f"gs://{BUCKET}/{name}" for name in PHOTOS}
    assert {e["uri"]: e["split"] for e in manifest["examples"]} == seen
    assert manifest["counts"] == {"train": list(seen.values()).count("train"),
                                  "validation": list(seen.values()).count("validation")}
    reasons = {item["uri"]: item["reason"] for item in manifest["skipped"]}
    assert reasons["gs://uploads/broken.png"].startswith("no label")
    assert reasons["gs://uploads/gone.png"].startswith("not_found")
    assert len(reasons) == 2  # the inline upload never reaches the export: it has no URI
    assert "2 left out" in capsys.readouterr().out


def test_csv_and_vertex_jsonl(classified, tmp_path):
    out = tmp_path / "out"

    assert _export(classified, out, "--format", "csv", "--format", "jsonl") == 0

    assert not list(out.glob("*.tfrecord"))
    examples = {e["uri"]: e for e in json.loads((out / "manifest.json").read_text())["examples"]}
    rows = {}
    for split in ("train", "validation"):
        with open(out / f"{split}.csv", newline="") as fh:
            for uri, label in csv.reader(fh):
                rows[uri] = (label, split)
    assert rows == {uri: (e["label"], e["split"]) for uri, e in examples.items()}
    assert rows["gs://uploads/cat.png"][0] == "tabby"  # the newest result, not the older "lynx"
    lines = [json.loads(line) for line in (out / "vertex_import.jsonl").read_text().splitlines()]
    assert {line["imageGcsUri"] for line in lines} == set(examples)
    for line in lines:
        example = examples[line["imageGcsUri"]]
        assert line["classificationAnnotation"] == {"displayName": example["label"]}
        use = {"train": "training", "validation": "validation"}[example["split"]]
        assert line["dataItemResourceLabels"] == {"aiplatform.googleapis.com/ml_use": use}


def test_filters_and_a_split_that_does_not_depend_on_them(classified, tmp_path):
    everything, some = tmp_path / "all", tmp_path / "some"
    assert _export(classified, everything, "--format", "csv", "--validation", "0.5") == 0
    assert _export(classified, some, "--format", "csv", "--validation", "0.5", "--min-score", "0.5",
                   "--label", "tabby", "--label", "moped", "--label", "espresso") == 0

    def examples(folder):
        return {e["uri"]: e["split"] for e in json.loads((folder / "manifest.json").read_text())["examples"]}

    kept = examples(some)
    assert set(kept) == {"gs://uploads/cat.png", "gs://uploads/coffee.png"}  # moped scored 0.2
    assert all(examples(everything)[uri] == split for uri, split in kept.items())
    skipped = {i["uri"]: i["reason"] for i in json.loads((some / "manifest.json").read_text())["skipped"]}
    assert "below 0.5" in skipped["gs://uploads/moto.png"]
    assert "not among the wanted labels" in skipped["gs://uploads/rocket.jpg"]


def test_detection_records_carry_the_boxes(detected, stored, tmp_path):
    import tensorflow as tf
    out = tmp_path / "out"

    assert _export(detected, out, "--min-score", "0.5", "--validation", "0") == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "detection" and manifest["label_map"] == {"cyan_box": 1, "magenta_box": 2}
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/filename": tf.io.FixedLenFeature([], tf.string),
                "image/object/class/label": tf.io.VarLenFeature(tf.int64),
                "image/object/class/text": tf.io.VarLenFeature(tf.string)}
    for corner in ("xmin", "xmax", "ymin", "ymax"):
        features[f"image/object/bbox/{corner}"] = tf.io.VarLenFeature(tf.float32)
    records, parsed = _parse(sorted(out.glob("train-*.tfrecord")), features)
    assert len(records) == 2 and not list(out.glob("validation-*"))  # an empty split writes no shard
    dense = {name: tf.sparse.to_dense(value).numpy() if isinstance(value, tf.SparseTensor) else value.numpy()
             for name, value in parsed.items()}
    for i in range(2):
        uri = dense["image/filename"][i].decode()
        assert dense["image/encoded"][i] == stored[uri][0]
        _, truth = paint_boxes(photo("chelsea.png"), BOXES[uri.split("/", 3)[3]])
        count = len(truth)
        labels = [t.decode() for t in dense["image/object/class/text"][i][:count]]
        got = {}
        for j, label in enumerate(labels):
            class_id = {v: k for k, v in BOX_NAMES.items()}[label]
            assert dense["image/object/class/label"][i][j] == manifest["label_map"][label]
            got[class_id] = tuple(float(dense[f"image/object/bbox/{c}"][i][j])
                                  for c in ("ymin", "xmin", "ymax", "xmax"))
        assert got.keys() == truth.keys()
        for class_id, box in truth.items():
            assert got[class_id] == pytest.approx(box, abs=1e-6)
    lines = [json.loads(line) for line in (out / "vertex_import.jsonl").read_text().splitlines()]
    assert sum(len(line["boundingBoxAnnotations"]) for line in lines) == 3
    with open(out / "train.csv", newline="") as fh:
        assert len(list(csv.reader(fh))) == 3  # one row per box; the 0.1 box is filtered out


def test_export_to_a_bucket(classified, emulator, tmp_path):
    assert _export(classified, "gs://exports/sets/v1", "--format", "csv") == 0

    names = sorted(b.name for b in gcs_client(emulator.url).list_blobs("exports", prefix="sets/v1/"))
    assert names == ["sets/v1/label_map.pbtxt", "sets/v1/manifest.json", "sets/v1/train.csv",
                     "sets/v1/validation.csv"]
    manifest = json.loads(gcs_client(emulator.url).bucket("exports").blob("sets/v1/manifest.json").download_as_bytes())
    assert len(manifest["examples"]) == 5
    assert _export(classified, "gs://exports/sets/v1/", "--format", "csv") == 2  # never over an earlier dataset


def test_a_new_export_into_a_folder_replaces_the_old_one(classified, tmp_path):
    out = tmp_path / "out"
    assert _export(classified, out, "--validation", "0", "--per-shard", "1") == 0
    assert len(list(out.glob("train-*.tfrecord"))) == 5
    (out / "notes.txt").write_text("mine")

    assert _export(classified, out, "--validation", "0", "--format", "tfrecord") == 0

    assert sorted(p.name for p in out.iterdir()) == ["label_map.pbtxt", "manifest.json", "notes.txt",
                                                     "train-00000-of-00001.tfrecord"]


@pytest.mark.parametrize("flags, message", [
    (["--label", "no such label"], "passes the filters"),
    (["--status", "error", "--task", "classification"], "passes the filters"),
])
def test_nothing_to_export_is_a_clear_error(classified, tmp_path, capsys, flags, message):
    assert _export(classified, tmp_path / "out", *flags) == 1
    assert message in capsys.readouterr().err


def test_missing_warehouse_and_bad_output(tmp_path, capsys):
    assert main(["dataset", "export", str(tmp_path / "o"), "--state-dir", str(tmp_path / "none")]) == 2
    assert "no local results" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["dataset", "export", str(tmp_path / "file"), "--state-dir", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_bigquery_results_with_the_filters_in_sql(stored, env, tmp_path):
    """The cloud path: the results view in BigQuery (a recording client stands in for it; rows
    in the client's shape), the images from the bucket."""
    from functions.dataset.export import ExportOptions, export
    from functions.dataset.rows import Filters
    from functions.report.sources import BigQuerySource
    from tests.report.test_duplicates import RecordingClient

    def answer(sql, params):
        rows = []
        for name, layout in BOXES.items():
            uri = f"gs://{BUCKET}/{name}"
            _, truth = paint_boxes(photo("chelsea.png"), layout)
            rows.append({"uri": uri, "bucket": BUCKET, "object": name, "generation": stored[uri][1],
                         "timestamp": None, "status": "ok", "model_id": "box_detector@1", "top_label": None,
                         "top_score": None,
                         "detections": [{"label": BOX_NAMES[c], "label_id": c, "score": 0.99,
                                         "box": dict(zip(("ymin", "xmin", "ymax", "xmax"), box))}
                                        for c, box in truth.items()]})
        return rows

    client = RecordingClient(answer)
    source = BigQuerySource("proj.bucketeye", client=client)
    options = ExportOptions(out=str(tmp_path / "out"), formats=("jsonl",),
                            filters=Filters(model_id="box_detector@1", labels=frozenset({"cyan_box"})))

    manifest = export(source, options, max_image_bytes=10_000_000, timeout_s=10)

    (sql, params), = client.calls
    assert "FROM `proj.bucketeye.results`" in sql and "status = @status" in sql and "model_id = @model_id" in sql
    assert params == {"status": ("STRING", "ok"), "model_id": ("STRING", "box_detector@1")}
    assert manifest["task"] == "detection" and manifest["label_map"] == {"cyan_box": 1}
    assert [e["uri"] for e in manifest["examples"]] == ["gs://uploads/boxes/a.png"]  # b.png has no cyan box
    lines = [json.loads(line) for line in (tmp_path / "out" / "vertex_import.jsonl").read_text().splitlines()]
    assert [b["displayName"] for b in lines[0]["boundingBoxAnnotations"]] == ["cyan_box"]


def test_shards_hold_at_most_per_shard_examples(classified, tmp_path):
    import tensorflow as tf
    out = tmp_path / "out"

    assert _export(classified, out, "--format", "tfrecord", "--validation", "0", "--per-shard", "2") == 0

    shards = sorted(p.name for p in out.glob("*.tfrecord"))
    assert shards == ["train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
                      "train-00002-of-00003.tfrecord"]
    sizes = [sum(1 for _ in tf.data.TFRecordDataset(str(out / name))) for name in shards]
    assert sizes == [2, 2, 1]
