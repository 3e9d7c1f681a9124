"""Reading untrusted values from payloads: base64, int64-as-string, times, top_k, JSON and
bounded text. Each refuses what it cannot read with a bad_message error, never a 500."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from shared.errors import BucketeyeError

MAX_TOP_K = 100


def decode_b64(text: str, what: str) -> bytes:
    """Standard or URL-safe alphabet, line-wrapped or unpadded; anything else is refused, never
    decoded leniently into garbage bytes (that would be misreported as a bad image)."""
    compact = "".join(line.strip() for line in text.splitlines())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BucketeyeError("bad_message", f"{what} is not valid base64") from None


def int64(value, field: str) -> int | None:
    """int64 fields arrive as strings in real events, as ints from some tools."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BucketeyeError("bad_message", f"{field} must be an integer or a string of digits")
    if isinstance(value, int) and not 0 <= value < 2 ** 63:  # str() of a 5000-digit int raises ValueError
        raise BucketeyeError("bad_message", f"{field} must be a non-negative int64")
    text = str(value).strip()
    # isascii/len: "²" and 5000-digit strings pass isdigit() but make int() raise ValueError (a 500);
    # an int64 has at most 19 digits
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise BucketeyeError("bad_message", f"{field} must be a non-negative integer, got {text[:40]!r}")
    return int(text)


def parse_time(value) -> datetime | None:
    """An RFC 3339 time, or None when absent or unreadable (an age check then does not apply)."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def top_k(value, default: int | None = None, *, name: str = "top_k") -> int | None:
    """How many labels to return: 1..MAX_TOP_K, from a query string, a JSON number or a string."""
    if value is None or value == "":
        return default
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    # isascii/len: "²" and 5000-digit strings pass isdigit() but make int() raise (a 500)
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or not 1 <= int(text) <= MAX_TOP_K:
        raise BucketeyeError("bad_message", f"{name} must be an integer from 1 to {MAX_TOP_K}, got {str(value)[:20]!r}")
    return int(text)


def load_json(data: bytes | str, what: str):
    """Parsed JSON; JSON nested too deep to parse is malformed too (RecursionError was a 500)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise BucketeyeError("bad_message", f"{what} is not JSON") from None


def text(value, field: str, *, required: bool = False, max_chars: int | None = None) -> str:
    """A string field; refused when too long to log (keeps result lines small)."""
    if value is None or value == "":
        if required:
            raise BucketeyeError("bad_message", f"the event has no {field}")
        return ""
    if not isinstance(value, str):
        raise BucketeyeError("bad_message", f"{field} must be a string")
    if max_chars is not None and len(value) > max_chars:
        raise BucketeyeError("bad_message", f"{field} has more than {max_chars} characters")
    return value


def utf8_size(value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so over any limit
        return 1 << 30


def key_text(value) -> str:
    """A caller's key as the result record stores it (a string column); ImageRef bounds it."""
    return "" if value is None else str(value)
