"""Whether a local emulator answers: a GET that returns 200."""
from __future__ import annotations

import urllib.error
import urllib.request


def answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
