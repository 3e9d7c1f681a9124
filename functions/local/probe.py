"""Whether a local emulator answers: a GET that returns 200."""
from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path


def answers(url: str, timeout_s: float = 1.0, *, cafile: str | Path | None = None) -> bool:
    """`cafile`: the one certificate an https emulator may present."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
