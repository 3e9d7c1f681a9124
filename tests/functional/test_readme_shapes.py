"""Every curl of README's HTTP API table, run as written (bash and curl) against the real
server, with a cat photo as cat.jpg and a coffee photo as dog.png in the working folder."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from _functional_support import CAT_IDS

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section() -> str:
    return README.read_text(encoding="utf-8").split("**HTTP API.**", 1)[1]


def readme_curls() -> list[str]:
    """The commands of the section's first sh block, each after the block's JSON_POST= line."""
    block = re.search(r"```sh\n(.*?)```", readme_section(), re.S).group(1)
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    definition = next(line for line in lines if line.startswith("JSON_POST="))
    return [f"{definition}; {line}" for line in lines if line != definition]


CURLS = readme_curls()


def test_the_table_has_a_curl_for_each_shape():
    assert len(CURLS) == 8
    shapes = ('"image"', '"image_bytes"', '{"b64"', '"inputs": [', '"inputs": {', '"content"', "-F ", "--data-binary @cat")
    for shape in shapes:
        assert any(shape in curl for curl in CURLS), shape


@pytest.fixture(scope="module")
def photos(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("readme")
    (folder / "cat.jpg").write_bytes(images._jpeg(images.chelsea))
    (folder / "dog.png").write_bytes(images.coffee)
    return folder


@pytest.mark.parametrize("curl", CURLS, ids=range(len(CURLS)))
def test_readme_curl(server, photos, curl):
    address = server.url.removeprefix("http://")
    command = curl.replace("localhost:8080", address) + " -sS -w '\\n%{http_code}'"  # curl is each line's last command
    done = subprocess.run(["bash", "-c", command], cwd=photos, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", body
    answer = json.loads(body)
    rows = answer.get("predictions", answer.get("outputs"))
    assert rows and all("error" not in row for row in rows), answer
    assert rows[0]["predictions"][0]["label_id"] in CAT_IDS
    if '"inputs"' in curl:
        assert list(answer) == ["outputs"]
    if '"key": 1' in curl:
        assert rows[0]["key"] == 1
    if '"key": [7]' in curl:
        assert rows[0]["key"] == 7
    if "maxPredictions" in curl:
        assert 1 <= len(rows[0]["predictions"]) <= 3 and all(p["score"] >= 0.1 for p in rows[0]["predictions"])
    if "top_k=3" in curl:
        assert len(rows[0]["predictions"]) == 3
