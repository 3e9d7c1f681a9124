"""The files a training job reads: TFRecord shards of tf.Examples, a CSV of gs:// URIs and
labels, Vertex AI's JSONL import format, and the label map beside them.

TFRecord layouts (TensorFlow's usual feature names):
- classification: image/encoded, image/format, image/height, image/width, image/filename,
  image/class/label (int64, 1..N), image/class/text;
- detection (the Object Detection API's): the same image/* features plus
  image/object/bbox/xmin|xmax|ymin|ymax (normalised floats, one per box),
  image/object/class/label (int64, 1..N) and image/object/class/text.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from functions.dataset.rows import DETECTION, TRAIN, VALIDATION, Example

SPLITS = (TRAIN, VALIDATION)
VERTEX_USE = {TRAIN: "training", VALIDATION: "validation"}


def label_map_text(labels: list[str]) -> str:
    """An Object Detection API label map: ids 1..N in the order given."""
    return "".join(f'item {{\n  id: {i}\n  name: "{_escape(name)}"\n}}\n' for i, name in enumerate(labels, 1))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class TFRecordShards:
    """Each split's examples in shards of at most `per_shard`, filled in turn. Shards are
    named train-00000-of-0000N.tfrecord once N is known: at close, since an image that
    cannot be read is only found out while writing."""

    def __init__(self, folder: Path, per_shard: int, task: str, label_ids: dict[str, int]):
        import tensorflow as tf
        self._tf = tf
        self.folder, self.per_shard = folder, per_shard
        self.task, self.label_ids = task, label_ids
        self._parts: dict[str, list[Path]] = {split: [] for split in SPLITS}
        self._open: dict[str, object] = {}
        self._count = {split: 0 for split in SPLITS}

    def add(self, example: Example, data: bytes, fmt: str, width: int, height: int) -> None:
        split = example.split
        if self._count[split] % self.per_shard == 0:
            self._close(split)
            part = self.folder / f".{split}-{len(self._parts[split]):05d}.part"
            self._parts[split].append(part)
            self._open[split] = self._tf.io.TFRecordWriter(str(part))
        self._open[split].write(self.serialize(example, data, fmt, width, height))
        self._count[split] += 1

    def _close(self, split: str) -> None:
        writer = self._open.pop(split, None)
        if writer is not None:
            writer.close()

    def close(self) -> list[Path]:
        files = []
        for split in SPLITS:
            self._close(split)
            parts = self._parts[split]
            for i, part in enumerate(parts):
                files.append(part.rename(self.folder / f"{split}-{i:05d}-of-{len(parts):05d}.tfrecord"))
        return files

    def serialize(self, example: Example, data: bytes, fmt: str, width: int, height: int) -> bytes:
        tf = self._tf
        features = {
            "image/encoded": _bytes(tf, [data]),
            "image/format": _bytes(tf, [fmt.lower().encode()]),
            "image/height": _ints(tf, [height]),
            "image/width": _ints(tf, [width]),
            "image/filename": _bytes(tf, [example.uri.encode()]),
            "image/source_id": _bytes(tf, [example.uri.encode()]),
        }
        if self.task == DETECTION:
            boxes = example.boxes
            for corner in ("xmin", "xmax", "ymin", "ymax"):
                features[f"image/object/bbox/{corner}"] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=[getattr(b, corner) for b in boxes]))
            features["image/object/class/label"] = _ints(tf, [self.label_ids[b.label] for b in boxes])
            features["image/object/class/text"] = _bytes(tf, [b.label.encode() for b in boxes])
        else:
            features["image/class/label"] = _ints(tf, [self.label_ids[example.label]])
            features["image/class/text"] = _bytes(tf, [example.label.encode()])
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _bytes(tf, values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(tf, values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def write_csv(folder: Path, examples: list[Example], task: str) -> list[Path]:
    """train.csv and validation.csv: `gs://uri,label` per image, or for detection
    `gs://uri,label,xmin,ymin,xmax,ymax` per box (normalised)."""
    paths = []
    for split in SPLITS:
        path = folder / f"{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh, lineterminator="\n")
            for example in (e for e in examples if e.split == split):
                if task == DETECTION:
                    out.writerows([example.uri, b.label, *(_round(v) for v in (b.xmin, b.ymin, b.xmax, b.ymax))]
                                  for b in example.boxes)
                else:
                    out.writerow([example.uri, example.label])
        paths.append(path)
    return paths


def write_jsonl(folder: Path, examples: list[Example], task: str) -> Path:
    """Vertex AI's image import format (single-label classification, or bounding boxes),
    with each image's split as its ml_use label."""
    path = folder / "vertex_import.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            line = {"imageGcsUri": example.uri}
            if task == DETECTION:
                line["boundingBoxAnnotations"] = [
                    {"displayName": b.label, "xMin": _round(b.xmin), "yMin": _round(b.ymin),
                     "xMax": _round(b.xmax), "yMax": _round(b.ymax)} for b in example.boxes]
            else:
                line["classificationAnnotation"] = {"displayName": example.label}
            line["dataItemResourceLabels"] = {"aiplatform.googleapis.com/ml_use": VERTEX_USE[example.split]}
            fh.write(json.dumps(line) + "\n")
    return path


def _round(value: float) -> float:
    return round(float(value), 6)
