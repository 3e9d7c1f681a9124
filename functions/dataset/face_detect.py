"""Faces and their pose from OpenCV's Haar cascades (they ship inside the opencv wheel, so
nothing is downloaded at run time).

The frontal-face cascade finds upright faces only, so the photo is also searched turned
by a few angles; the eye cascade then gives two landmarks per face. From them:
- roll (head tilted sideways): the angle of the line through the eyes, measured in the
  original photo, so it is right whatever turn found the face;
- yaw (head turned left/right): from how far the eyes' midpoint sits from the middle
  of the face box (0 when frontal; the eyes move towards one side as the head turns);
- pitch (nodding up/down) is NOT estimated: two eye points say nothing about it. The
  frontal cascade itself only fires within roughly ±20° of pitch (and of yaw), which
  is the only bound there is.
A face whose eyes are not both found has no pose estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

SEARCH_TURNS = (0, 25, -25, 50, -50)  # degrees; the frontal cascade tolerates about ±15° of roll
MIN_FACE = 40                          # pixels (at the searched size): smaller faces make useless crops
SEARCH_SIDE = 1024                     # larger photos are searched shrunk to this: a phone photo would take seconds


@dataclass
class Face:
    box: tuple[float, float, float, float]  # left, top, right, bottom in the photo (axis-aligned)
    centre: tuple[float, float]
    size: float                              # side of the detector's square, in photo pixels
    eyes: tuple | None                       # ((x, y), (x, y)) in the photo, left of the image first
    roll: float | None                       # degrees
    yaw: float | None                        # degrees, sign: which way the eyes moved


class FaceDetector:
    def __init__(self):
        import cv2
        self._cv2 = cv2
        self._faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self._eyes = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
        if self._faces.empty() or self._eyes.empty():
            raise RuntimeError("OpenCV's Haar cascades are missing from the opencv-python-headless package")

    def detect(self, image: Image.Image) -> list[Face]:
        grey = image.convert("L")
        scale = min(1.0, SEARCH_SIDE / max(grey.size))
        if scale < 1.0:
            grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.BILINEAR)
        found: list[Face] = []
        for turn in SEARCH_TURNS:
            for face in self._detect_turned(grey, turn):
                same = next((f for f in found if _distance(f.centre, face.centre) < 0.5 * max(f.size, face.size)), None)
                if same is None:
                    found.append(face)
                elif same.eyes is None and face.eyes is not None:  # a better view of the same face
                    found[found.index(same)] = face
        return sorted((_scaled(face, 1.0 / scale) for face in found), key=lambda f: (f.box[0], f.box[1]))

    def _detect_turned(self, grey: Image.Image, turn: float) -> list[Face]:
        cv2 = self._cv2
        turned = grey.rotate(turn, resample=Image.Resampling.BILINEAR, expand=True) if turn else grey
        pixels = cv2.equalizeHist(np.asarray(turned))
        back = _inverse_rotation(grey.size, turned.size, turn)
        faces = []
        for x, y, w, h in self._faces.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5,
                                                       minSize=(MIN_FACE, MIN_FACE)):
            eyes = self._eye_pair(pixels, int(x), int(y), int(w), int(h))
            if turn and eyes is None:  # the turned searches find many false faces; a real one shows its eyes
                continue
            corners = [back(px, py) for px, py in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))]
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            face = Face(box=(min(xs), min(ys), max(xs), max(ys)), centre=back(x + w / 2, y + h / 2), size=float(w),
                        eyes=None, roll=None, yaw=None)
            if eyes is not None:
                left, right = sorted((back(*eyes[0]), back(*eyes[1])))
                face.eyes = (left, right)
                face.roll = roll_degrees(left, right)
                face.yaw = yaw_degrees((eyes[0][0] + eyes[1][0]) / 2, x + w / 2, w)
            faces.append(face)
        return faces

    def _eye_pair(self, pixels: np.ndarray, x: int, y: int, w: int, h: int):
        """Centres of the two eyes (in the searched image), or None unless exactly a pair is clear."""
        top = pixels[y:y + int(h * 0.6), x:x + w]  # eyes sit in the upper part of the face box
        side = max(8, w // 10)
        eyes = self._eyes.detectMultiScale(top, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(eyes) < 2:
            return None
        # the two largest, one on each half of the face
        eyes = sorted(eyes, key=lambda e: -e[2] * e[3])[:2]
        centres = sorted((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in eyes)
        if not (centres[0][0] < x + w / 2 < centres[1][0]):
            return None
        return centres


def roll_degrees(left: tuple[float, float], right: tuple[float, float]) -> float:
    """The eye line's angle from horizontal (image y points down: positive = clockwise)."""
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def yaw_degrees(eyes_mid_x: float, face_mid_x: float, face_width: float) -> float:
    """A head turned by θ moves the eyes' midpoint about sin θ x half the face width sideways."""
    shift = (eyes_mid_x - face_mid_x) / (face_width / 2)
    return math.degrees(math.asin(max(-1.0, min(1.0, shift))))


def _scaled(face: Face, factor: float) -> Face:
    """The face in the coordinates of the photo `factor` times larger (angles do not change)."""
    if factor == 1.0:
        return face
    def point(p):
        return (p[0] * factor, p[1] * factor)
    return Face(box=tuple(v * factor for v in face.box), centre=point(face.centre), size=face.size * factor,
                eyes=tuple(point(e) for e in face.eyes) if face.eyes else None, roll=face.roll, yaw=face.yaw)


def _distance(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _inverse_rotation(original: tuple[int, int], turned: tuple[int, int], degrees: float):
    """Maps a point of the turned (expanded) image back to the original photo."""
    if not degrees:
        return lambda px, py: (float(px), float(py))
    angle = math.radians(degrees)  # PIL turns counter-clockwise about the centre
    cos, sin = math.cos(angle), math.sin(angle)
    ox, oy = original[0] / 2, original[1] / 2
    tx, ty = turned[0] / 2, turned[1] / 2

    def back(px, py):
        dx, dy = px - tx, py - ty
        return (ox + dx * cos - dy * sin, oy + dx * sin + dy * cos)
    return back
