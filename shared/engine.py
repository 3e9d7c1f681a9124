"""The engine: ImageRef in, Result out. It knows nothing of HTTP or CloudEvents.

Each image is fetched, decoded and preprocessed on a worker thread (Pillow and the
storage client release the GIL), then queued to the batcher, so early images reach
the model while later ones are still decoding.
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from shared import postprocess
from shared.batching import Batcher
from shared.config import Settings
from shared.errors import BucketeyeError, Skip
from shared.imaging import (
    DecodedImage,
    PixelBudget,
    check_size,
    decode_image,
    default_pixel_budget,
    draft_size,
    sniff_format,
)
from shared.models import byte_input
from shared.models.loader import LoadedModel, load_model
from shared.models.spec import ENCODED
from shared.preprocess import preprocess
from shared.refs import ImageRef
from shared.results import ImageInfo, Result
from shared.storage import fetch_object


class Engine:
    def __init__(self, settings: Settings, model: LoadedModel | None = None):
        self.settings = settings
        self.model = model or load_model(settings)
        runtime = self.model.runtime
        # A batching model sees only the allowed batch sizes, each built and warmed here,
        # before the service says it is ready: no request ever waits on a compile.
        # A runtime that runs one image per call takes one image at a time: waiting for a
        # fuller batch would only add latency, and free lanes should get the next images.
        self.batch_sizes = settings.allowed_batch_sizes if runtime.batchable else (1,)
        runtime.warm_up(self.batch_sizes)
        self.batcher = Batcher(runtime.run, lanes=[copy.run for copy in runtime.single_core_copies(settings.cpu_threads)],
                               max_size=max(self.batch_sizes),
                               # Padding is for programs built per batch shape; other batches run as they come.
                               allowed_sizes=self.batch_sizes if runtime.batchable and runtime.builds_programs else (),
                               max_delay_s=settings.batch_max_delay_ms / 1000.0,
                               queue_size=settings.batch_queue_size)
        # One per core: on the CPU path, more threads preempt XNNPACK's inference threads
        # mid-layer and throughput falls (measured: bench/). On a GPU, raise DECODE_WORKERS.
        workers = settings.decode_workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bucketeye-decode")
        self._pixels = PixelBudget(settings.decode_pixel_budget or default_pixel_budget(settings.max_image_pixels))
        spec = self.model.spec
        crop = spec.crop_fraction if spec.resize_mode == "crop" else 1.0
        # A model that decodes the bytes itself needs our decode only to validate them: the smallest will do.
        self._draft = (1, 1) if spec.encoding == ENCODED else draft_size((spec.width, spec.height), crop)

    def close(self) -> None:
        self.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def classify(self, refs: list[ImageRef], top_k: int | None = None) -> list[Result]:
        """Classify many images; per-image failures become error Results, never exceptions."""
        k = top_k or self.settings.top_k
        staged = [self._pool.submit(self._prepare, ref) for ref in refs]
        return [self._finish(job.result(), k) for job in staged]

    def classify_one(self, ref: ImageRef, top_k: int | None = None) -> Result:
        return self.classify([ref], top_k)[0]

    def classify_iter(self, refs: Iterable[ImageRef], top_k: int | None = None, window: int = 32) -> Iterator[Result]:
        """Classify a long stream in order, keeping at most `window` images in flight (bounded memory)."""
        k = top_k or self.settings.top_k
        window = max(1, min(window, self.settings.batch_queue_size))
        in_flight: deque = deque()
        for ref in refs:
            in_flight.append(self._pool.submit(self._prepare, ref))
            if len(in_flight) >= window:
                yield self._finish(in_flight.popleft().result(), k)
        while in_flight:
            yield self._finish(in_flight.popleft().result(), k)

    def _prepare(self, ref: ImageRef) -> tuple[Result, Future | None, float]:
        """Fetch, decode, preprocess, queue. Returns the partial result and the model's future."""
        started = time.perf_counter()
        result = Result(ref=ref, model=self.model.info)
        try:
            data = self._fetch(ref, result)
            fetched = time.perf_counter()
            result.timings_ms["fetch"] = (fetched - started) * 1000.0
            if ref.only_images and sniff_format(data) is None:
                result.skip = Skip("not_an_image", "the bytes are not an image (no JPEG, PNG, GIF, BMP, TIFF or "
                                   "WebP signature)")
                return result, None, started
            decoded = decode_image(data, max_bytes=self.settings.max_image_bytes,
                                   max_pixels=self.settings.max_image_pixels, min_size=self._draft, budget=self._pixels)
            try:
                result.image = ImageInfo(format=decoded.format, width=decoded.width, height=decoded.height)
                array = self._model_input(decoded, data, result.ref)
            finally:
                decoded.release()  # the model's input is small: the decoded pixels are done with
            result.timings_ms["decode"] = (time.perf_counter() - fetched) * 1000.0
            return result, self.batcher.submit(array), started
        except BucketeyeError as exc:
            result.error = exc
        except MemoryError:
            result.error = BucketeyeError("too_many_pixels", "the image needs more memory than is available")
        except Exception as exc:  # an unexpected decoder failure is still one bad image
            result.error = BucketeyeError("corrupt_image", f"decoding failed: {type(exc).__name__}")
        return result, None, started

    def _model_input(self, decoded: DecodedImage, data: bytes, ref: ImageRef) -> np.ndarray:
        """Our preprocessed pixels; or, for a model that decodes images itself, the validated bytes as sent."""
        if self.model.spec.encoding == ENCODED:
            byte_input.check_decodable(decoded.format)
            return byte_input.model_input(data, ref.key)
        return preprocess(decoded.image, self.model.spec)

    def _fetch(self, ref: ImageRef, result: Result) -> bytes:
        if ref.data is not None:
            data = ref.data
        elif ref.local_path:
            data = _read_local(ref.local_path, self.settings.max_image_bytes)
        elif ref.bucket and ref.object:
            requested = ref.trigger != "storage"  # named by a caller, not an upload's own event
            if not self.settings.bucket_allowed(ref.bucket, requested=requested):
                setting = "REQUEST_BUCKETS" if requested else "ALLOWED_BUCKETS"
                raise BucketeyeError("forbidden_source", f"bucket {ref.bucket!r} is not on the allow-list ({setting})")
            obj = fetch_object(ref.bucket, ref.object, generation=ref.generation, known_size=ref.size_bytes,
                               max_bytes=self.settings.max_image_bytes, timeout=self.settings.fetch_timeout_s)
            result.content_md5 = obj.md5_hash
            # What the store says completes the ref: a URI named without a generation gets the
            # version actually read, so an overwritten object gets a new result_id.
            result.ref = replace(ref, generation=ref.generation or obj.generation,
                                 content_type=ref.content_type or obj.content_type,
                                 size_bytes=ref.size_bytes if ref.size_bytes is not None else obj.size)
            return obj.data
        else:
            raise BucketeyeError("bad_message", "the request names no image")
        result.content_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        if ref.size_bytes is None:
            result.ref = replace(ref, size_bytes=len(data))
        return data

    def _finish(self, staged: tuple[Result, Future | None, float], k: int) -> Result:
        result, future, started = staged
        if future is not None:
            try:
                row, queue_ms, inference_ms = future.result()
                result.timings_ms["queue"] = queue_ms
                result.timings_ms["inference"] = inference_ms
                self._interpret(result, row, k)
            except BucketeyeError as exc:
                result.error = exc
        result.timings_ms["total"] = (time.perf_counter() - started) * 1000.0
        return result

    def _interpret(self, result: Result, row: dict[str, np.ndarray], k: int) -> None:
        model = self.model
        byte_input.raise_row_error(row)
        if model.task == "detection":
            result.detections = postprocess.detections(row, model.labels, self.settings.score_threshold)
        else:
            result.predictions = postprocess.top_k(row[model.scores_output], model.labels, k,
                                                   self.settings.output_kind)


def _read_local(path: str, max_bytes: int) -> bytes:
    try:
        size = os.path.getsize(path)
        check_size(size, max_bytes)
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise BucketeyeError("not_found", f"{path} does not exist") from None
    except IsADirectoryError:
        raise BucketeyeError("bad_message", f"{path} is a directory") from None
    except PermissionError:
        raise BucketeyeError("forbidden_source", f"{path} cannot be read (permission denied)") from None
