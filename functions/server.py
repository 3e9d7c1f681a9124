"""`python main.py serve`: the real functions-framework server (gunicorn) running the
combined `bucketeye` target from main.py, which dispatches all three triggers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

MAIN = Path(__file__).resolve().parent.parent / "main.py"
DEFAULT_THREADS = "32"  # request threads; images from all of them meet in one batcher
# functions-framework's gunicorn sets limit_request_line=0 (unlimited): a 30 MB request line
# kept a worker thread parsing (quadratically) for minutes. gunicorn's own default instead.
LIMIT_REQUEST_LINE = 8190
# What `python -m functions_framework --target bucketeye --signature-type http` runs, plus
# the request-line limit (its command line cannot pass gunicorn options).
_LAUNCH = """
import sys
from functions_framework import create_app
from functions_framework._http import create_server
target, source, host, port, dev, limit = sys.argv[1:]
options = {} if dev == "1" else {"limit_request_line": int(limit)}
create_server(create_app(target, source, "http"), dev == "1", **options).run(host, int(port))
"""


def serve(host: str, port: int, *, dev: bool = False) -> int:
    # gunicorn settings that functions-framework reads from the environment: WORKERS
    # processes, each loading its own model and batcher (one interpreter lock caps a
    # process near a few hundred images/s: docs/benchmarks.md), THREADS requests each.
    os.environ.update(process_settings(os.environ))
    os.environ.setdefault("THREADS", DEFAULT_THREADS)
    argv = [sys.executable, "-c", _LAUNCH, "bucketeye", str(MAIN), host, str(port), "1" if dev else "0",
            str(LIMIT_REQUEST_LINE)]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # replaces this process: signals reach the server directly
    return 0


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
