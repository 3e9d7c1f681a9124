"""`python main.py dataset faces SRC OUT`: a folder of photos -> a face training set.

The seeds' face pipeline, without a paid API: find faces (face_detect), drop faces turned
past a limit, drop faces wearing sunglasses (our own ImageNet classifier: "sunglass" /
"sunglasses"), crop each face with a margin, resize (96 x 96), split 70 / 30, and drop
duplicate photos both by MD5 (identical files) and by a perceptual hash (resized,
re-encoded or lightly edited copies, which MD5 misses). Of a set of copies the largest
photo is kept. Every photo or face left out is listed in dropped.csv with its reason.

OUT/train/*.png and OUT/validation/*.png are the crops; OUT/faces.csv says where each came
from (photo, face box, roll, yaw, sunglasses score).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from shared.errors import BucketeyeError

SUNGLASSES = ("sunglass", "sunglasses")  # ImageNet classes 836 and 837


@dataclass(frozen=True)
class FaceOptions:
    size: int = 96
    margin: float = 0.25           # added on every side, as a share of the face box
    max_roll: float = 20.0         # degrees
    max_yaw: float = 20.0
    validation_share: float = 0.3
    sunglasses_score: float = 0.3  # "sunglass" + "sunglasses" probability at or above which a face is dropped
    phash_distance: int = 6        # bits (of 64) within which two photos are copies


@dataclass
class Photo:
    path: str
    md5: str
    pixels: int
    phash: object = None


@dataclass
class KeptFace:
    source: str
    face: int
    box: tuple
    roll: float
    yaw: float
    sunglasses: float
    crop: Image.Image = field(repr=False)
    split: str = ""
    file: str = ""


@dataclass
class FaceReport:
    kept: list[KeptFace]
    dropped: list[dict]  # {"source", "face", "reason"}


def build(paths: list[str], out: Path, options: FaceOptions, *, classify, max_bytes: int, max_pixels: int,
          detector=None) -> FaceReport:
    """classify(list of PIL images) -> list of {label: score} (the sunglasses check)."""
    from functions.dataset.face_detect import FaceDetector
    detector = detector or FaceDetector()
    dropped: list[dict] = []
    photos = _unique_photos(paths, options, dropped, max_bytes=max_bytes, max_pixels=max_pixels)
    kept: list[KeptFace] = []
    for photo in photos:
        image = _decode(photo.path, max_bytes, max_pixels)
        faces = detector.detect(image)
        if not faces:
            dropped.append(_drop(photo.path, None, "no face found"))
            continue
        # Sunglasses first: dark lenses also hide the eyes, and that reason says more than "no pose".
        scores = classify([image.crop(tuple(round(v) for v in face.box)) for face in faces])
        for i, (face, score) in enumerate(zip(faces, scores)):
            sunglasses = sum(score.get(name, 0.0) for name in SUNGLASSES)
            reason = (f"sunglasses (score {sunglasses:.2f})" if sunglasses >= options.sunglasses_score
                      else _pose_reason(face, options))
            if reason:
                dropped.append(_drop(photo.path, i, reason))
                continue
            kept.append(KeptFace(source=photo.path, face=i, box=tuple(round(v, 1) for v in face.box),
                                 roll=round(face.roll, 1), yaw=round(face.yaw, 1), sunglasses=round(sunglasses, 4),
                                 crop=crop_face(image, face, options.margin, options.size)))
    _split(kept, {p.path: p.md5 for p in photos}, options.validation_share)
    _write(out, kept, dropped)
    return FaceReport(kept=kept, dropped=dropped)


def _drop(source: str, face: int | None, reason: str) -> dict:
    return {"source": source, "face": "" if face is None else face, "reason": reason}


def _decode(path: str, max_bytes: int, max_pixels: int) -> Image.Image:
    from shared.engine import _read_local
    from shared.imaging import decode_image
    return decode_image(_read_local(path, max_bytes), max_bytes=max_bytes, max_pixels=max_pixels).image


def _unique_photos(paths, options: FaceOptions, dropped: list, *, max_bytes: int, max_pixels: int) -> list[Photo]:
    """Readable photos, one of each set of copies: the largest (then the first by name)."""
    import imagehash

    from shared.engine import _read_local
    from shared.imaging import decode_image
    photos = []
    for path in sorted(paths):
        try:
            data = _read_local(path, max_bytes)
            decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
        except BucketeyeError as exc:
            dropped.append(_drop(path, None, f"{exc.code}: {exc.message}"))
            continue
        photos.append(Photo(path=path, md5=hashlib.md5(data).hexdigest(), pixels=decoded.width * decoded.height,
                            phash=imagehash.phash(decoded.image)))
    unique: list[Photo] = []
    for photo in sorted(photos, key=lambda p: (-p.pixels, p.path)):
        same = next((u for u in unique if u.md5 == photo.md5), None)
        if same is not None:
            dropped.append(_drop(photo.path, None, f"duplicate of {same.path} (same MD5)"))
            continue
        near = min(unique, key=lambda u: u.phash - photo.phash, default=None)
        distance = near.phash - photo.phash if near is not None else None
        if distance is not None and distance <= options.phash_distance:
            dropped.append(_drop(photo.path, None, f"duplicate of {near.path} (perceptual hash {distance} of 64 "
                                                   "bits apart)"))
            continue
        unique.append(photo)
    return sorted(unique, key=lambda p: p.path)


def _pose_reason(face, options: FaceOptions) -> str | None:
    if face.eyes is None:
        return "pose cannot be estimated: no pair of eyes found (turned away, covered, or not a face)"
    if abs(face.roll) > options.max_roll:
        return f"turned too far: roll {face.roll:.0f}° (limit {options.max_roll:g}°)"
    if abs(face.yaw) > options.max_yaw:
        return f"turned too far: yaw {face.yaw:.0f}° (limit {options.max_yaw:g}°)"
    return None


def crop_face(image: Image.Image, face, margin: float, size: int) -> Image.Image:
    """A square around the face, `margin` of its size added on each side, kept inside the photo."""
    left, top, right, bottom = face.box
    side = min(max(right - left, bottom - top) * (1 + 2 * margin), image.width, image.height)
    cx, cy = face.centre
    x0 = min(max(cx - side / 2, 0), image.width - side)
    y0 = min(max(cy - side / 2, 0), image.height - side)
    return image.resize((size, size), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side))


def _split(kept: list[KeptFace], md5_of: dict[str, str], share: float) -> None:
    """All faces of a photo in one split (no photo on both sides); photos in the order of a hash
    of their content go to validation until it holds `share` of the faces."""
    sources = sorted({k.source for k in kept}, key=lambda s: hashlib.sha256(md5_of[s].encode()).hexdigest())
    wanted = round(share * len(kept))
    validation: set[str] = set()
    count = 0
    for source in sources:
        if count >= wanted:
            break
        validation.add(source)
        count += sum(k.source == source for k in kept)
    for face in kept:
        face.split = "validation" if face.source in validation else "train"


def _write(out: Path, kept: list[KeptFace], dropped: list[dict]) -> None:
    for split in ("train", "validation"):
        (out / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for face in kept:
        digest = hashlib.sha256(face.source.encode()).hexdigest()[:8]
        face.file = f"{face.split}/{Path(face.source).stem}-{digest}-face{face.face}.png"
        face.crop.save(out / face.file)
        rows.append([face.file, face.split, face.source, face.face, *face.box, face.roll, face.yaw, face.sunglasses])
    with open(out / "faces.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "split", "source", "face", "left", "top", "right", "bottom", "roll", "yaw",
                         "sunglasses"])
        writer.writerows(rows)
    with open(out / "dropped.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["source", "face", "reason"])
        writer.writerows([d["source"], d["face"], d["reason"]] for d in sorted(dropped, key=lambda d: d["source"]))
