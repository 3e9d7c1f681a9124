"""Figures 4–6: HTTP latency and throughput under a real load generator (hey), cold
start against `import tensorflow`, and the server's peak memory under that load."""
from __future__ import annotations

import csv
import io
import json
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.cpu import children, cpu_seconds
from bench.timing import percentile
from functions.local.emulator import free_port
from functions.local.server_process import ServerProcess, server_env
from functions.routes import HEALTH_ROUTE


class Server:
    """`python main.py serve` as a subprocess, its stdout (the result log) kept in a file and
    its stderr beside it (shown if it fails to start)."""

    def __init__(self, log_path: Path, env: dict | None = None):
        log_path.unlink(missing_ok=True)  # engine_totals_ms reads this server's lines only
        self.log_path = log_path
        self.process = ServerProcess(port=free_port(), env=server_env(env), stdout=log_path,
                                     stderr=log_path.with_suffix(".stderr.log"))
        self.process.start()
        self.url, self.pid, self.started = self.process.url, self.process.pid, self.process.started

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until /health answers 200."""
        self.process.wait_ready(HEALTH_ROUTE, lambda response: response.status_code == 200, timeout,
                                interval=0.005)
        return time.perf_counter() - self.started

    def post(self, data: bytes, content_type: str = "image/jpeg") -> dict:
        request = urllib.request.Request(self.url + "/", data=data, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def cpu_seconds(self) -> float:
        """CPU seconds the server's processes (master and workers) have used so far."""
        return cpu_seconds(self.pid)

    def peak_rss_bytes(self) -> int:
        """Peak resident memory (VmHWM) of the server and its worker, the larger."""
        peaks = []
        for pid in [self.pid, *self.worker_pids()]:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        return max(peaks)

    def engine_totals_ms(self) -> list[float]:
        """timings_ms.total of every result line the server logged."""
        totals = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"app": "bucketeye"' in line:
                total = json.loads(line)["timings_ms"]["total"]
                if total is not None:
                    totals.append(total)
        return totals

    def stop(self) -> None:
        self.process.stop(timeout=10)


def tensorflow_import_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - start


def cold_start(image: bytes, workdir: Path) -> dict[str, float]:
    server = Server(workdir / "cold.log")
    try:
        ready = server.wait_ready()
        server.post(image)
        first = time.perf_counter() - server.started
    finally:
        server.stop()
    return {"ready_s": ready, "first_result_s": first}


def load(server: Server, image: Path, *, concurrency: int, requests: int, seconds: int,
         duration: bool = False) -> dict[str, float]:
    """hey sends `requests` POSTs at `concurrency` (`seconds` is each request's timeout), or,
    with duration, as many as it can for `seconds`. hey's own CPU comes back too."""
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("the load generator `hey` is missing: make bench installs it (apt-get install hey)")
    amount = ["-z", f"{seconds}s"] if duration else ["-n", str(requests)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["timeout", str(seconds + 30), hey, *amount, "-c", str(concurrency), "-m", "POST",
         "-T", "image/jpeg", "-D", str(image), "-t", str(seconds), "-o", "csv", server.url + "/?top_k=5"],
        capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    ok = [r for r in rows if r["status-code"] == "200"]
    latencies = [float(r["response-time"]) * 1000.0 for r in ok]
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    hey_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"requests": len(rows), "ok": len(ok), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "throughput": len(ok) / span,
            "hey_cpu_ms_per_request": 1000.0 * hey_cpu / max(1, len(rows))}
