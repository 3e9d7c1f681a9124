"""A model build shows our own progress lines; TensorFlow's native log lines (written from
C++ to descriptor 2) go to the build's log file instead of the newcomer's terminal."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BUILD = """
import os, sys
from pathlib import Path
from shared.models.build_log import native_logs_to
with native_logs_to(Path(sys.argv[1])) as say:
    say("step one")
    import tensorflow as tf
    tf.zeros([2]).numpy()
    os.write(2, b"W0000 native line written from C++\\n")
    print("a Python warning", file=sys.stderr)
    say("step two")
print("after the build", file=sys.stderr)
"""


def test_native_log_lines_go_to_the_file_and_progress_lines_to_the_terminal(tmp_path):
    log = tmp_path / "build.log"
    run = subprocess.run([sys.executable, "-c", BUILD, str(log)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["bucketeye: step one", "bucketeye: step two", "after the build"]
    text = log.read_text()
    assert "W0000 native line written from C++" in text and "a Python warning" in text
