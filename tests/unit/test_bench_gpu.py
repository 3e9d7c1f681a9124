"""The GPU benchmark's parts that run anywhere: the no-GPU stop, nvidia-smi parsing, and
adding up what each worker process reports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu
from shared.models.accelerator import gpu_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(gpu_name() is not None, reason="this machine has a GPU: the bench would run")
def test_without_a_gpu_it_stops_with_one_clear_line():
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--model", "model.keras"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [gpu.NO_GPU]


@pytest.mark.parametrize("line, value", [("37, 1024\n", 37.0), ("0, 12", 0.0), ("[N/A], 12", None), ("", None)])
def test_nvidia_smi_lines(line, value):
    assert gpu.parse_utilization(line) == value


def test_batch_sizes_add_up_over_workers():
    stats = {11: {"compiles": 4, "batch_sizes": {"8": 3, "64": 1}},
             12: {"compiles": 4, "batch_sizes": {"8": 2, "1": 5}},
             13: {"worker": 13}}  # a worker that reported nothing yet
    assert gpu.merge_batches(stats, "batch_sizes") == {1: 5, 8: 5, 64: 1}


def test_compiles_after_ready_counts_every_worker():
    at_ready = {11: {"compiles": 4}, 12: {"compiles": 4}}
    assert gpu.compiles_after_ready(at_ready, {11: {"compiles": 4}, 12: {"compiles": 4}}) == 0
    assert gpu.compiles_after_ready(at_ready, {11: {"compiles": 5}, 12: {"compiles": 4}}) == 1
    assert gpu.compiles_after_ready(at_ready, {11: {"compiles": 4}, 99: {"compiles": 7}}) == 0  # not seen at ready


def test_busy_percent_averages_the_samples_inside_a_load():
    sampler = gpu.GpuSampler.__new__(gpu.GpuSampler)
    sampler.samples = [(1.0, 10.0), (2.0, 50.0), (3.0, 70.0), (9.0, 100.0)]
    assert sampler.busy_percent(1.5, 3.5) == 60.0
    assert sampler.busy_percent(4.0, 5.0) is None
