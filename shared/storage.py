"""Reading images from Cloud Storage (or the emulator named by STORAGE_EMULATOR_HOST).

Only gs:// URIs on the allow-list are read; http(s) URLs are never fetched. Storage
errors become stable codes: a missing object is permanent, a 5xx or timeout is not.
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass

from shared.errors import BucketeyeError
from shared.imaging import check_size

_client_lock = threading.Lock()
# Cloud Storage's own limits. Longer (or non-UTF-8) names cannot exist; let through, a 1 MB
# name made a result line over Cloud Logging's 256 KiB entry limit (a lost row), and a lone
# surrogate made the result line unwritable.
MAX_BUCKET_CHARS = 222
MAX_OBJECT_BYTES = 1024


@dataclass(frozen=True)
class GcsObject:
    bucket: str
    name: str


def parse_gs_uri(uri: str) -> GcsObject:
    """gs://bucket/object -> GcsObject; anything else is refused with a clear code."""
    text = (uri or "").strip()
    lowered = text.lower()
    if lowered.startswith(("http://", "https://", "ftp://", "file:")):
        raise BucketeyeError("forbidden_source", "URLs are never fetched; name images as gs://bucket/object")
    if not lowered.startswith("gs://"):
        raise BucketeyeError("bad_message", f"not a gs:// URI: {text[:200]!r}")
    bucket, _, name = text[5:].partition("/")
    if not bucket or not name:
        raise BucketeyeError("bad_message", f"a gs:// URI needs a bucket and an object name: {text[:200]!r}")
    check_names(bucket, name)
    return GcsObject(bucket, name)


def check_names(bucket: str, name: str) -> None:
    """Refuse bucket and object names Cloud Storage cannot hold (see MAX_OBJECT_BYTES)."""
    if len(bucket) > MAX_BUCKET_CHARS:
        raise BucketeyeError("bad_message", f"a bucket name has at most {MAX_BUCKET_CHARS} characters")
    try:
        size = len(name.encode("utf-8"))
        bucket.encode("utf-8")
    except UnicodeEncodeError:
        raise BucketeyeError("bad_message", "bucket and object names must be valid UTF-8") from None
    if size > MAX_OBJECT_BYTES:
        raise BucketeyeError("bad_message", f"an object name has at most {MAX_OBJECT_BYTES} bytes, not {size}")


@functools.lru_cache(maxsize=1)
def _client():
    from google.cloud import storage
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                              credentials=AnonymousCredentials())
    return storage.Client()


def client():
    with _client_lock:  # creating the client is not thread-safe; using it is
        return _client()


@dataclass
class FetchedObject:
    data: bytes
    content_type: str
    size: int
    generation: str
    md5_hash: str


def fetch_object(bucket: str, name: str, *, generation: str = "", known_size: int | None = None,
                 max_bytes: int, timeout: float) -> FetchedObject:
    """Read one object's bytes, refusing oversize objects before download.

    When the caller already knows the version and size (a storage event says both), one
    ranged read suffices; otherwise the metadata is read first."""
    import requests
    from google.api_core import exceptions as gexc
    from google.cloud.storage.retry import DEFAULT_RETRY

    retry = DEFAULT_RETRY.with_timeout(timeout)  # bounded: a slow store must not hold a request forever
    try:
        if generation and known_size is not None:
            check_size(known_size, max_bytes)
            blob = client().bucket(bucket).blob(name, generation=int(generation))
            # At most one byte over the limit, whatever the event claimed the size was.
            data = blob.download_as_bytes(start=0, end=max_bytes, timeout=timeout, retry=retry)
            check_size(len(data), max_bytes)
            return FetchedObject(data=data, content_type="", size=len(data), generation=generation, md5_hash="")
        blob = client().bucket(bucket).get_blob(name, generation=int(generation) if generation else None,
                                                timeout=timeout, retry=retry)
        if blob is None:
            raise BucketeyeError("not_found", f"gs://{bucket}/{name} does not exist"
                                 + (f" at generation {generation}" if generation else ""))
        check_size(int(blob.size or 0), max_bytes)
        data = blob.download_as_bytes(timeout=timeout, retry=retry)
    except BucketeyeError:
        raise
    except gexc.NotFound:
        raise BucketeyeError("not_found", f"gs://{bucket}/{name} does not exist") from None
    except (gexc.Forbidden, gexc.Unauthorized):
        raise BucketeyeError("forbidden_source", f"the service may not read gs://{bucket}/{name}") from None
    except (gexc.TooManyRequests, gexc.ServerError, gexc.RetryError, requests.RequestException,
            ConnectionError, TimeoutError) as exc:
        raise BucketeyeError("fetch_failed", f"reading gs://{bucket}/{name} failed: {type(exc).__name__}") from None
    except gexc.GoogleAPICallError as exc:
        raise BucketeyeError("fetch_failed", f"reading gs://{bucket}/{name} failed: {exc.code}",
                             retryable=False) from None
    return FetchedObject(data=data, content_type=blob.content_type or "", size=len(data),
                         generation=str(blob.generation or ""), md5_hash=blob.md5_hash or "")


def list_objects(bucket: str, prefix: str = ""):
    return client().list_blobs(bucket, prefix=prefix or None)
