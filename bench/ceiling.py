"""The serving ceiling: `python main.py serve` with the null model (MODEL_URI=null:, a
runtime that costs nothing per batch), so what is measured is everything around the
model on a GPU instance: HTTP, parsing, fetch, decode, preprocessing, result logging.

    .venv/bin/python -m bench.ceiling [--workers 1,2] [--concurrency 16] [--seconds 8] [--rounds 3]

Servers with each worker count run side by side (an idle one costs nothing) and take
the same load from `hey` in alternating rounds; each figure is the median round, and
the scaling is the median of the per-round ratios. hey runs on the same cores, as a
load generator must here: its CPU is reported too. Then CPU-ms per image by stage,
measured in this process one stage at a time, against the server's CPU per image.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from statistics import median

from bench import inputs, serving
from bench.cpu import cpu_seconds

NULL_ENV = {"MODEL_URI": "null:", "ACCELERATOR": "cpu"}


def jpeg_600x400(folder: Path) -> Path:
    """The issue's request: a 600x400 photo JPEG (a real photo, resized)."""
    from PIL import Image
    path = folder / "photo-600x400.jpg"
    if not path.exists():
        Image.open(inputs.photos()[1]).convert("RGB").resize((600, 400)).save(path, "JPEG", quality=90)
    return path


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _load_round(server: serving.Server, image: Path, concurrency: int, seconds: int) -> dict:
    workers = server.worker_pids()
    worker_before = [cpu_seconds(pid, tree=False) for pid in workers]
    cpu_before, machine_before = server.cpu_seconds(), machine_busy_seconds()
    started = time.perf_counter()
    stats = serving.load(server, image, concurrency=concurrency, requests=0, seconds=seconds, duration=True)
    wall = time.perf_counter() - started
    server_cpu = server.cpu_seconds() - cpu_before
    hey_cpu = stats["hey_cpu_ms_per_request"] * stats["requests"] / 1000.0
    others = machine_busy_seconds() - machine_before - server_cpu - hey_cpu
    return stats | {"server_cpu_ms_per_image": 1000.0 * server_cpu / max(1, stats["ok"]),
                    "server_cores_busy": server_cpu / wall, "hey_cpu_ms_per_image": stats["hey_cpu_ms_per_request"],
                    "worker_cores_busy": [round((cpu_seconds(pid, tree=False) - before) / wall, 2)
                                          for pid, before in zip(workers, worker_before)],
                    "other_processes_cores_busy": max(0.0, others / wall)}


