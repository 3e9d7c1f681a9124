"""Figure 1: inference images/s of the service's runtime path against the naive
tutorial loop (`model.predict` per image) and the fastest raw runtime loop on tensors:
the better of one interpreter using every core and one single-core interpreter per
core side by side (what the service's lanes do under load)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.timing import rate


def _interpreter(model_dir: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(model_dir / "model.tflite"), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter, interpreter.get_input_details()[0]["index"]


def raw_runtime_rate(model_dir: Path, arrays: list[np.ndarray], threads: int, seconds: float) -> float:
    """One LiteRT interpreter using `threads` cores, invoked in a tight loop on pre-decoded tensors."""
    interpreter, index = _interpreter(model_dir, threads)
    state = {"i": 0}

    def one():
        interpreter.set_tensor(index, arrays[state["i"] % len(arrays)][None])
        interpreter.invoke()
        state["i"] += 1
    return rate(one, min_calls=20, min_seconds=seconds)


def raw_parallel_rate(model_dir: Path, arrays: list[np.ndarray], copies: int, seconds: float) -> float:
    """`copies` one-core interpreters, each invoked in a tight loop by its own thread."""
    interpreters = [_interpreter(model_dir, 1) for _ in range(copies)]
    counts = [0] * copies
    stop = threading.Event()

    def loop(n: int):
        interpreter, index = interpreters[n]
        while not stop.is_set():
            interpreter.set_tensor(index, arrays[counts[n] % len(arrays)][None])
            interpreter.invoke()
            counts[n] += 1
    for n in range(copies):  # warm-up
        interpreters[n][0].set_tensor(interpreters[n][1], arrays[0][None])
        interpreters[n][0].invoke()
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(copies)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def service_rate(engine, arrays: list[np.ndarray], *, total: int, concurrency: int) -> float:
    """The service's path: concurrent callers submit pre-decoded images to the batcher."""
    engine.batcher.submit(arrays[0]).result()  # warm-up
    per_thread = total // concurrency

    def worker(offset: int):
        for i in range(per_thread):
            engine.batcher.submit(arrays[(offset + i) % len(arrays)]).result()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_thread * concurrency / (time.perf_counter() - start)


def naive_predict_rate(calls: int) -> float:
    """What a tutorial writes: the Keras model, `model.predict` per image. Run in its own
    process so TensorFlow's threads and memory do not disturb the other figures."""
    out = subprocess.run([sys.executable, "-m", "bench.inference", str(calls)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])["rate"]


def _naive_main(calls: int) -> None:
    from shared.models.efficientnet_lite import build_pretrained
    model = build_pretrained()
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    r = rate(lambda: model.predict(image[None], verbose=0), min_calls=calls, min_seconds=0)
    print(json.dumps({"rate": r}))


if __name__ == "__main__":
    _naive_main(int(sys.argv[1]))
