"""`python main.py dataset faces SRC OUT` on real photos (scikit-image's astronaut, turned,
reframed, copied, resized, re-encoded, wearing painted sunglasses; a cat, a cup, a broken
file), with OpenCV's packaged detector and the built-in classifier; outputs read back."""
from __future__ import annotations

import csv
import shutil

import pytest
from PIL import Image, ImageDraw

from functions.cli import main
from functions.dataset.face_detect import roll_degrees, yaw_degrees
from functions.dataset.faces import _split
from tests.byte_models import photo, photo_path

ASTRONAUT_FACE = (177, 67, 270, 160)  # left, top, right, bottom of the face the detector finds


def _sunglasses(img: Image.Image, eyes) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    for cx, cy in eyes:
        draw.ellipse([cx - 19, cy - 13, cx + 19, cy + 13], fill=(10, 10, 12))
    draw.line([(eyes[1][0] + 19, 100), (eyes[0][0] - 19, 100)], fill=(10, 10, 12), width=4)
    return out


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    astronaut = photo("astronaut.png")
    shutil.copy(photo_path("astronaut.png"), folder / "astronaut.png")
    (folder / "copies").mkdir()
    shutil.copy(photo_path("astronaut.png"), folder / "copies" / "same-bytes.png")
    astronaut.resize((307, 307), Image.Resampling.LANCZOS).save(folder / "copies" / "smaller.png")
    astronaut.save(folder / "copies" / "re-encoded.jpg", quality=70)
    astronaut.rotate(10, expand=True).save(folder / "turned-10.png")
    astronaut.rotate(-10, expand=True).save(folder / "turned-minus-10.png")
    astronaut.crop((0, 0, 512, 300)).save(folder / "reframed.png")
    astronaut.rotate(35, expand=True).save(folder / "turned-35.png")
    _sunglasses(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ((309, 101), (264, 102))).save(
        folder / "sunglasses.png")
    shutil.copy(photo_path("chelsea.png"), folder / "cat.png")
    shutil.copy(photo_path("coffee.png"), folder / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    return folder


@pytest.fixture(scope="module")
def built(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    assert main(["dataset", "faces", str(src), str(out)]) == 0
    return out


def _csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_dropped_photo_is_listed_with_its_reason(built, src):
    dropped = {(row["source"].replace(str(src) + "/", ""), row["face"]): row["reason"]
               for row in _csv(built / "dropped.csv")}
    assert dropped.keys() == {("copies/same-bytes.png", ""), ("copies/smaller.png", ""),
                              ("copies/re-encoded.jpg", ""), ("turned-35.png", "0"), ("sunglasses.png", "0"),
                              ("cat.png", ""), ("coffee.png", ""), ("broken.jpg", "")}
    original = str(src / "astronaut.png")
    assert dropped[("copies/same-bytes.png", "")] == f"duplicate of {original} (same MD5)"
    # the copies MD5 misses: caught by the perceptual hash
    assert dropped[("copies/smaller.png", "")].startswith(f"duplicate of {original} (perceptual hash")
    assert dropped[("copies/re-encoded.jpg", "")].startswith(f"duplicate of {original} (perceptual hash")
    assert dropped[("turned-35.png", "0")].startswith("turned too far: roll")
    assert dropped[("sunglasses.png", "0")].startswith("sunglasses (score")
    assert dropped[("cat.png", "")] == dropped[("coffee.png", "")] == "no face found"
    assert dropped[("broken.jpg", "")].startswith("corrupt_image")


def test_kept_faces_are_96_pixel_crops_split_70_30(built, src):
    faces = _csv(built / "faces.csv")
    assert sorted(row["source"].replace(str(src) + "/", "") for row in faces) == [
        "astronaut.png", "reframed.png", "turned-10.png", "turned-minus-10.png"]
    assert sorted(row["split"] for row in faces) == ["train", "train", "train", "validation"]  # round(0.3 x 4)
    for row in faces:
        crop = Image.open(built / row["file"])
        assert crop.size == (96, 96) and row["file"].startswith(row["split"] + "/")
        assert abs(float(row["roll"])) <= 20 and abs(float(row["yaw"])) <= 20
        assert float(row["sunglasses"]) < 0.3
    by_source = {row["source"].replace(str(src) + "/", ""): row for row in faces}
    box = tuple(float(by_source["astronaut.png"][k]) for k in ("left", "top", "right", "bottom"))
    assert box == pytest.approx(ASTRONAUT_FACE, abs=3)
    assert float(by_source["turned-10.png"]["roll"]) == pytest.approx(float(by_source["astronaut.png"]["roll"]) - 10,
                                                                      abs=4)
    assert sorted(p.name for p in built.rglob("*.png")) == sorted(row["file"].split("/")[1] for row in faces)


def test_the_crop_is_the_face(built, src):
    """The crop holds the face: the detector finds it again, filling most of the picture."""
    from functions.dataset.face_detect import FaceDetector
    row = next(r for r in _csv(built / "faces.csv") if r["source"].endswith("/astronaut.png"))
    crop = Image.open(built / row["file"]).convert("RGB").resize((288, 288))
    found = FaceDetector().detect(crop)
    assert len(found) == 1
    left, top, right, bottom = found[0].box
    assert 0.4 < (right - left) / 288 < 0.8  # the margin: a quarter of the face on each side


def test_the_same_photos_give_the_same_split(built, src, tmp_path):
    assert main(["dataset", "faces", str(src), str(tmp_path / "again")]) == 0
    assert [(r["file"], r["split"]) for r in _csv(built / "faces.csv")] == \
           [(r["file"], r["split"]) for r in _csv(tmp_path / "again" / "faces.csv")]


def test_split_keeps_a_photos_faces_together_and_reaches_the_share():
    from functions.dataset.faces import KeptFace
    kept = [KeptFace(source=f"p{i // 2}", face=i % 2, box=(), roll=0, yaw=0, sunglasses=0, crop=None)
            for i in range(40)]
    _split(kept, {f"p{i}": f"md5-{i}" for i in range(20)}, 0.3)
    splits = {}
    for face in kept:
        splits.setdefault(face.source, set()).add(face.split)
    assert all(len(s) == 1 for s in splits.values())
    assert sum(face.split == "validation" for face in kept) == 12


def test_pose_geometry():
    assert roll_degrees((0, 0), (10, 10)) == pytest.approx(45)
    assert roll_degrees((0, 5), (10, 5)) == 0
    assert yaw_degrees(50, 50, 100) == 0
    assert yaw_degrees(75, 50, 100) == pytest.approx(30)  # eyes moved half of the half-width: sin 30°
    assert yaw_degrees(500, 50, 100) == 90


def test_nothing_to_read_is_a_usage_error(tmp_path, capsys):
    assert main(["dataset", "faces", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no photos found" in capsys.readouterr().err


def test_a_large_photo_is_searched_shrunk_and_answered_in_its_own_pixels():
    from functions.dataset.face_detect import SEARCH_SIDE, FaceDetector
    big = photo("astronaut.png").resize((3 * 512, 3 * 512), Image.Resampling.LANCZOS)
    assert big.width > SEARCH_SIDE
    faces = [face for face in FaceDetector().detect(big) if face.eyes]  # the eyeless rest is never kept
    assert len(faces) == 1
    assert faces[0].box == pytest.approx(tuple(3 * v for v in ASTRONAUT_FACE), abs=12)
    assert faces[0].eyes[0][0] < faces[0].centre[0] < faces[0].eyes[1][0]
