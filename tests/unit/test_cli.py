"""`python main.py classify|inspect` as a subprocess, with a tiny TFLite model (no TF import)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _unit_support import REPO, check_record_types, encode, solid, subprocess_env

RED, GREEN, BLUE = (250, 0, 0), (0, 250, 0), (0, 0, 250)


def run(*args, timeout=120, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(COLUMNS="80", **env))


def records(out: subprocess.CompletedProcess) -> list[dict]:
    lines = out.stdout.splitlines()
    assert lines, out.stderr
    return [json.loads(line) for line in lines]  # every line is one valid JSON record


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """red.png, green.jpg, sub/blue.webp, sub/deeper/red2.PNG, notes.txt, broken.jpg."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "red.png").write_bytes(encode(solid(RED), "PNG"))
    (root / "green.jpg").write_bytes(encode(solid(GREEN), "JPEG", quality=95))
    (root / "sub" / "blue.webp").write_bytes(encode(solid(BLUE), "WEBP", lossless=True))
    (root / "sub" / "deeper" / "red2.PNG").write_bytes(encode(solid(RED), "PNG"))
    (root / "notes.txt").write_text("not an image, and not named like one")
    (root / "broken.jpg").write_bytes(encode(solid(RED), "JPEG")[:100])
    return root


def test_json_records_match_the_contract(photos, tflite_model):
    out = run("classify", photos / "red.png", photos / "green.jpg", "--json", "--model", tflite_model)
    assert out.returncode == 0, out.stderr
    red, green = records(out)
    for record, path, label in ((red, photos / "red.png", "red"), (green, photos / "green.jpg", "green")):
        check_record_types(record)
        assert record["app"] == "bucketeye" and record["schema_version"] == 1
        assert re.fullmatch(r"[0-9a-f]{32}", record["result_id"])
        assert record["status"] == "ok" and record["error"] is None
        assert record["source"]["trigger"] == "cli"
        assert record["source"]["uri"] == str(path) and record["source"]["object"] == path.name
        assert record["model"]["name"] == "probe" and record["model"]["id"].startswith("probe@")
        assert record["top_label"] == label == record["predictions"][0]["label"]
        assert record["top_score"] == record["predictions"][0]["score"] > 0.9
        assert len(record["predictions"]) == 3
        assert set(record["timings_ms"]) >= {"decode", "inference", "total"}
    assert red["image"] == {"format": "PNG", "width": 32, "height": 24}
    assert green["image"]["format"] == "JPEG"
    assert red["result_id"] != green["result_id"]
    # the same files again: the same ids
    again = records(run("classify", photos / "red.png", photos / "green.jpg", "--json", "--model", tflite_model))
    assert [r["result_id"] for r in again] == [red["result_id"], green["result_id"]]


def test_bad_files_never_stop_the_others(photos, tflite_model):
    paths = [photos / "red.png", photos / "broken.jpg", photos / "missing.png", photos / "notes.txt",
             photos / "green.jpg"]
    out = run("classify", *paths, "--json", "--model", tflite_model)
    assert out.returncode == 1, out.stderr
    got = records(out)
    assert [r["source"]["uri"] for r in got] == [str(p) for p in paths]  # all printed, in order
    assert [r["error"]["code"] if r["error"] else r["top_label"] for r in got] == [
        "red", "corrupt_image", "not_found", "unsupported_format", "green"]
    for record in got:
        check_record_types(record)
    assert [r["status"] for r in got] == ["ok", "error", "error", "error", "ok"]


def test_a_directory_is_walked_recursively(photos, tflite_model):
    out = run("classify", photos, "--json", "--model", tflite_model)
    assert out.returncode == 1  # broken.jpg is in there
    got = {Path(r["source"]["uri"]).relative_to(photos).as_posix(): r for r in records(out)}
    assert set(got) == {"red.png", "green.jpg", "broken.jpg", "sub/blue.webp", "sub/deeper/red2.PNG"}  # no .txt
    assert got["sub/blue.webp"]["top_label"] == "blue" and got["sub/deeper/red2.PNG"]["top_label"] == "red"


def test_a_glob_expands(photos, tflite_model):
    out = run("classify", str(photos / "*.png"), str(photos / "**" / "*.webp"), "--json", "--model", tflite_model)
    assert out.returncode == 0, out.stderr
    assert [Path(r["source"]["uri"]).name for r in records(out)] == ["red.png", "blue.webp"]


