"""google-cloud-storage clients for the emulator (anonymous, endpoint = the emulator's url).
`cert`: over https, the emulator's own certificate, the one CA these clients trust."""
from __future__ import annotations

from pathlib import Path

from functions.local.defaults import PROJECT
from functions.local.probe import answers


def client(url: str, cert: str | Path | None = None):
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage
    credentials = AnonymousCredentials()
    session = None
    if cert:
        session = AuthorizedSession(credentials)
        session.verify = str(cert)
        session.trust_env = False  # loopback: no proxy, and no REQUESTS_CA_BUNDLE overriding `verify`
    return storage.Client(project=PROJECT, credentials=credentials, client_options={"api_endpoint": url},
                          _http=session)


def reachable(url: str, cert: str | Path | None = None, timeout: float = 2.0) -> bool:
    return answers(f"{url}/storage/v1/b", timeout, cafile=cert)


def ensure_buckets(url: str, names, cert: str | Path | None = None) -> None:
    from google.api_core.exceptions import Conflict
    storage = client(url, cert)
    for name in names:
        try:
            storage.create_bucket(name)
        except Conflict:
            pass  # kept from an earlier run
