"""Pages of a bucket listing, and which listed objects are images.

An object is an image when its content type is image/*. When the content type says
nothing (missing, or the generic application/octet-stream Cloud Storage records for an
upload that gave none), its first bytes decide, as in the service's storage trigger:
they must start with an image format's magic number (shared/imaging.py). Objects under
SKIP_PREFIXES are never sent (the service would skip them too).

Listing resumes after a given object name (the JSON API's startOffset is inclusive, so
that name itself is dropped): names are listed in lexicographic order, so "after the
last name of the last finished page" is exactly the rest of the bucket.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from shared.imaging import SNIFF_BYTES, is_generic_type, sniff_format

# The listing's fields: what the filter and the checks need, not the whole object resource.
FIELDS = "items(name,generation,contentType,size),nextPageToken"


@dataclass(frozen=True)
class ListedObject:
    name: str
    generation: str
    content_type: str
    size: int


@dataclass
class Page:
    objects: list[ListedObject]   # everything listed on this page
    last_name: str                # where the next run resumes


def is_image(obj: ListedObject, skip_prefixes=()) -> bool:
    """An image by its metadata, or a candidate whose bytes must decide (needs_sniff)."""
    if any(obj.name.startswith(prefix) for prefix in skip_prefixes):
        return False
    return needs_sniff(obj) or obj.content_type.split(";")[0].strip().lower().startswith("image/")


def needs_sniff(obj: ListedObject) -> bool:
    return is_generic_type(obj.content_type)


def bytes_are_image(client, bucket: str, obj: ListedObject) -> bool:
    """Read the object's first bytes (one small ranged read) and check for an image signature."""
    from google.api_core import exceptions as gexc
    if obj.size == 0:
        return False
    blob = client.bucket(bucket).blob(obj.name, generation=int(obj.generation) if obj.generation else None)
    try:
        head = blob.download_as_bytes(start=0, end=SNIFF_BYTES - 1, timeout=60)
    except gexc.NotFound:  # deleted since it was listed: nothing to classify
        return False
    return sniff_format(head) is not None


def images_of(client, bucket: str, objects: list[ListedObject], skip_prefixes=()) -> list[ListedObject]:
    """The listed objects that are images, generic-typed ones identified by their bytes."""
    return [obj for obj in objects if is_image(obj, skip_prefixes)
            and (not needs_sniff(obj) or bytes_are_image(client, bucket, obj))]


def storage_client(endpoint: str | None = None):
    """A client for the cloud, the emulator named by STORAGE_EMULATOR_HOST, or `endpoint`."""
    from google.cloud import storage
    endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                              credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    return storage.Client()


def list_pages(client, bucket: str, prefix: str = "", *, after: str = "", page_size: int = 1000,
               fields: str = FIELDS) -> Iterator[Page]:
    """The bucket's objects under `prefix`, one page at a time, resuming after the name `after`."""
    iterator = client.list_blobs(bucket, prefix=prefix or None, start_offset=after or None, page_size=page_size,
                                 fields=fields, timeout=60)
    for page in iterator.pages:
        listed = [ListedObject(blob.name, str(blob.generation or ""), blob.content_type or "", int(blob.size or 0))
                  for blob in page]
        listed = [obj for obj in listed if not after or obj.name > after]
        if listed:
            yield Page(listed, listed[-1].name)


def count_objects(client, bucket: str, prefix: str = "", *, after: str = "", skip_prefixes=(),
                  on_page=lambda listed, images: None, stop=None) -> tuple[int, int]:
    """A quick count (names and content types only) for the progress bar's total and ETA: objects
    of a generic type count as images here, their bytes are read only when their page is sent."""
    listed = images = 0
    for page in list_pages(client, bucket, prefix, after=after, fields="items(name,contentType),nextPageToken"):
        listed += len(page.objects)
        images += sum(1 for obj in page.objects if is_image(obj, skip_prefixes))
        on_page(listed, images)
        if stop is not None and stop.is_set():
            break
    return listed, images
