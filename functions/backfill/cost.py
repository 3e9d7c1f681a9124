"""What a backfill would cost and take, for --dry-run.

The default per-image figure is docs/deploy.md's "Cost sketch per million images"
(section 7): ≈ $3.00 per million typical 2–3 MP photos on one L4 instance with 8 vCPUs
(Cloud Run, Pub/Sub, Logging, BigQuery streaming, Cloud Storage reads), i.e. $0.000003 per
image; its planning figure for throughput is 230 images/s per instance. Override either
with BACKFILL_COST_PER_IMAGE_USD / BACKFILL_IMAGES_PER_SECOND (e.g. ≈ $7 per million for
12 MP photos, per the same section).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from functions.console.errors import EXIT_USAGE, CommandError

COST_PER_IMAGE_USD = 3.00 / 1_000_000
IMAGES_PER_SECOND_PER_INSTANCE = 230.0
SOURCE = "docs/deploy.md §7: ≈ $3.00 per million 2–3 MP photos, 230 images/s per L4 instance"


@dataclass(frozen=True)
class Estimate:
    images: int
    usd: float
    per_image_usd: float
    hours_one_instance: float
    images_per_second: float


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CommandError(f"{name}={raw!r} is not a number", EXIT_USAGE) from None
    if value < 0:
        raise CommandError(f"{name}={raw!r} must not be negative", EXIT_USAGE)
    return value


def estimate(images: int) -> Estimate:
    per_image = _env_float("BACKFILL_COST_PER_IMAGE_USD", COST_PER_IMAGE_USD)
    rate = _env_float("BACKFILL_IMAGES_PER_SECOND", IMAGES_PER_SECOND_PER_INSTANCE) or IMAGES_PER_SECOND_PER_INSTANCE
    return Estimate(images, images * per_image, per_image, images / rate / 3600.0, rate)


def describe(est: Estimate) -> str:
    custom = "BACKFILL_COST_PER_IMAGE_USD" in os.environ or "BACKFILL_IMAGES_PER_SECOND" in os.environ
    hours = est.hours_one_instance
    duration = f"{hours * 3600:.0f} s" if hours < 1 / 60 else f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
    money = f"{est.usd:,.2f}" if est.usd >= 0.01 or est.usd == 0 else f"{est.usd:.7f}".rstrip("0")
    return (f"≈ ${money} for {est.images:,} images at ${est.per_image_usd * 1e6:,.2f} per million; "
            f"≈ {duration} on one instance at {est.images_per_second:.0f} images/s (fewer with more instances)"
            + ("" if custom else f"  [{SOURCE}]"))
