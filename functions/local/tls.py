"""The local GCS emulator's own TLS identity: a self-signed certificate for 127.0.0.1 and
localhost, made once per state folder and reused.

Serving HTTPS with a certificate no browser trusts keeps web pages off the emulator: a
page's upload (a form, or a fetch that needs no CORS preflight) fails in the TLS handshake,
before any HTTP request is sent. Our own clients trust exactly this certificate; the
functions server gets a CA bundle (the usual roots plus it) as REQUESTS_CA_BUNDLE, so its
other HTTPS calls still verify as before."""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from functions.local.statedir import write_atomic

VALID_DAYS = 3650
COMMON_NAME = "bucketeye local GCS emulator"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path      # PEM certificate, also the only CA our clients trust for the emulator
    key: Path       # PEM private key (owner-only)
    ca_bundle: Path  # the usual CA roots plus `cert`: REQUESTS_CA_BUNDLE for the functions server


def ensure(folder: Path) -> TlsFiles:
    """The folder's certificate and key (made if missing, unreadable or expired) and a fresh
    CA bundle beside them."""
    folder = Path(folder)
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", folder / "ca-bundle.pem")
    if not _usable(files):
        _make(files)
    _write_bundle(files)
    return files


def _usable(files: TlsFiles) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    fresh = cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return fresh and cert.public_key() == key.public_key()


def _make(files: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)  # its own trust anchor
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    files.cert.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_atomic(files.key, key_pem, mode=0o600)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))


def _write_bundle(files: TlsFiles) -> None:
    import requests.certs
    roots = Path(os.environ.get("REQUESTS_CA_BUNDLE") or requests.certs.where())
    if roots.resolve() == files.ca_bundle.resolve():  # this stack's own bundle, handed down to a child
        return
    write_atomic(files.ca_bundle, roots.read_bytes().rstrip(b"\n") + b"\n" + files.cert.read_bytes())
