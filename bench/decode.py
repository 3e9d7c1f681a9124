"""Figure 2: decode + resize to the model's size, ours against full decode then resize
(12 MP JPEGs) and against raw Pillow (small images)."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bench.timing import rate
from shared.imaging import decode_image, draft_size
from shared.models.spec import InputSpec
from shared.preprocess import preprocess

LIMITS = {"max_bytes": 64 * 1024 * 1024, "max_pixels": 100_000_000}


def ours(data: bytes, spec: InputSpec):
    crop = spec.crop_fraction if spec.resize_mode == "crop" else 1.0
    decoded = decode_image(data, min_size=draft_size((spec.width, spec.height), crop), **LIMITS)
    return preprocess(decoded.image, spec)


def full_decode_then_resize(data: bytes, spec: InputSpec):
    """The same resize, without decoding at reduced scale."""
    return preprocess(Image.open(io.BytesIO(data)).convert("RGB"), spec)


def raw_pillow(data: bytes, spec: InputSpec):
    """Plain Pillow: open, convert, resize."""
    return Image.open(io.BytesIO(data)).convert("RGB").resize((spec.width, spec.height), Image.Resampling.BICUBIC)


def rates(paths: list[Path], spec: InputSpec, seconds: float, rounds: int = 5) -> dict[str, list[float]]:
    """Images/s of each way, measured in turns (one short run of each, `rounds` times), so
    a change in the shared machine's speed reaches all of them alike."""
    blobs = [p.read_bytes() for p in paths]
    ways = {"ours": ours, "full": full_decode_then_resize, "pillow": raw_pillow}
    out: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            state = {"i": 0}

            def one(fn=fn, state=state):
                fn(blobs[state["i"] % len(blobs)], spec)
                state["i"] += 1
            out[name].append(rate(one, min_calls=len(blobs), min_seconds=seconds / rounds))
    return out
