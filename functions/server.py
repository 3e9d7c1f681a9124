"""`python main.py serve`: the real functions-framework server (gunicorn) running the
combined `bucketeye` target from main.py, which dispatches all three triggers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication

MAIN = Path(__file__).resolve().parent.parent / "main.py"
DEFAULT_THREADS = "32"  # request threads; images from all of them meet in one batcher
# functions-framework's gunicorn sets limit_request_line=0 (unlimited): a 30 MB request line
# kept a worker thread parsing (quadratically) for minutes. gunicorn's own default instead.
LIMIT_REQUEST_LINE = 8190


def serve(host: str, port: int, *, dev: bool = False) -> int:
    # gunicorn settings that functions-framework reads from the environment: WORKERS
    # processes, each loading its own model and batcher (one interpreter lock caps a
    # process near a few hundred images/s: docs/benchmarks.md), THREADS requests each.
    os.environ.update(process_settings(os.environ))
    os.environ.setdefault("THREADS", DEFAULT_THREADS)
    sys.stdout.flush()
    # A fresh interpreter without the CLI's imports, replacing this process: signals reach the server directly.
    os.execv(sys.executable, [sys.executable, "-c", _LAUNCH, str(MAIN.parent), host, str(port), "1" if dev else "0"])
    return 0


_LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from functions.server import run; run(*sys.argv[2:])"


def run(host: str, port: str, dev: str) -> None:
    """What `functions-framework --target bucketeye` runs, through public APIs only: its
    create_app, then Flask's debug server, or gunicorn with functions-framework's settings
    and a bounded request line."""
    from functions_framework import create_app
    app = create_app("bucketeye", str(MAIN), "http")  # imports main.py now, before gunicorn forks its workers
    if dev == "1":
        app.run(host, int(port), debug=True)
        return
    GunicornServer(app, gunicorn_options(host, int(port), os.environ)).run()


def gunicorn_options(host: str, port: int, environ) -> dict:
    """functions-framework's gunicorn settings, read from the same variables."""
    return {"bind": f"{host}:{port}", "workers": int(environ.get("WORKERS", 1)),
            "threads": int(environ.get("THREADS", DEFAULT_THREADS)),
            "timeout": int(environ.get("CLOUD_RUN_TIMEOUT_SECONDS", 0)),
            "loglevel": environ.get("GUNICORN_LOG_LEVEL", "error"), "limit_request_line": LIMIT_REQUEST_LINE}


class GunicornServer(BaseApplication):
    """gunicorn's documented way to serve an app object with options set from code."""

    def __init__(self, app, options: dict):
        self.app, self.options = app, options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.app


def vcpus() -> int:
    """The vCPUs this process may run on (its affinity), which a container limits."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def process_settings(environ) -> dict[str, str]:
    """WORKERS resolved (0: one per vCPU), and the per-process thread counts that are
    left at 0 sharing the vCPUs among the workers instead of each taking all of them."""
    from shared.config import Settings
    settings = Settings.from_env(environ)
    cpus = vcpus()
    workers = settings.workers if settings.workers > 0 else cpus
    share = str(max(1, cpus // workers))
    return {"WORKERS": str(workers),
            "INFERENCE_THREADS": str(settings.inference_threads or share),
            "DECODE_WORKERS": str(settings.decode_workers or share)}

