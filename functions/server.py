"""`python main.py serve`: the real functions-framework server (gunicorn) running the
combined `bucketeye` target from main.py, which dispatches all three triggers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

MAIN = Path(__file__).resolve().parent.parent / "main.py"
DEFAULT_THREADS = "32"  # request threads; images from all of them meet in one batcher


def serve(host: str, port: int, *, dev: bool = False) -> int:
    # gunicorn worker settings that functions-framework reads from the environment:
    # one process owns the model (and the GPU); threads carry concurrent requests.
    os.environ.setdefault("WORKERS", "1")
    os.environ.setdefault("THREADS", DEFAULT_THREADS)
    argv = [sys.executable, "-m", "functions_framework", "--target", "bucketeye", "--source", str(MAIN),
            "--signature-type", "http", "--host", host, "--port", str(port)]
    if dev:
        argv.append("--debug")
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # replaces this process: signals reach the server directly
    return 0
