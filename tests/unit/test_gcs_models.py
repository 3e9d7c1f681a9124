"""gs:// model URIs, downloaded from the real GCS API emulator (fake-gcs-server)."""
from __future__ import annotations

from pathlib import Path

import pytest
from _unit_support import PROBE_LABELS, encode, inline_ref, running_engine, settings, solid

from shared import storage
from shared.errors import BucketeyeError
from shared.models.loader import download_model, load_model, open_model

BUCKET = "models"


@pytest.fixture
def gcs(emulator, monkeypatch):
    """A storage client talking to the emulator, with a fresh bucket."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local")
    storage._client.cache_clear()
    client = storage.client()
    bucket = client.bucket(BUCKET)
    if not bucket.exists():
        client.create_bucket(BUCKET)
    for blob in client.list_blobs(BUCKET):
        blob.delete()
    yield client.bucket(BUCKET)
    storage._client.cache_clear()


def upload_tree(bucket, folder: Path, prefix: str) -> list[str]:
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = f"{prefix}{path.relative_to(folder).as_posix()}"
        bucket.blob(name).upload_from_filename(str(path))
        names.append(name)
    return names


def test_a_tflite_file_with_labels_beside_it(gcs, tflite_model, tmp_path):
    gcs.blob("vision/probe.tflite").upload_from_filename(str(tflite_model))
    gcs.blob("vision/labels.txt").upload_from_string("\n".join(PROBE_LABELS) + "\n")
    gcs.blob("vision/model.json").upload_from_string('{"name": "remote-probe", "version": "5"}')
    gcs.blob("vision/other.tflite").upload_from_string(b"another model, not wanted")
    gcs.blob("vision/sub/labels.txt").upload_from_string("nested, not wanted")

    path = download_model(f"gs://{BUCKET}/vision/probe.tflite", tmp_path / "cache")
    assert path.name == "probe.tflite" and path.read_bytes() == tflite_model.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == [".complete", "labels.txt", "model.json", "probe.tflite"]

    model = load_model(settings(model_cache_dir=str(tmp_path / "cache")), f"gs://{BUCKET}/vision/probe.tflite")
    assert model.info == {"name": "remote-probe", "version": "5", "id": "remote-probe@5"}
    with running_engine(model) as engine:
        result = engine.classify_one(inline_ref(encode(solid((0, 0, 250)), "PNG")))
    assert result.predictions[0].label == "blue"


def test_a_download_is_reused_from_the_cache(gcs, tflite_model, tmp_path):
    gcs.blob("again/probe.tflite").upload_from_filename(str(tflite_model))
    first = download_model(f"gs://{BUCKET}/again/probe.tflite", tmp_path)
    gcs.blob("again/probe.tflite").delete()  # gone remotely: the cached copy still serves
    assert download_model(f"gs://{BUCKET}/again/probe.tflite", tmp_path) == first
    assert first.read_bytes() == tflite_model.read_bytes()


def test_a_model_at_the_bucket_root(gcs, tflite_model, tmp_path):
    gcs.blob("root.tflite").upload_from_filename(str(tflite_model))
    gcs.blob("labels.txt").upload_from_string("r\ng\nb\n")
    path = download_model(f"gs://{BUCKET}/root.tflite", tmp_path)
    assert path.name == "root.tflite" and (path.parent / "labels.txt").read_text() == "r\ng\nb\n"
    assert open_model(path, settings()).labels.name(2) == "b"


def test_a_saved_model_directory_prefix(gcs, logits_saved_model, tmp_path):
    uploaded = upload_tree(gcs, logits_saved_model, "exports/probe/")
    assert "exports/probe/saved_model.pb" in uploaded and any("/variables/" in n for n in uploaded)
    gcs.blob("exports/probe-old/saved_model.pb").upload_from_string(b"a neighbour sharing the name's start")

    for uri in (f"gs://{BUCKET}/exports/probe", f"gs://{BUCKET}/exports/probe/"):
        path = download_model(uri, tmp_path / "cache")
        local = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        assert local == sorted(n[len("exports/probe/"):] for n in uploaded)
        model = open_model(path, settings())
        assert model.runtime.kind == "saved_model" and model.labels.name(1) == "green"
        with running_engine(model) as engine:
            assert engine.classify_one(inline_ref(encode(solid((0, 240, 0)), "PNG"))).predictions[0].label == "green"


def test_nothing_at_the_uri_is_not_found(gcs, tmp_path):
    for uri in (f"gs://{BUCKET}/missing/model.tflite", f"gs://{BUCKET}/missing-dir"):
        with pytest.raises(BucketeyeError) as caught:
            download_model(uri, tmp_path)
        assert caught.value.code == "not_found" and not caught.value.retryable
    assert not any(tmp_path.iterdir())  # no half-made cache entry left behind


@pytest.mark.parametrize("uri, code", [("gs://", "bad_message"), (f"gs://{BUCKET}", "bad_message"),
                                       ("https://storage.googleapis.com/b/m.tflite", "forbidden_source")])
def test_bad_model_uris(uri, code, tmp_path):
    with pytest.raises(BucketeyeError) as caught:
        download_model(uri, tmp_path)
    assert caught.value.code == code


def test_an_image_named_without_generation_is_identified_by_the_version_read(gcs, tflite_model):
    """Overwriting an object must not reuse the old result_id: the engine fills in the
    generation it actually read, plus the stored content type and size."""
    from shared.refs import ImageRef

    model = open_model(tflite_model, settings())
    blob = gcs.blob("photos/cat.png")
    ref = ImageRef(trigger="pubsub", uri=f"gs://{BUCKET}/photos/cat.png", bucket=BUCKET, object="photos/cat.png")
    with running_engine(model, allowed_buckets=(BUCKET,)) as engine:
        blob.upload_from_string(encode(solid((200, 10, 10)), "PNG"), content_type="image/png")
        first = engine.classify_one(ref)
        blob.upload_from_string(encode(solid((10, 200, 10)), "PNG"), content_type="image/png")
        second = engine.classify_one(ref)
    assert first.ok and second.ok
    assert first.ref.generation and second.ref.generation and first.ref.generation != second.ref.generation
    assert first.result_id != second.result_id
    assert first.to_record()["source"]["content_type"] == "image/png"
    assert first.to_record()["source"]["size_bytes"] == len(encode(solid((200, 10, 10)), "PNG"))


def test_a_storage_event_s_size_and_generation_save_the_metadata_read(gcs):
    """With version and size known, the object is read in one ranged request, and a size
    the event understated cannot make it read past the limit."""
    data = encode(solid((5, 5, 5), size=(64, 64)), "PNG")
    blob = gcs.blob("events/one.png")
    blob.upload_from_string(data, content_type="image/png")
    blob.reload()
    got = storage.fetch_object(BUCKET, "events/one.png", generation=str(blob.generation), known_size=len(data),
                               max_bytes=10_000, timeout=10)
    assert got.data == data and got.generation == str(blob.generation)
    with pytest.raises(BucketeyeError) as raised:
        storage.fetch_object(BUCKET, "events/one.png", generation=str(blob.generation), known_size=10,
                             max_bytes=len(data) - 1, timeout=10)
    assert raised.value.code == "too_large"
    with pytest.raises(BucketeyeError) as gone:
        storage.fetch_object(BUCKET, "events/none.png", generation="1", known_size=10, max_bytes=10_000, timeout=10)
    assert gone.value.code == "not_found"
