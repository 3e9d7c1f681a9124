"""Class labels: a labels.txt (one per line, index order) or an Object Detection API
label map (.pbtxt with `item { id name display_name }`, ids from 1)."""
from __future__ import annotations

import re
from pathlib import Path

_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*:\s*(?:\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'|(-?\d+))")


class Labels:
    """Maps a class index to a name; unnamed indices read as `class_N`."""

    def __init__(self, names: dict[int, str] | None = None):
        self.names = names or {}

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        return self.names.get(index, f"class_{index}")

    @classmethod
    def from_text(cls, text: str) -> Labels:
        lines = [line.strip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return cls({i: line for i, line in enumerate(lines)})

    @classmethod
    def from_pbtxt(cls, text: str) -> Labels:
        names = {}
        for body in _ITEM.findall(text):
            fields = {}
            for key, dq, sq, num in _FIELD.findall(body):
                fields[key] = num if num else (dq or sq)
            if "id" in fields:
                names[int(fields["id"])] = fields.get("display_name") or fields.get("name") or f"class_{fields['id']}"
        return cls(names)


def find_labels(model_path: Path) -> Labels:
    """labels.txt beside (or inside) the model, else a .pbtxt label map, else none."""
    folder = model_path if model_path.is_dir() else model_path.parent
    candidates = [folder / "labels.txt"]
    if not model_path.is_dir():
        candidates.insert(0, model_path.with_suffix(".labels.txt"))
    for path in candidates:
        if path.is_file():
            return Labels.from_text(path.read_text(encoding="utf-8"))
    for path in sorted(folder.glob("*.pbtxt")):
        labels = Labels.from_pbtxt(path.read_text(encoding="utf-8"))
        if len(labels):
            return labels
    return Labels()
