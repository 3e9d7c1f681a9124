"""google-cloud-storage clients for the emulator (anonymous, endpoint = the emulator's url)."""
from __future__ import annotations

from functions.local.defaults import PROJECT
from functions.local.probe import answers


def client(url: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url})


def reachable(url: str, timeout: float = 2.0) -> bool:
    return answers(f"{url}/storage/v1/b", timeout)


def ensure_buckets(url: str, names) -> None:
    from google.api_core.exceptions import Conflict
    storage = client(url)
    for name in names:
        try:
            storage.create_bucket(name)
        except Conflict:
            pass  # kept from an earlier run
