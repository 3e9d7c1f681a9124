"""Concurrent decodes share a pixel budget: N decode threads meeting N huge images hold at
most the budget's pixels at once (plus nothing: a lone image over the budget still goes,
alone), and every reservation is handed back, also when the decode fails."""
from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from shared.errors import BucketeyeError
from shared.imaging import PixelBudget, decode_image, default_pixel_budget

SIDE = 1000  # 1 MPixel PNGs
LIMITS = {"max_bytes": 50_000_000, "max_pixels": 50_000_000}


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((SIDE, SIDE), 40 + seed).convert("RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


def test_concurrent_decodes_stay_within_the_budget():
    budget = PixelBudget(int(2.5 * SIDE * SIDE))  # room for two images at a time
    images = [_png(i) for i in range(8)]
    holding, most = 0, 0
    lock = threading.Lock()

    def decode(data: bytes) -> tuple[int, int]:
        nonlocal holding, most
        decoded = decode_image(data, budget=budget, **LIMITS)
        with lock:
            holding += 1
            most = max(most, holding)
        time.sleep(0.05)  # the image is in use (preprocessing) while others wait
        with lock:
            holding -= 1
        decoded.release()
        return decoded.width, decoded.height

    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(decode, images))

    assert sizes == [(SIDE, SIDE)] * 8
    assert budget.peak <= budget.limit and most == 2
    assert budget.in_use == 0


def test_a_lone_image_larger_than_the_budget_still_decodes():
    budget = PixelBudget(10)
    decoded = decode_image(_png(0), budget=budget, **LIMITS)
    assert budget.in_use == SIDE * SIDE
    decoded.release()
    decoded.release()  # twice is harmless
    assert budget.in_use == 0


def test_a_failed_decode_hands_its_pixels_back():
    budget = PixelBudget(SIDE * SIDE)
    truncated = _png(1)[:5000]
    with pytest.raises(BucketeyeError) as caught:
        decode_image(truncated, budget=budget, **LIMITS)
    assert caught.value.code == "corrupt_image" and budget.in_use == 0


def test_the_default_budget_is_a_share_of_memory_and_fits_the_largest_image():
    assert default_pixel_budget(50_000_000) >= 50_000_000
    assert default_pixel_budget(1) > 1000
