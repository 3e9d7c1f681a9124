"""Read a PyTorch state dict saved in the legacy (pre-zip) format, without torch.

Layout of such a file, each part written by pickle one after another:
magic number, protocol version, sys info, the state dict itself (tensors point
at storages through persistent ids), the list of storage keys, and then each
storage's raw bytes preceded by its element count as a little-endian int64.

Unpickling is restricted to the handful of globals a state dict needs; any other
global is refused before it is looked up, so a hostile file cannot run code.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> numpy dtype (little-endian; byte order fixed up per file).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file references something a plain state dict never needs."""


class LegacyFormatError(ValueError):
    """The file is not a well-formed legacy PyTorch checkpoint."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled once the raw bytes are read


@dataclass(frozen=True)
class _View:
    """A storage that is a slice of another one (very old checkpoints)."""

    root_key: str
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage_key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage], views: dict[str, _View]):
        super().__init__(file)
        self._storages = storages
        self._views = views

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"refusing to load global {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise LegacyFormatError(f"malformed storage reference {pid!r:.80}")
        known = self._storages.setdefault(key, _Storage(storage_type.dtype, numel))
        if known.dtype != storage_type.dtype or known.numel != numel:
            raise LegacyFormatError(f"storage {key} referenced with two different types or sizes")
        if view_metadata is None:
            return key
        view_key, offset, view_numel = view_metadata
        if offset < 0 or offset + view_numel > numel:
            raise LegacyFormatError(f"storage view {view_key} lies outside storage {key}")
        self._views[view_key] = _View(key, offset, view_numel)
        return view_key

    @staticmethod
    def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
        if not isinstance(storage, str):
            raise LegacyFormatError("tensor without a storage")
        return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _read_storages(buf: io.BytesIO, keys: list[str], storages: dict[str, _Storage], swap: bool) -> None:
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise LegacyFormatError(f"storage {key} is listed but never used")
        (numel,) = struct.unpack("<q", buf.read(8))
        if numel != storage.numel:
            raise LegacyFormatError(f"storage {key} holds {numel} elements, expected {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        raw = buf.read(nbytes)
        if len(raw) != nbytes:
            raise LegacyFormatError(f"file ends inside storage {key}")
        dtype = storage.dtype.newbyteorder(">") if swap else storage.dtype
        storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype.newbyteorder("="))


def _materialise(ref: _TensorRef, storages: dict[str, _Storage], views: dict[str, _View]) -> np.ndarray:
    key, offset = ref.storage_key, ref.offset
    if key in views:  # a view is just an extra offset into its root storage
        view = views[key]
        key, offset, limit = view.root_key, view.offset + offset, view.offset + view.numel
    else:
        limit = storages[key].numel
    data = storages[key].data
    if len(ref.shape) != len(ref.stride) or any(s < 0 for s in ref.shape + ref.stride):
        raise LegacyFormatError(f"bad shape {ref.shape} / stride {ref.stride}")
    if 0 in ref.shape:
        return np.zeros(ref.shape, dtype=data.dtype)
    # Last element this view touches must lie inside the storage: as_strided does not check.
    last = offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if offset < 0 or last >= limit:
        raise LegacyFormatError(f"tensor reaches past its storage ({last} >= {limit})")
    item = data.dtype.itemsize
    # Converted checkpoints are often non-contiguous (e.g. transposed from TF), so honour strides.
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=ref.shape, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.array(view, copy=True, order="C")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return {parameter name: array} from a legacy-format PyTorch state dict file."""
    buf = io.BytesIO(Path(path).read_bytes())
    storages: dict[str, _Storage] = {}
    views: dict[str, _View] = {}

    def load():
        return _RestrictedUnpickler(buf, storages, views).load()

    if load() != LEGACY_MAGIC:
        raise LegacyFormatError(f"{path}: not a legacy PyTorch file (zip-format files are not supported)")
    if load() != LEGACY_PROTOCOL:
        raise LegacyFormatError(f"{path}: unsupported legacy protocol version")
    sys_info = load()
    swap = not (isinstance(sys_info, dict) and sys_info.get("little_endian", True))
    state = load()
    keys = load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise LegacyFormatError(f"{path}: malformed storage key list")
    _read_storages(buf, keys, storages, swap)
    if not isinstance(state, dict):
        raise LegacyFormatError(f"{path}: top-level object is {type(state).__name__}, not a state dict")
    missing = {k for k, s in storages.items() if s.data is None}
    if missing:
        raise LegacyFormatError(f"{path}: storages {sorted(missing)[:5]} have no data")
    out: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise LegacyFormatError(f"{path}: entry {name!r:.60} is not a tensor")
        out[name] = _materialise(ref, storages, views)
    return out
