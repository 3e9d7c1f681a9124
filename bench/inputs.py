"""The bench set: real photos from scikit-image plus deterministic generated inputs
(phone-size JPEGs, PNG screenshots, small thumbnails), written once into a folder."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
PHONE_SIZE = (4032, 3024)


def photo_dir() -> Path:
    import skimage
    return Path(skimage.__file__).parent / "data"


def photos() -> list[Path]:
    return [photo_dir() / name for name in PHOTOS]


def phone_jpeg(seed: int) -> bytes:
    """A 12 MP camera-like JPEG (~3 MB): a real photo upscaled, with sensor-like noise."""
    rng = np.random.default_rng(seed)
    base = Image.open(photos()[seed % len(PHOTOS)]).convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    noisy = np.asarray(base, dtype=np.int16) + rng.normal(0, 6, (PHONE_SIZE[1], PHONE_SIZE[0], 3)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=92)
    return out.getvalue()


def screenshot_png(seed: int) -> bytes:
    """A 1920x1080 UI-like PNG: flat panels, lines of 'text', a photo inset."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (1920, 1080), (245, 245, 248))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = int(rng.integers(0, 1800)), int(rng.integers(0, 1000))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x, y, x + int(rng.integers(40, 400)), y + int(rng.integers(10, 200))], fill=colour)
    for line in range(60):
        draw.text((40, 20 + line * 17), f"bucketeye screenshot line {line} {'x' * int(rng.integers(5, 80))}",
                  fill=(20, 20, 20))
    img.paste(Image.open(photos()[seed % len(PHOTOS)]).convert("RGB").resize((480, 320)), (1300, 600))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def thumbnail_jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.open(photos()[seed % len(PHOTOS)]).convert("RGB").resize((160, 120)).save(out, "JPEG", quality=90)
    return out.getvalue()


def upload_jpeg(seed: int) -> bytes:
    """A typical web upload: an 800x600 photo JPEG."""
    out = io.BytesIO()
    Image.open(photos()[seed % len(PHOTOS)]).convert("RGB").resize((800, 600)).save(out, "JPEG", quality=90)
    return out.getvalue()


def bench_set(folder: Path, *, phones: int = 2, screenshots: int = 2, thumbnails: int = 6,
              uploads: int = 2) -> dict[str, list[Path]]:
    """Write the bench set into `folder` (reused if present); returns paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {"phone": (phones, phone_jpeg, "jpg"), "screenshot": (screenshots, screenshot_png, "png"),
             "thumbnail": (thumbnails, thumbnail_jpeg, "jpg"), "upload": (uploads, upload_jpeg, "jpg")}
    found: dict[str, list[Path]] = {"photo": photos()}
    for kind, (count, make, suffix) in kinds.items():
        found[kind] = []
        for seed in range(count):
            path = folder / f"{kind}-{seed}.{suffix}"
            if not path.exists():
                path.write_bytes(make(seed))
            found[kind].append(path)
    return found
