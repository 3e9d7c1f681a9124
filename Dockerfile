# bucketeye — GPU image for Cloud Run (one NVIDIA L4 per instance).
#
# TensorFlow build: the PyPI wheels `tensorflow[and-cuda]==2.21.0` on python:3.11-slim.
#   * The `and-cuda` extra installs CUDA 12 user-space libraries as pip packages
#     (nvidia-cublas-cu12, nvidia-cudnn-cu12 9.x, nvidia-cufft/curand/cusolver/cusparse,
#     nvidia-cuda-nvcc-cu12 for XLA's ptxas, ...). The image needs no CUDA base image
#     and no CUDA toolkit: only the kernel driver, which Cloud Run GPU mounts into the
#     container at run time.
#   * Cloud Run's L4 hosts run a CUDA 12.x-capable NVIDIA driver. CUDA 12 minor-version
#     compatibility lets 12.x user-space libraries run on any CUDA 12 driver (>= 525), so
#     these wheels work without matching the driver's exact minor version. L4 is
#     compute capability 8.9, which TensorFlow's wheels ship kernels for.
#   * The same TensorFlow version as requirements.txt's tensorflow-cpu pin, which the
#     tests and the CPU image run: only the CUDA libraries differ.
#   * Why not an nvidia/cuda base image: it carries the same libraries, but then their
#     versions must match what TensorFlow was built against by hand, and Python comes
#     from the distribution. Here constraints-gpu.txt pins the CUDA/cuDNN versions
#     TensorFlow was tested with (CUDA 12.5, cuDNN 9.3).
#
# The model is baked in at build time (see below) for cold starts: a scaled-from-zero
# GPU instance must load the model before /health answers and requests are routed to it.
# Reading ~20 MB from the image is fast and cannot fail; building it at start would add
# seconds of TensorFlow graph building per cold start, and fetching from Cloud Storage
# would add a network dependency. MODEL_URI still selects another model at run time.
#
# Build: gcloud builds submit --config cloudbuild.yaml   (see docs/deploy.md)

FROM python:3.11-slim-bookworm

ARG TF_VERSION=2.21.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The runtime user; USER names it by id (10001), which needs no /etc/passwd lookup.
RUN groupadd --system --gid 10001 bucketeye \
 && useradd --system --uid 10001 --gid bucketeye --home-dir /home/bucketeye --create-home \
      --shell /usr/sbin/nologin bucketeye

WORKDIR /app

# Runtime dependencies with TensorFlow swapped for its CUDA build. requirements.txt pins
# tensorflow-cpu (tests and the CPU image use it); here that line is dropped and
# tensorflow[and-cuda] of the same version is installed in the same pip run, so pip
# resolves the final set once (a conflict fails the build) and never downloads the CPU
# wheel. A constraints file cannot do this: constraints can pin, not remove, a requirement.
# constraints-gpu.txt pins the CUDA libraries to the set TensorFlow was tested with (the
# `and-cuda` extra only gives ranges). tests/infra/test_image_requirements.py resolves
# this same set for the image's Python and platform.
COPY requirements.txt constraints-gpu.txt ./
RUN grep -Eq "^tensorflow-cpu==${TF_VERSION}([[:space:];#]|$)" requirements.txt \
 || { echo "requirements.txt must pin tensorflow-cpu==${TF_VERSION} (keep TF_VERSION in step)" >&2; exit 1; } \
 && grep -Ev '^[[:space:]]*tensorflow-cpu([^A-Za-z0-9_.-]|$)' requirements.txt > /tmp/requirements-gpu.txt \
 && pip install -r /tmp/requirements-gpu.txt -c constraints-gpu.txt "tensorflow[and-cuda]==${TF_VERSION}" \
 && rm /tmp/requirements-gpu.txt \
 && python -c "import tensorflow as tf; print('tensorflow', tf.__version__, 'cuda', tf.sysconfig.get_build_info().get('cuda_version'))"

# The engine, then the built-in model, built once into the image (owned by the runtime
# user: gs:// models named by MODEL_URI are downloaded into the same directory).
COPY shared/ ./shared/
ENV MODEL_CACHE_DIR=/opt/bucketeye/models
RUN mkdir -p /opt/bucketeye/models && chown -R bucketeye:bucketeye /opt/bucketeye
USER 10001:10001
RUN CUDA_VISIBLE_DEVICES="" python -m shared.models.default_model --cache-dir /opt/bucketeye/models

# The entry points last: the layers above survive edits to them. Code stays root-owned,
# so the service cannot modify itself.
USER 0
COPY main.py ./
COPY functions/ ./functions/
RUN python -m compileall -q /app
USER 10001:10001

# Production server (functions-framework's gunicorn, started by `python main.py serve`),
# set for an L4 with 8 vCPUs (infra/ sets the same from its variables):
#   WORKERS=8  one server process per vCPU, each with its own model copy (~20 MB of weights)
#              and batcher: one Python process tops out near 330 images/s whatever the
#              vCPUs, and the per-image CPU work (HTTP, decode, logging) scales with
#              processes (docs/benchmarks.md).
#   INFERENCE_THREADS=1, DECODE_WORKERS=4  per process: the GPU infers, reads wait on the network.
#   BATCH_SIZES  the shapes compiled and warmed before /health says ready; batches are
#              padded up to the next one, so no request waits on a compile.
#   ACCELERATOR=gpu  no usable GPU fails readiness (logged at ERROR) instead of serving on the CPU.
#   THREADS    request threads per process; each >= the service's concurrency (max 64), as
#              connections need not spread evenly over the processes.
#   CLOUD_RUN_TIMEOUT_SECONDS=0  no gunicorn worker timeout: Cloud Run enforces the
#              request timeout, and a long batch must not get the worker killed.
# PORT is set by Cloud Run (8080 here as the local default).
ENV PORT=8080 \
    WORKERS=8 \
    THREADS=64 \
    INFERENCE_THREADS=1 \
    DECODE_WORKERS=4 \
    BATCH_SIZES=1,8,32 \
    BATCH_MAX_SIZE=32 \
    ACCELERATOR=gpu \
    CLOUD_RUN_TIMEOUT_SECONDS=0 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    XLA_PYTHON_CLIENT_PREALLOCATE=false

EXPOSE 8080
CMD ["python", "main.py", "serve"]