def scaling(workdir: Path, image: Path, workers: list[int], concurrency: int, seconds: int, rounds: int,
            env: dict | None = None) -> dict:
    env = NULL_ENV if env is None else env
    servers = {n: serving.Server(workdir / f"ceiling-{n}.log", env={**env, "WORKERS": str(n)}) for n in workers}
    try:
        for server in servers.values():
            server.wait_ready()
            server.post(image.read_bytes())
        runs: dict[int, list[dict]] = {n: [] for n in workers}
        for round_ in range(rounds):
            order = workers if round_ % 2 == 0 else workers[::-1]
            for n in order:
                runs[n].append(_load_round(servers[n], image, concurrency, seconds))
    finally:
        for server in servers.values():
            server.stop()
    out = {f"workers_{n}": _median_run(runs[n]) for n in workers}
    base = workers[0]
    for n in workers[1:]:
        out[f"scaling_{n}_vs_{base}"] = median(a["throughput"] / b["throughput"] for a, b in zip(runs[n], runs[base]))
    return out


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda run: run["throughput"])[(len(runs) - 1) // 2] | {"rounds": len(runs)}


def _cpu_ms(fn, count: int) -> float:
    """CPU-ms per call of fn on this thread (thread_time: other threads' work excluded)."""
    fn()
    start = time.thread_time()
    for _ in range(count):
        fn()
    return 1000.0 * (time.thread_time() - start) / count


def stages(image: Path, count: int) -> dict[str, float]:
    """CPU-ms per image of each stage of one HTTP request, run alone in this process with the
    code the server runs, on one thread."""
    os.environ.update(NULL_ENV)
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from functions import delivery, http_trigger
    from shared import postprocess
    from shared.config import Settings
    from shared.imaging import decode_image, draft_size
    from shared.models.loader import load_model
    from shared.preprocess import preprocess
    from shared.result_log import _ResultHandler, log_result
    from shared.results import Result

    data = image.read_bytes()
    settings = Settings.from_env()
    model = load_model(settings)
    spec = model.spec
    draft = draft_size((spec.width, spec.height), spec.crop_fraction if spec.resize_mode == "crop" else 1.0)

    def parse():
        request = Request(EnvironBuilder(method="POST", path="/", query_string="top_k=5", data=data,
                                         content_type="image/jpeg").get_environ())
        return http_trigger.parse(delivery.from_http_request(request), max_instances=settings.max_instances)

    ref = parse().refs[0]
    decoded = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                           min_size=draft)
    array = preprocess(decoded.image, spec)
    batch = array[None]
    logger = logging.getLogger("bucketeye.bench.ceiling")
    logger.handlers, logger.propagate = [_ResultHandler(stream=io.StringIO())], False
    logger.setLevel(logging.INFO)
    result = Result(ref=ref, model=model.info)

    def fetch():  # inline bytes: the digest that identifies them
        import base64
        import hashlib
        return base64.b64encode(hashlib.md5(data).digest())

    def model_and_top_k():
        row = model.runtime.run(batch)[model.scores_output][0]
        result.predictions = postprocess.top_k(row, model.labels, 5, settings.output_kind)

    def log():
        logger.handlers[0].stream = io.StringIO()
        log_result(result, logger=logger)

    return {
        "parse (HTTP body to image refs)": _cpu_ms(parse, count),
        "fetch (inline bytes: digest)": _cpu_ms(fetch, count),
        "decode (JPEG, draft-size)": _cpu_ms(lambda: decode_image(data, max_bytes=settings.max_image_bytes,
                                                                  max_pixels=settings.max_image_pixels,
                                                                  min_size=draft), count),
        "preprocess (crop, resize, array)": _cpu_ms(lambda: preprocess(decoded.image, spec), count),
        "null model + top-k": _cpu_ms(model_and_top_k, count),
        "result log line": _cpu_ms(log, count),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--workers", default="1,2", help="server process counts to compare, first is the baseline")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8, help="length of one load round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=NULL_ENV["MODEL_URI"],
                        help="MODEL_URI of the servers (default: the null model; '' is the built-in model)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    workers = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        image = jpeg_600x400(Path(tmp))
        results = {"machine": {"cpus": os.cpu_count()}, "concurrency": args.concurrency,
                   "model": "null model" if args.model == NULL_ENV["MODEL_URI"] else (args.model or "built-in model"),
                   "scaling": scaling(Path(tmp), image, workers, args.concurrency, args.seconds, args.rounds,
                                      env={**NULL_ENV, "MODEL_URI": args.model})}
        if args.model == NULL_ENV["MODEL_URI"]:
            results["stages_cpu_ms"] = stages(image, 300)
    print(report(results, workers))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict, workers: list[int]) -> str:
    scale, lines = results["scaling"], []
    for n in workers:
        run = scale[f"workers_{n}"]
        lines.append(f"{results['model']}, {n} worker process(es), c={results['concurrency']}: {run['throughput']:.0f} img/s, "
                     f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, server {run['server_cpu_ms_per_image']:.2f} "
                     f"CPU-ms/img ({run['server_cores_busy']:.2f} cores busy), hey {run['hey_cpu_ms_per_image']:.2f} "
                     f"CPU-ms/img, per worker {run['worker_cores_busy']} cores, other processes on the machine "
                     f"{run['other_processes_cores_busy']:.2f} cores ({run['ok']}/{run['requests']} ok)")
    for n in workers[1:]:
        lines.append(f"scaling {n} vs {workers[0]} processes: {scale[f'scaling_{n}_vs_{workers[0]}']:.2f}x "
                     f"(median of per-round ratios; target for 2 vs 1: >= 1.6x)")
    staged = results.get("stages_cpu_ms")
    if not staged:
        return "\n".join(lines)
    total = scale[f"workers_{workers[0]}"]["server_cpu_ms_per_image"]
    lines.append(f"CPU-ms per image by stage (one thread, in-process), against {total:.2f} in the 1-process server:")
    for name, ms in staged.items():
        lines.append(f"  {name:<36} {ms:6.2f}")
    lines.append(f"  {'HTTP serving and hand-offs (the rest)':<36} {total - sum(staged.values()):6.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
