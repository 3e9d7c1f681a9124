"""A gs:// model whose object names would land outside the model cache folder is refused.

Cloud Storage accepts names such as `m/../../x` or `m//etc/x`; the local GCS emulator refuses
them (its guard), so the listing here is a stand-in that yields such names. Everything else
(the download code, the cache folder) is real."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared import storage
from shared.errors import BucketeyeError
from shared.models.loader import download_model


class _Blob:
    def __init__(self, name: str, data: bytes = b"x"):
        self.name, self.data = name, data

    def download_to_filename(self, path: str) -> None:
        Path(path).write_bytes(self.data)


@pytest.mark.parametrize("hostile", ["m/../../escaped.txt", "m/sub/../../../escaped.txt", "m//escaped.txt"])
def test_names_escaping_the_cache_are_refused(hostile, tmp_path, monkeypatch):
    cache = tmp_path / "deep" / "cache"
    monkeypatch.setattr(storage, "list_objects", lambda bucket, prefix="": [_Blob("m/saved_model.pb"), _Blob(hostile)])

    with pytest.raises(BucketeyeError) as caught:
        download_model("gs://models/m/", cache)

    assert caught.value.code == "model_error" and "outside the model cache folder" in caught.value.message
    assert not caught.value.retryable
    assert sorted(p.name for p in tmp_path.rglob("escaped.txt")) == []
    assert not (Path("/") / "escaped.txt").exists()


def test_ordinary_names_are_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "list_objects",
                        lambda bucket, prefix="": [_Blob("m/saved_model.pb", b"pb"), _Blob("m/variables/v.index", b"i"),
                                                   _Blob("m/a..b/labels.txt", b"l")])

    path = download_model("gs://models/m/", tmp_path / "cache")

    assert (path / "saved_model.pb").read_bytes() == b"pb"
    assert (path / "variables" / "v.index").read_bytes() == b"i"
    assert (path / "a..b" / "labels.txt").read_bytes() == b"l"  # dots inside a name are no climb
