"""Quiet model builds: TensorFlow, absl and LiteRT write their log lines from C++ straight
to file descriptor 2, where no Python logging setting reaches them. While a build runs,
descriptor 2 points at a log file instead; the build's own progress lines still reach
the real stderr, and a failed build names the file that holds the details."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Say = Callable[[str], None]


@contextmanager
def native_logs_to(path: Path) -> Iterator[Say]:
    """Within the block, descriptor 2 writes to `path`; yields say(line) for progress lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines are noise even in the file
    sys.stderr.flush()
    real_stderr = os.dup(2)
    progress = os.fdopen(os.dup(real_stderr), "w", buffering=1)
    started = time.monotonic()
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)

    def say(line: str) -> None:
        progress.write(f"bucketeye: {line} ({time.monotonic() - started:.0f} s)\n")

    try:
        yield say
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)
        os.close(real_stderr)
        progress.close()
