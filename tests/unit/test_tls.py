"""The local GCS emulator's certificate: made once per state folder and reused, remade when
its key is unreadable, the key readable by its owner only, and a CA bundle that keeps the
usual roots beside it. (The handshake itself is tested against the real emulator in
tests/local/test_cross_origin.py.)"""
from __future__ import annotations

import ipaddress

import requests.certs
from cryptography import x509

from functions.local import tls


def test_made_once_and_reused(tmp_path):
    first = tls.ensure(tmp_path / "tls")
    cert, key = first.cert.read_bytes(), first.key.read_bytes()
    again = tls.ensure(tmp_path / "tls")
    assert again == first and again.cert.read_bytes() == cert and again.key.read_bytes() == key
    assert first.key.stat().st_mode & 0o777 == 0o600


def test_names_loopback_and_localhost(tmp_path):
    cert = x509.load_pem_x509_certificate(tls.ensure(tmp_path).cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_an_unreadable_key_is_replaced_with_a_new_pair(tmp_path):
    files = tls.ensure(tmp_path)
    old = files.cert.read_bytes()
    files.key.write_text("not a key")
    tls.ensure(tmp_path)
    assert files.cert.read_bytes() != old and b"PRIVATE KEY" in files.key.read_bytes()


def test_the_bundle_is_the_usual_roots_plus_the_certificate(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    files = tls.ensure(tmp_path)
    bundle = files.ca_bundle.read_bytes()
    assert bundle.startswith(open(requests.certs.where(), "rb").read().rstrip(b"\n"))
    assert bundle.endswith(files.cert.read_bytes())
