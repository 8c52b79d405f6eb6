"""The safetensors file format, as the workbench reads and writes it (engine/safetensors.c).

An 8-byte little-endian header length, a JSON header mapping tensor names to {dtype, shape,
data_offsets} plus "__metadata__" (string to string), then the raw little-endian data. Only F32
is produced or accepted. The reader checks every length, offset, shape and name before use and
raises SafetensorsError naming the file, the tensor and the problem; the writer is atomic (a
temporary file beside the target, fsync'd, renamed over it, the folder fsync'd).
"""

import ctypes
import json
import mmap
import os
import struct
import sys
import tempfile

import torch

LENGTH_BYTES = 8
MAX_HEADER_BYTES = 100 * 1000 * 1000
METADATA_KEY = "__metadata__"
F32_BYTES = 4


class SafetensorsError(ValueError):
    """A file that is not a valid F32 safetensors file, with the reason."""


def _reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise SafetensorsError(f"the header gives \"{key[:120]}\" twice")
        seen[key] = value
    return seen


def _json_type(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a real number"
    return "null"


def _count(value, name, field, index):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SafetensorsError(f"tensor '{name}': {field}[{index}] is {_json_type(value)}; it "
                               "must be an integer >= 0")
    return value


def _parse_entry(name, info, data_size):
    if not isinstance(info, dict):
        raise SafetensorsError(f"tensor '{name}': its entry is {_json_type(info)}; it must be an "
                               "object with dtype, shape and data_offsets")
    for key in info:
        if key not in ("dtype", "shape", "data_offsets"):
            raise SafetensorsError(f"tensor '{name}': unknown field \"{key}\" (a tensor has "
                                   "dtype, shape and data_offsets)")
    dtype = info.get("dtype")
    if dtype is None:
        raise SafetensorsError(f"tensor '{name}': no dtype")
    if dtype != "F32":
        raise SafetensorsError(f"tensor '{name}': dtype {json.dumps(dtype)} is not supported: "
                               "the workbench reads and writes F32 only")
    shape = info.get("shape")
    if not isinstance(shape, list):
        raise SafetensorsError(f"tensor '{name}': shape is {_json_type(shape)}; it must be an "
                               "array of integers")
    shape = [_count(d, name, "shape", i) for i, d in enumerate(shape)]
    offsets = info.get("data_offsets")
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise SafetensorsError(f"tensor '{name}': data_offsets must be an array [begin, end]")
    begin, end = (_count(o, name, "data_offsets", i) for i, o in enumerate(offsets))
    if begin > end:
        raise SafetensorsError(f"tensor '{name}': data_offsets [{begin}, {end}] run backwards")
    if end > data_size:
        raise SafetensorsError(f"tensor '{name}': data_offsets [{begin}, {end}] run past the "
                               f"data section's {data_size} bytes")
    elements = 1
    for d in shape:
        elements *= d
    if end - begin != elements * F32_BYTES:
        raise SafetensorsError(f"tensor '{name}': shape has {elements} F32 elements "
                               f"({elements * F32_BYTES} bytes) but data_offsets [{begin}, {end}] "
                               f"span {end - begin} bytes")
    return begin, end, shape


def parse(buffer):
    """Checks a whole file held in buffer (a writable buffer, which the tensors then share) and
    returns (tensors, metadata): tensors a dict name -> float32 tensor in file order of their
    data, metadata a dict of strings."""
    if sys.byteorder != "little":
        raise SafetensorsError("safetensors data is little-endian; this machine is not")
    size = len(buffer)
    if size < LENGTH_BYTES:
        raise SafetensorsError(f"{size} bytes is too short for a safetensors file: the header "
                               f"length alone takes {LENGTH_BYTES}")
    (header_length,) = struct.unpack_from("<Q", buffer, 0)
    if header_length > MAX_HEADER_BYTES:
        raise SafetensorsError(f"the header length field says {header_length} bytes, beyond the "
                               f"{MAX_HEADER_BYTES} a safetensors header may have: not a "
                               "safetensors file, or a damaged one")
    if header_length > size - LENGTH_BYTES:
        raise SafetensorsError(f"the header length field says {header_length} bytes but only "
                               f"{size - LENGTH_BYTES} follow it: the file is truncated or not a "
                               "safetensors file")
    header_bytes = bytes(buffer[LENGTH_BYTES:LENGTH_BYTES + header_length])
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except UnicodeDecodeError as error:
        raise SafetensorsError(f"the header is not UTF-8 text ({error.reason} at header byte "
                               f"{error.start})") from None
    except json.JSONDecodeError as error:
        raise SafetensorsError(f"the header is not valid JSON: {error.msg} (header byte "
                               f"{error.pos})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"the header is {_json_type(header)}; it must be a JSON object")
    data_offset = LENGTH_BYTES + header_length
    data_size = size - data_offset

    metadata = {}
    raw_metadata = header.get(METADATA_KEY, {})
    if not isinstance(raw_metadata, dict):
        raise SafetensorsError(f"\"{METADATA_KEY}\" is {_json_type(raw_metadata)}; it must be an "
                               "object of strings")
    for key, value in raw_metadata.items():
        if not isinstance(value, str):
            raise SafetensorsError(f"metadata \"{key[:120]}\" is {_json_type(value)}; metadata "
                                   "values must be strings")
        metadata[key] = value

    entries = []
    for order, (name, info) in enumerate(header.items()):
        if name == METADATA_KEY:
            continue
        begin, end, shape = _parse_entry(name, info, data_size)
        entries.append((begin, end, order, name, shape))
    entries.sort()
    covered = 0
    previous = None
    for begin, end, _, name, _ in entries:
        if begin < covered:
            raise SafetensorsError(f"tensor '{name}': data_offsets [{begin}, {end}] overlap those "
                                   f"of tensor '{previous}'")
        if begin > covered:
            raise SafetensorsError(f"bytes {covered} to {begin} of the data section belong to no "
                                   f"tensor (before '{name}'); safetensors allows no holes")
        covered = end
        previous = name
    if covered != data_size:
        raise SafetensorsError(f"the data section has {data_size} bytes but the tensors cover "
                               f"only the first {covered}; safetensors allows no trailing bytes")

    tensors = {}
    for begin, end, _, name, shape in entries:
        if end > begin:
            flat = torch.frombuffer(buffer, dtype=torch.float32, count=(end - begin) // F32_BYTES,
                                    offset=data_offset + begin)
        else:
            flat = torch.zeros(0, dtype=torch.float32)
        tensors[name] = flat.view(shape)
    return tensors, metadata


def read(path):
    """(tensors, metadata) of the file at path; SafetensorsError names the file on bad input.
    The tensors share a private mapping of the file: a large checkpoint is paged in as it is
    copied out, never held twice."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            buffer = (mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) if size
                      else bytearray())
    except OSError as error:
        raise SafetensorsError(f"cannot read {path}: {error.strerror}") from None
    try:
        return parse(buffer)
    except SafetensorsError as error:
        raise SafetensorsError(f"{path}: {error}") from None


def _header(tensors, metadata):
    root = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SafetensorsError(f"metadata {key!r}: keys and values must be strings")
        root[METADATA_KEY] = dict(metadata)
    offset = 0
    for name, tensor in tensors:
        if name in root:
            raise SafetensorsError(f"tensor '{name}' is given twice")
        nbytes = tensor.numel() * F32_BYTES
        root[name] = {"dtype": "F32", "shape": list(tensor.shape),
                      "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(root, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    padding = (LENGTH_BYTES - len(text) % LENGTH_BYTES) % LENGTH_BYTES
    return text + b" " * padding


def _new_file_mode(path):
    try:
        st = os.stat(path)
        if (st.st_mode & 0o170000) == 0o100000:
            return st.st_mode & 0o7777
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write(path, tensors, metadata=None):
    """Writes tensors (a sequence of (name, tensor) pairs, in file order) and metadata (a dict of
    strings) to path atomically. On any failure path is left as it was and the temporary file
    removed; the OSError names the path."""
    if sys.byteorder != "little":
        raise SafetensorsError("safetensors data is little-endian; this machine is not")
    tensors = [(name, t.detach().to(device="cpu", dtype=torch.float32).contiguous())
               for name, t in tensors]
    header = _header(tensors, metadata)
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    mode = _new_file_mode(path)
    fd, temp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(struct.pack("<Q", len(header)))
            file.write(header)
            for _, tensor in tensors:
                nbytes = tensor.numel() * F32_BYTES
                if nbytes:
                    raw = (ctypes.c_char * nbytes).from_address(tensor.data_ptr())
                    file.write(memoryview(raw).cast("B"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    except OSError as error:
        if error.errno != 22:  # EINVAL: a filesystem that cannot sync folders
            raise
    finally:
        os.close(directory)
