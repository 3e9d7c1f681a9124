"""`make bench`: every figure against a baseline measured in the same run.

    .venv/bin/python -m bench.run [--quick] [--out bench/results.json]

Prints one table of ratios and targets, and writes the raw numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from statistics import median

from rich.console import Console
from rich.table import Table

from bench import decode, e2e, inference, inputs, serving
from bench.timing import median_ratio

ROOT = Path(__file__).resolve().parent.parent


def _engine():
    from shared.config import Settings
    from shared.engine import Engine
    return Engine(Settings.from_env())


def figure_inference(engine, quick: bool) -> dict:
    from shared.imaging import decode_image
    from shared.preprocess import preprocess
    arrays = [preprocess(decode_image(p.read_bytes(), max_bytes=1 << 26, max_pixels=10 ** 8).image, engine.model.spec)
              for p in inputs.photos()]
    seconds, rounds = (3, 3) if quick else (10, 5)
    threads = engine.settings.cpu_threads
    one, parallel, service = [], [], []
    for _ in range(rounds):  # in turns, so a change in the machine's speed reaches all three alike
        one.append(inference.raw_runtime_rate(engine.model.path, arrays, threads, seconds / rounds))
        parallel.append(inference.raw_parallel_rate(engine.model.path, arrays, threads, seconds / rounds)
                        if threads > 1 else one[-1])
        service.append(inference.service_rate(engine, arrays, total=int(max(one[-1], parallel[-1]) * seconds / rounds),
                                              concurrency=4))
    raw = [max(a, b) for a, b in zip(one, parallel)]
    naive = inference.naive_predict_rate(10 if quick else 30)
    return {"service_img_s": median(service), "raw_runtime_img_s": median(raw),
            "raw_one_interpreter_img_s": median(one), "raw_parallel_interpreters_img_s": median(parallel),
            "naive_predict_img_s": naive, "vs_naive": median(service) / naive, "vs_raw": median_ratio(service, raw)}


def figure_decode(spec, bench_set: dict, quick: bool) -> dict:
    seconds = 2 if quick else 6
    phone = decode.rates(bench_set["phone"], spec, seconds)
    small = decode.rates(bench_set["thumbnail"], spec, seconds)
    screenshot = decode.rates(bench_set["screenshot"], spec, seconds)
    return {"phone_ours_img_s": median(phone["ours"]), "phone_full_img_s": median(phone["full"]),
            "phone_vs_full": median_ratio(phone["ours"], phone["full"]),
            "small_ours_img_s": median(small["ours"]), "small_pillow_img_s": median(small["pillow"]),
            "small_vs_pillow": median_ratio(small["ours"], small["pillow"]),
            "screenshot_ours_img_s": median(screenshot["ours"]), "screenshot_full_img_s": median(screenshot["full"])}


def figure_e2e(spec, bench_set: dict, raw_inference_img_s: float, workdir: Path, quick: bool) -> dict:
    """Uploads through the local stack against the serial bound of decode and inference alone."""
    decode_img_s = median(decode.rates(bench_set["upload"], spec, 2 if quick else 6)["ours"])
    bound = 1.0 / (1.0 / decode_img_s + 1.0 / raw_inference_img_s)
    uploads = [p.read_bytes() for p in bench_set["upload"]]
    count = 150 if quick else 600
    run = e2e.throughput([uploads[i % len(uploads)] for i in range(count)], workdir)
    return run | {"decode_img_s": decode_img_s, "inference_img_s": raw_inference_img_s, "serial_bound_img_s": bound,
                  "vs_serial_bound": run["img_s"] / bound}


def figure_serving(image: Path, workdir: Path, quick: bool) -> dict:
    out: dict = {}
    tf_import = min(serving.tensorflow_import_s() for _ in range(2))
    cold = min((serving.cold_start(image.read_bytes(), workdir) for _ in range(2)),
               key=lambda c: c["first_result_s"])
    out.update(tf_import_s=tf_import, **cold, first_result_vs_tf_import=cold["first_result_s"] / tf_import)

    server = serving.Server(workdir / "load.log")
    try:
        server.wait_ready()
        server.post(image.read_bytes())
        seconds, rounds = (10, 3) if quick else (30, 5)
        runs: dict[int, list[dict]] = {1: [], 4: [], 16: []}
        # c=1 and c=16 in turns, so a change in the machine's speed reaches both alike.
        for round_ in range(rounds):
            for concurrency in ((1, 4, 16) if round_ == 0 else (1, 16)):
                before, cpu_before = len(server.engine_totals_ms()), server.cpu_seconds()
                stats = serving.load(server, image, concurrency=concurrency,
                                     requests=(100 if quick else 400) * max(1, concurrency // 4), seconds=seconds)
                engine_ms = server.engine_totals_ms()[before:]
                cpu_ms = 1000.0 * (server.cpu_seconds() - cpu_before) / max(1, stats["ok"])
                runs[concurrency].append(stats | {"engine_p50_ms": inference_p50(engine_ms),
                                                  "server_cpu_ms_per_request": cpu_ms})
        for concurrency, stats in runs.items():
            out[f"c{concurrency}"] = median_run(stats)
        out["throughput_16_vs_1"] = median_ratio([s["throughput"] for s in runs[16]], [s["throughput"] for s in runs[1]])
        out["overhead_p50_ms"] = median(s["p50_ms"] - s["engine_p50_ms"] for s in runs[1])
        out["peak_rss_mib"] = server.peak_rss_bytes() / 2 ** 20
    finally:
        server.stop()
    return out


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run["throughput"])[(len(runs) - 1) // 2] | {"rounds": len(runs)}


def inference_p50(values: list[float]) -> float:
    from bench.timing import percentile
    return percentile(values, 50)


TARGETS = [
    # label, value path, baseline wording, target, comparison
    ("inference vs naive model.predict loop", ("inference", "vs_naive"), ">= 10x", 10.0, "ge"),
    ("inference vs raw runtime loop", ("inference", "vs_raw"), ">= 0.9x", 0.9, "ge"),
    ("12 MP JPEG decode+resize vs full decode", ("decode", "phone_vs_full"), ">= 4x", 4.0, "ge"),
    ("small image decode vs raw Pillow", ("decode", "small_vs_pillow"), ">= 0.9x", 0.9, "ge"),
    ("end to end (upload -> row) vs serial bound", ("e2e", "vs_serial_bound"), ">= 0.8x", 0.8, "ge"),
    ("HTTP throughput c16 vs c1", ("serving", "throughput_16_vs_1"), ">= 1.5x", 1.5, "ge"),
    ("HTTP overhead over engine time, p50 (ms)", ("serving", "overhead_p50_ms"), "<= 5 ms", 5.0, "le"),
    ("first result vs `import tensorflow`", ("serving", "first_result_vs_tf_import"), "<= 0.5x", 0.5, "le"),
    ("peak RSS under load (MiB)", ("serving", "peak_rss_mib"), "<= 1024", 1024.0, "le"),
]


def verdicts(results: dict) -> list[dict]:
    rows = []
    for label, (group, key), wording, target, how in TARGETS:
        value = results.get(group, {}).get(key)
        met = value is not None and (value >= target if how == "ge" else value <= target)
        rows.append({"figure": label, "value": value, "target": wording, "met": met})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="shorter runs (the whole bench in a few minutes)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args(argv)
    console = Console()
    started = time.perf_counter()
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version()}, "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench_set = inputs.bench_set(workdir / "set")
        engine = _engine()
        with console.status("inference"):
            results["inference"] = figure_inference(engine, args.quick)
        with console.status("decode"):
            results["decode"] = figure_decode(engine.model.spec, bench_set, args.quick)
        engine.close()
        with console.status("end to end through the local stack"):
            results["e2e"] = figure_e2e(engine.model.spec, bench_set, results["inference"]["raw_runtime_img_s"],
                                        workdir, args.quick)
        with console.status("serving: cold start, HTTP load, memory"):
            results["serving"] = figure_serving(bench_set["upload"][0], workdir, args.quick)
    results["verdicts"] = verdicts(results)
    results["seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(results, indent=2))

    table = Table("figure", "value", "target", "met", title="bucketeye benchmarks (ratios against same-run baselines)")
    for row in results["verdicts"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        table.add_row(row["figure"], value, row["target"], "yes" if row["met"] else "[red]NO[/red]")
    console.print(table)
    console.print(_details(results))
    console.print(f"written {args.out} in {results['seconds']:.0f} s")
    return 0


def _details(results: dict) -> str:
    inf, dec, srv, e2e_run = results["inference"], results["decode"], results["serving"], results["e2e"]
    lines = [
        f"inference img/s: service {inf['service_img_s']:.1f}, raw runtime {inf['raw_runtime_img_s']:.1f} "
        f"(one interpreter {inf['raw_one_interpreter_img_s']:.1f}, one per core "
        f"{inf['raw_parallel_interpreters_img_s']:.1f}), naive predict {inf['naive_predict_img_s']:.1f}",
        f"decode img/s: 12 MP ours {dec['phone_ours_img_s']:.1f} vs full {dec['phone_full_img_s']:.1f}; "
        f"thumbnails ours {dec['small_ours_img_s']:.0f} vs Pillow {dec['small_pillow_img_s']:.0f}; "
        f"screenshots ours {dec['screenshot_ours_img_s']:.1f} vs full {dec['screenshot_full_img_s']:.1f}",
        f"end to end: {e2e_run['rows']}/{e2e_run['images']} rows in {e2e_run['seconds']:.1f} s = "
        f"{e2e_run['img_s']:.1f} img/s; serial bound {e2e_run['serial_bound_img_s']:.1f} img/s "
        f"(decode {e2e_run['decode_img_s']:.1f}, inference {e2e_run['inference_img_s']:.1f}); CPU ms per image: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in e2e_run["cpu_ms_per_image"].items()),
        f"cold start: ready {srv['ready_s']:.2f} s, first result {srv['first_result_s']:.2f} s, "
        f"import tensorflow {srv['tf_import_s']:.2f} s",
    ]
    for c in (1, 4, 16):
        s = srv[f"c{c}"]
        lines.append(f"HTTP c={c}: {s['throughput']:.1f} req/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
                     f"engine p50 {s['engine_p50_ms']:.1f} ms, server CPU {s['server_cpu_ms_per_request']:.1f} ms "
                     f"per request ({s['ok']}/{s['requests']} ok)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
