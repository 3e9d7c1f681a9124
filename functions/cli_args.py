"""Argument types shared by every command-line parser, and which files they take as images."""
from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".mpo"}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def expand_paths(patterns: list[str]) -> list[str]:
    """Files as given; directories walked for image files; globs expanded. Missing paths stay
    in the list so they are reported as not_found results rather than silently dropped."""
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found.append(pattern)
        elif glob.has_magic(pattern):
            found += sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            found.append(pattern)
    return found