def test_top_k_flag(photos, tflite_model):
    (record,) = records(run("classify", photos / "red.png", "--json", "--top-k", "2", "--model", tflite_model))
    assert [p["label"] for p in record["predictions"]] == ["red", "green"]
    (record,) = records(run("classify", photos / "red.png", "--json", "--model", tflite_model, TOP_K="1"))
    assert len(record["predictions"]) == 1


def test_readable_table(photos, tflite_model):
    out = run("classify", photos / "red.png", photos / "sub" / "blue.webp", photos / "broken.jpg",
              "--model", tflite_model)
    assert out.returncode == 1
    assert "top label" in out.stdout
    assert "red" in out.stdout and "blue" in out.stdout and "corrupt_image" in out.stdout
    assert re.search(r"0\.9\d\d", out.stdout)  # the top score
    # every file can be told apart, however narrow the output: the file column wraps, never cut short
    cells = "".join(line.split("│")[1].strip() for line in out.stdout.splitlines() if line.startswith("│"))
    for path in (photos / "red.png", photos / "sub" / "blue.webp", photos / "broken.jpg"):
        assert str(path) in cells, out.stdout


def test_model_from_the_environment(photos, tflite_model):
    out = run("classify", photos / "red.png", "--json", MODEL_URI=str(tflite_model))
    assert out.returncode == 0, out.stderr
    assert records(out)[0]["model"]["name"] == "probe"


@pytest.mark.parametrize("args, message", [
    ((), "the following arguments are required"),
    (("--top-k", "0", "x.png"), "--top-k"),
    (("--top-k", "-3", "x.png"), "--top-k"),
    (("--top-k", "two", "x.png"), "--top-k"),
])
def test_usage_errors_exit_2(args, message):
    out = run("classify", *args)
    assert out.returncode == 2
    assert message in out.stderr and out.stdout == ""


def test_no_command_exits_2():
    assert run().returncode == 2


def test_a_model_that_does_not_exist_exits_2(photos, tmp_path):
    out = run("classify", photos / "red.png", "--model", tmp_path / "nope.tflite")
    assert out.returncode == 2 and out.stdout == ""
    assert "not_found" in out.stderr and "nope.tflite" in out.stderr


def test_an_onnx_model_exits_2_saying_onnxruntime_is_needed(photos, tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"\x08\x07")
    out = run("classify", photos / "red.png", "--model", tmp_path / "net.onnx")
    assert out.returncode == 2 and "model_error" in out.stderr and "onnxruntime" in out.stderr


def test_a_bad_override_exits_2(photos, tflite_model):
    out = run("classify", photos / "red.png", "--model", tflite_model, RESIZE_MODE="zoom")
    assert out.returncode == 2 and "zoom" in out.stderr


def test_nothing_to_classify_exits_2(tmp_path, tflite_model):
    (tmp_path / "readme.txt").write_text("no images here")
    for target in (tmp_path, tmp_path / "*.jpg"):
        out = run("classify", target, "--model", tflite_model)
        assert out.returncode == 2 and "no image files" in out.stderr


def test_inspect_prints_inputs_outputs_and_spec(tflite_model):
    out = run("inspect", tflite_model)
    assert out.returncode == 0, out.stderr
    described = json.loads(out.stdout)
    assert described["runtime"] == "tflite" and described["task"] == "classification"
    assert described["inputs"] == [{"name": "images", "shape": [None, 8, 8, 3], "dtype": "float32"}]
    assert described["outputs"] == [{"name": "logits", "shape": [None, 3], "dtype": "float32"}]
    assert described["input_spec"] == {"height": 8, "width": 8, "channels": 3, "dtype": "float32",
                                       "range": [0.0, 1.0], "color_space": "RGB", "resize_mode": "stretch",
                                       "crop_fraction": 1.0, "layout": "NHWC"}
    assert described["labels"] == 3 and described["model"]["name"] == "probe"


def test_inspect_shows_overrides(uint8_tflite_model):
    out = run("inspect", uint8_tflite_model, RESIZE_MODE="pad", COLOR_SPACE="yuv")
    spec = json.loads(out.stdout)["input_spec"]
    assert (spec["dtype"], spec["range"]) == ("uint8", [0.0, 255.0])
    assert (spec["resize_mode"], spec["color_space"]) == ("pad", "YUV")


def test_inspect_a_missing_model_exits_2(tmp_path):
    out = run("inspect", tmp_path / "missing.keras")
    assert out.returncode == 2 and "not_found" in out.stderr
