"""Which accelerator the model may use (ACCELERATOR=auto|gpu|cpu), found without
importing any framework, so the choice is made before TensorFlow or JAX starts."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shared.errors import BucketeyeError

CHOICES = ("auto", "gpu", "cpu")
_PROC_GPUS = Path("/proc/driver/nvidia/gpus")


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None when there is none; "NVIDIA GPU" when the
    device is there but its name cannot be read."""
    for info in sorted(_PROC_GPUS.glob("*/information")):
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("Model:"):
                return line.split(":", 1)[1].strip()
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")):
        return None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.splitlines()[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "NVIDIA GPU"


def choose(setting: str, found: str | None) -> bool:
    """Whether to use the GPU, given ACCELERATOR and the GPU found (or None)."""
    choice = (setting or "auto").strip().lower()
    if choice not in CHOICES:
        raise BucketeyeError("model_error", f"ACCELERATOR={setting!r} must be one of {', '.join(CHOICES)}",
                             retryable=False)
    if choice == "gpu" and found is None:
        raise BucketeyeError("model_error", "ACCELERATOR=gpu but no GPU was found: refusing to serve on the CPU",
                             retryable=False)
    if choice == "cpu":
        # Hide any GPU from the frameworks, which are imported only after this.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    return choice != "cpu" and found is not None


def require_gpu_runtime(setting: str, device: str) -> None:
    """With ACCELERATOR=gpu, a model whose framework did not take the GPU is an error."""
    if (setting or "").strip().lower() == "gpu" and not any(w in device.lower() for w in ("gpu", "cuda")):
        raise BucketeyeError("model_error", f"ACCELERATOR=gpu but the model runs on {device}: its framework "
                             "found no usable GPU (driver or CUDA libraries missing?)", retryable=False)
