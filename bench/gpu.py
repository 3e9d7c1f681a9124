"""`make bench-gpu`: the HTTP load of bench.ceiling against the GPU path.

    python -m bench.gpu --model model.keras [--workers 8] [--concurrency 1,16,64] [--seconds 15]
    python -m bench.gpu --export-keras DIR     # the built-in model as a .keras file, to carry to a GPU host

Starts `python main.py serve` with ACCELERATOR=gpu (so a model that cannot use the GPU
fails instead of being measured on the CPU), waits until every worker is ready (each
compiles every batch size first), then runs `hey` at each concurrency and prints
img/s, p50/p99, the server's cores busy, the GPU's busy time (nvidia-smi sampling),
the batch sizes the workers ran and the compiles after ready (must be 0).
Without a GPU it stops at once with one line; `--rehearse` runs the same steps on the
CPU (no GPU check, ACCELERATOR=auto) to try the script before a GPU host is at hand.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from shared.models.accelerator import gpu_name  # light: the GPU check needs no framework

NO_GPU = "bench.gpu: no NVIDIA GPU found here (no /proc/driver/nvidia/gpus, no /dev/nvidia0); run it on a GPU host"
# Serving settings for the GPU path; the environment may override each.
GPU_ENV = {"ACCELERATOR": "gpu", "KERAS_BACKEND": "jax", "BATCH_SIZES": "1,8,32,64", "BATCH_MAX_SIZE": "64",
           "BATCH_MAX_DELAY_MS": "2", "BATCH_QUEUE_SIZE": "1024", "THREADS": "64",
           # JAX takes 75 % of the GPU's memory per process by default; several workers share it.
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


class GpuSampler:
    """nvidia-smi's utilization.gpu (the share of time a kernel ran) sampled every 100 ms."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        smi = shutil.which("nvidia-smi")
        self._proc = None if smi is None else subprocess.Popen(
            [smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self._proc is not None:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            value = parse_utilization(line)
            if value is not None:
                self.samples.append((time.perf_counter(), value))

    def busy_percent(self, start: float, end: float) -> float | None:
        window = [value for at, value in self.samples if start <= at <= end]
        return sum(window) / len(window) if window else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)


def parse_utilization(line: str) -> float | None:
    """The first field of one nvidia-smi CSV line ("37, 1024"), or None for anything else."""
    try:
        return float(line.split(",")[0].strip())
    except ValueError:
        return None


def worker_stats(url: str, workers: int, timeout: float) -> dict[int, dict]:
    """/health of every worker process (each answers for itself), until `workers` of them
    have answered ready or the timeout passes."""
    found: dict[int, dict] = {}
    deadline = time.perf_counter() + timeout
    while len(found) < workers and time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                body = json.loads(response.read())
                found[body["worker"]] = body
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    return found


def merge_batches(stats: dict[int, dict], key: str) -> dict[int, int]:
    total: Counter = Counter()
    for body in stats.values():
        total.update({int(size): count for size, count in body.get(key, {}).items()})
    return dict(sorted(total.items()))


def compiles_after_ready(at_ready: dict[int, dict], at_end: dict[int, dict]) -> int:
    return sum(body["compiles"] - at_ready[pid]["compiles"] for pid, body in at_end.items() if pid in at_ready)


def export_keras(folder: Path) -> Path:
    """The built-in EfficientNet-Lite0 as a .keras file with its labels and model.json."""
    from shared.models import default_model
    from shared.models.efficientnet_lite import build_pretrained
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "efficientnet_lite0.keras"
    build_pretrained().save(path)
    (folder / "efficientnet_lite0.labels.txt").write_text("\n".join(default_model.read_labels()) + "\n")
    (folder / "efficientnet_lite0.json").write_text(json.dumps(default_model.METADATA, indent=2) + "\n")
    return path


def run(model: str, workers: int, concurrencies: list[int], seconds: int, rehearse: bool, workdir: Path) -> dict:
    from bench import serving
    from bench.ceiling import jpeg_600x400
    image = jpeg_600x400(workdir)
    env = {key: os.environ.get(key, value) for key, value in GPU_ENV.items()}
    env |= {"MODEL_URI": model, "WORKERS": str(workers)}
    if rehearse:
        env["ACCELERATOR"] = "auto"
    server = serving.Server(workdir / "gpu.log", env=env)
    sampler = GpuSampler()
    out: dict = {"gpu": gpu_name(), "model": model, "workers": workers, "settings": env, "loads": {}}
    try:
        out["ready_s"] = server.wait_ready(timeout=600)
        at_ready = worker_stats(server.url, workers, timeout=120)
        out["workers_ready"] = len(at_ready)
        out["device"] = sorted({body.get("device", "?") for body in at_ready.values()})
        for concurrency in concurrencies:
            cpu_before, start = server.cpu_seconds(), time.perf_counter()
            stats = serving.load(server, image, concurrency=concurrency, requests=0, seconds=seconds, duration=True)
            end = time.perf_counter()
            out["loads"][concurrency] = stats | {"server_cores_busy": (server.cpu_seconds() - cpu_before) / (end - start),
                                                 "gpu_busy_percent": sampler.busy_percent(start, end)}
        at_end = worker_stats(server.url, workers, timeout=60)
        out["batch_sizes"] = merge_batches(at_end, "batch_sizes")
        out["images_per_batch"] = merge_batches(at_end, "images_per_batch")
        out["compiles_after_ready"] = compiles_after_ready(at_ready, at_end)
    finally:
        sampler.stop()
        server.stop()
    return out


def report(out: dict) -> str:
    lines = [f"GPU {out['gpu'] or 'none (rehearsal on the CPU)'}; model {out['model'] or 'built-in'} on "
             f"{', '.join(out['device'])}; {out['workers_ready']}/{out['workers']} workers ready after "
             f"{out['ready_s']:.1f} s"]
    for concurrency, s in out["loads"].items():
        busy = "n/a (no nvidia-smi)" if s["gpu_busy_percent"] is None else f"{s['gpu_busy_percent']:.0f} %"
        lines.append(f"c={concurrency}: {s['throughput']:.0f} img/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
                     f"server {s['server_cores_busy']:.2f} cores busy, GPU busy {busy} ({s['ok']}/{s['requests']} ok)")
    lines.append(f"batch sizes run (after padding): {out['batch_sizes']}; images per batch: {out['images_per_batch']}")
    lines.append(f"compiles after ready: {out['compiles_after_ready']} (must be 0)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu")
    parser.add_argument("--model", default="", help="MODEL_URI to serve (on the JAX host: a .keras file)")
    parser.add_argument("--workers", type=int, default=0, help="server processes (0: one per vCPU)")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=int, default=15, help="length of each load")
    parser.add_argument("--rehearse", action="store_true", help="run the same steps on the CPU (no GPU check)")
    parser.add_argument("--export-keras", metavar="DIR", help="write the built-in model as DIR/efficientnet_lite0.keras and stop")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.export_keras:
        print(export_keras(Path(args.export_keras)))
        return 0
    if not args.rehearse and gpu_name() is None:
        print(NO_GPU, file=sys.stderr)
        return 2
    workers = args.workers or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        out = run(args.model, workers, [int(c) for c in args.concurrency.split(",")], args.seconds, args.rehearse,
                  Path(tmp))
    print(report(out))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    return 0 if out["compiles_after_ready"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
