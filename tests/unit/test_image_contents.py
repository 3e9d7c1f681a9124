"""The service images carry only the serving code (.dockerignore leaves the workstation tools
out): main.py's function targets import, and the CLI offers its serving commands, from
exactly the files the Dockerfiles copy."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from functions.cli import TOOL_PACKAGES
from shared.config import SETTINGS

REPO = Path(__file__).resolve().parents[2]


def _image_tree(tmp: Path) -> Path:
    """main.py, shared/ and functions/ less what .dockerignore excludes, as `COPY` leaves them."""
    excluded = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    root = tmp / "app"
    root.mkdir()
    shutil.copy(REPO / "main.py", root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("shared", "functions"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    for entry in excluded:
        if entry.startswith("functions/"):
            shutil.rmtree(root / entry)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_workstation_tools_stay_out_of_the_images(tmp_path):
    root = _image_tree(tmp_path)
    assert not [name for name in TOOL_PACKAGES if (root / Path(*name.split("."))).exists()]


def test_the_serving_code_needs_none_of_them(tmp_path):
    root = _image_tree(tmp_path)
    targets = _run(root, "-c", "import main; print(sorted(n for n in ('bucketeye', 'on_storage_event', "
                               "'on_pubsub_message', 'on_http_request') if callable(getattr(main, n))))")
    assert targets.returncode == 0, targets.stderr[-3000:]
    assert targets.stdout.split("\n")[-2] == "['bucketeye', 'on_http_request', 'on_pubsub_message', 'on_storage_event']"
    help_text = _run(root, "main.py", "--help")
    assert help_text.returncode == 0, help_text.stderr[-3000:]
    assert all(command in help_text.stdout for command in ("classify", "inspect", "model", "serve"))
    assert "backfill" not in help_text.stdout and "demo" not in help_text.stdout
