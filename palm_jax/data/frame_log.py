"""The project's frame dataset: uint8 frames with integer (or small vector) fields per frame.

Written by the PALM experience log (`config.experience.log`, WORKDIR/experience/) and by
Atari frame collection; read by passive PALM, coverage and GAN training. On disk:

    DIR/index.json                     {"version", "frame_shape", "dtype", "fields",
                                        "shards": {"<index>": <records>}}
    DIR/shard-<index:06d>.array_record one record per frame, in write order
    DIR/shard-<index:06d>.fields.npz   the same records' scalar fields alone (no frames, no
                                       vectors such as actions), so a sampler indexes a
                                       log of 150 GB of frames by reading ~2 GB
                                       (`FrameLog.read_fields`)

ArrayRecord (github.com/google/array_record) is a random-access container of records
with a footer index; Grain (github.com/google/grain) reads it through
`grain.sources.ArrayRecordDataSource`, in parallel processes and with global shuffling.
Shards are written with `group_size:1` (each record its own chunk: O(1) random access,
what Grain's source checks for) and uncompressed (on noise frames zstd/brotli saved
nothing and cost a third of the write speed; real generator frames were not measured:
`python -m palm_jax.bench framelog` measures the options).

A record is one frame and its fields as one fixed-layout byte string,

    frame bytes (prod(frame_shape) x dtype) | field_0 bytes | field_1 bytes | ...

each field `(name, dtype, shape)` (a bare name means an int64 scalar), little-endian,
decoded with `np.frombuffer` at fixed offsets (no pickling, no schema library). One frame
per record rather than one record per batch of frames: a sampler (Grain's shuffle, passive
PALM's pair index) addresses single frames, and with batched records every random read
would decode a whole batch to use one frame; the write cost of per-frame records is
measured in BENCHMARKS.md ("frame log").

Writes are atomic and exactly-once friendly: a shard is written to `*.tmp` and renamed,
then `index.json` is rewritten (also tmp + rename), both by ONE background thread
(`submit` returns at once; `wait` blocks until everything submitted is on disk; an error
in the thread is re-raised by the next `submit`/`wait`/`close`). A run that resumes from a
checkpoint calls `truncate(after_shard)` to drop shards written after it (and any `*.tmp`
of a killed write), so the log holds every step exactly once.
"""
from __future__ import annotations

import json
import math
import os
import threading
from concurrent import futures
from typing import Any, Iterable, Sequence

import numpy as np

from palm_jax.runtime import files
from palm_jax.runtime.errors import UserError, require

INDEX = "index.json"
# What one record costs beyond its payload in an uncompressed group_size:1 ArrayRecord
# file (chunk header + footer entry): 72 B for 3,072-byte records and 173 B for 3,104-byte
# ones (measured, `python -m palm_jax.bench framelog`; chunks are aligned); rounded up. And
# the free-space margin the disk check keeps.
RECORD_OVERHEAD_BYTES = 192
SHARD_OVERHEAD_BYTES = 128 << 10  # a file is written in 64 KiB blocks: a small shard is 128 KiB
SPACE_MARGIN = 1.05
WRITER_OPTIONS = "group_size:1,uncompressed"


def shard_name(index: int) -> str:
  return f"shard-{index:06d}.array_record"


def fields_name(index: int) -> str:
  return f"shard-{index:06d}.fields.npz"


def _field_specs(fields: Iterable[Any]) -> list[dict]:
  """`("t", ("action", "float32", (6,)))` → `[{"name","dtype","shape"}, ...]`."""
  specs = []
  for f in fields:
    if isinstance(f, dict):
      name, dtype, shape = f["name"], f["dtype"], f["shape"]
    elif isinstance(f, str):
      name, dtype, shape = f, "int64", ()
    else:
      name, dtype, shape = f
    require(name != "frame" and name not in [s["name"] for s in specs],
            f"frame log field {name!r} is repeated or reserved; give each field one "
            "distinct name other than 'frame'.")
    specs.append({"name": str(name), "dtype": np.dtype(dtype).str,
                  "shape": [int(d) for d in shape]})
  return specs


def record_bytes(frame_shape: Sequence[int], dtype="uint8", fields: Iterable[Any] = ()) -> int:
  """Payload bytes of one record (frame + fields) and its scalar fields' copy in the
  shard's `.fields.npz`."""
  total = math.prod(frame_shape) * np.dtype(dtype).itemsize
  for s in _field_specs(fields):
    width = math.prod(s["shape"]) * np.dtype(s["dtype"]).itemsize
    total += width * (2 if not s["shape"] else 1)
  return total


def expected_bytes(num_frames: int, frame_shape: Sequence[int], dtype="uint8",
                   fields: Iterable[Any] = (), num_shards: int = 1) -> int:
  """Bytes a log of `num_frames` records in `num_shards` files takes on disk (an upper
  bound: payload + per-record and per-file overhead).

  50M CIFAR frames (32x32x3 uint8): 153.6 GB of pixels, 163 GB with the overhead, 218 GB
  with the experience log's fields (its 512-d float16 actions are 51 GB).
  """
  return (int(num_frames) * (record_bytes(frame_shape, dtype, fields) + RECORD_OVERHEAD_BYTES)
          + int(num_shards) * SHARD_OVERHEAD_BYTES)


def format_bytes(n: float) -> str:
  """`1.23 GB` / `4.56 MB` (decimal units, as disks are sold)."""
  return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.2f} MB"


def check_disk(directory: str, num_frames: int, frame_shape: Sequence[int], dtype="uint8",
               fields: Iterable[Any] = (), num_shards: int = 1,
               what: str = "the frame log",
               smaller: str = "subsample frames (config.experience.every)") -> int:
  """UserError unless `directory`'s disk can hold the log; returns the expected bytes.

  `smaller`: how the caller's user asks for fewer frames (named in the refusal). Call it
  before compiling anything (the experience log calls it at start).
  """
  need = expected_bytes(num_frames, frame_shape, dtype, fields, num_shards)
  free = files.free_bytes(directory)
  if free is not None and free < need * SPACE_MARGIN:
    raise UserError(f"{what} needs about {format_bytes(need)} for {num_frames:,} frames in "
                    f"{directory} but only {format_bytes(free)} is free; {smaller} or give a "
                    "--workdir on a larger disk.")
  return need


class _Layout:
  """Encodes/decodes the fixed-layout record of one frame and its fields."""

  def __init__(self, frame_shape, dtype, fields: list[dict]):
    self.frame_shape = tuple(int(d) for d in frame_shape)
    self.dtype = np.dtype(dtype)
    self.fields = fields
    self.parts = [("frame", self.dtype, self.frame_shape)] + [
        (f["name"], np.dtype(f["dtype"]).newbyteorder("<"), tuple(f["shape"])) for f in fields]
    self.offsets, off = [], 0
    for _, dt, shape in self.parts:
      self.offsets.append(off)
      off += math.prod(shape) * dt.itemsize
    self.size = off

  def encode(self, frames: np.ndarray, fields: dict) -> list[bytes]:
    n = frames.shape[0]
    require(tuple(frames.shape[1:]) == self.frame_shape,
            f"frames of shape {tuple(frames.shape)} do not match the log's frame shape "
            f"{self.frame_shape}; write [N, *frame_shape] arrays.")
    require(set(fields) == {f["name"] for f in self.fields},
            f"frame log fields {sorted(fields)} differ from the log's "
            f"{sorted(f['name'] for f in self.fields)}; pass exactly those.")
    # One [N, record] byte matrix, then a bytes object per row: the columns are laid side
    # by side with a structured view, so encoding costs one copy of the data.
    rows = np.empty((n, self.size), np.uint8)
    for (name, dt, shape), off in zip(self.parts, self.offsets):
      value = frames if name == "frame" else np.asarray(fields[name])
      require(value.shape == (n, *shape), f"frame log field {name!r} has shape "
              f"{value.shape}; expected {(n, *shape)} (one value per frame).")
      width = math.prod(shape) * dt.itemsize
      rows[:, off:off + width] = np.ascontiguousarray(value, dt).reshape(n, -1).view(np.uint8)
    return [r.tobytes() for r in rows]

  def decode(self, record: bytes) -> dict:
    out = {}
    for (name, dt, shape), off in zip(self.parts, self.offsets):
      out[name] = np.frombuffer(record, dt, count=math.prod(shape), offset=off).reshape(shape)
    return out

  def decode_many(self, records: Sequence[bytes]) -> dict:
    """Records → `{"frame": [n, *frame_shape], field: [n, *shape]}` stacked arrays."""
    buf = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), self.size)
    out = {}
    for (name, dt, shape), off in zip(self.parts, self.offsets):
      width = math.prod(shape) * dt.itemsize
      col = np.ascontiguousarray(buf[:, off:off + width]).view(dt)
      out[name] = col.reshape(len(records), *shape)
    return out


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def _read_index(directory: str) -> dict | None:
  path = os.path.join(directory, INDEX)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class FrameLogWriter:
  """Writes shards of a frame log (see the module doc).

  `fields`: names (int64 scalars) or `(name, dtype, shape)` triples, e.g.
  `("env", "episode", "t", "label", ("action", "float32", (16,)))`. Opening a directory
  that already holds a log checks that shape and fields match and keeps its shards.
  At most `max_pending` submitted shards wait in memory; `submit` blocks beyond that
  (back-pressure instead of unbounded memory when the disk is slower than the device).
  """

  def __init__(self, directory: str, *, frame_shape: Sequence[int], dtype="uint8",
               fields: Iterable[Any] = (), max_pending: int = 2):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self._layout = _Layout(frame_shape, dtype, _field_specs(fields))
    header = {"version": 1, "frame_shape": list(self._layout.frame_shape),
              "dtype": self._layout.dtype.str, "fields": self._layout.fields}
    index = _read_index(directory)
    if index is not None:
      old = {k: index[k] for k in header}
      require(old == header, f"the frame log in {directory} holds {old}, not {header}; "
                             "write to another directory (or delete that log).")
      self._shards = {int(k): int(v) for k, v in index["shards"].items()}
    else:
      self._shards = {}
    self._header = header
    self._lock = threading.Lock()
    self._pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame_log")
    self._slots = threading.Semaphore(max_pending)
    self._pending: list[futures.Future] = []
    self._error: BaseException | None = None
    if index is None:
      self._write_index()

  @property
  def shards(self) -> dict[int, int]:
    """Shard index → records, of the shards on disk."""
    with self._lock:
      return dict(sorted(self._shards.items()))

  def _write_index(self) -> None:
    with self._lock:
      shards = {str(k): v for k, v in sorted(self._shards.items())}
    _write_json(os.path.join(self.directory, INDEX), dict(self._header, shards=shards))

  def write_shard(self, index: int, frames: np.ndarray, **fields) -> str:
    """Writes `shard-<index>.array_record` now (tmp + rename); returns its path."""
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    require(index >= 0, f"frame log shard index {index} must be >= 0.")
    records = self._layout.encode(np.asarray(frames), fields)
    path = os.path.join(self.directory, shard_name(index))
    # The fields first: a shard on disk always has its fields file (a fields file alone,
    # from a write killed in between, is overwritten or truncated like a .tmp).
    side = os.path.join(self.directory, fields_name(index))
    with open(side + ".tmp", "wb") as f:
      np.savez(f, **{name: np.asarray(fields[name], dt)
                     for name, dt, shape in self._layout.parts[1:] if shape == ()})
    os.replace(side + ".tmp", side)
    tmp = path + ".tmp"
    writer = array_record_module.ArrayRecordWriter(tmp, WRITER_OPTIONS)
    for r in records:
      writer.write(r)
    writer.close()
    os.replace(tmp, path)
    with self._lock:
      self._shards[int(index)] = len(records)
    self._write_index()
    return path

  def _raise_pending_error(self) -> None:
    done = [f for f in self._pending if f.done()]
    self._pending = [f for f in self._pending if not f.done()]
    for f in done:
      if f.exception() is not None and self._error is None:
        self._error = f.exception()
    if self._error is not None:
      err, self._error = self._error, None
      raise RuntimeError(f"writing the frame log in {self.directory} failed: {err}") from err

  def submit(self, index: int, frames: np.ndarray, **fields) -> None:
    """`write_shard` on the background thread; returns at once (the arrays are not copied:
    do not modify them afterwards)."""
    self._raise_pending_error()
    self._slots.acquire()

    def job():
      try:
        return self.write_shard(index, frames, **fields)
      finally:
        self._slots.release()
    self._pending.append(self._pool.submit(job))

  def wait(self) -> None:
    """Blocks until every submitted shard is on disk; re-raises a writer error."""
    for f in list(self._pending):
      try:
        f.result()
      except BaseException:  # pylint: disable=broad-except  (reported below, once)
        pass
    for f in self._pending:
      if f.exception() is not None and self._error is None:
        self._error = f.exception()
    self._pending = []
    self._raise_pending_error()

  def truncate(self, after_shard: int) -> int:
    """Drops the shards with index > `after_shard` (-1: all) and unfinished `*.tmp`
    writes; returns the records kept. Called on resume with the checkpoint's last shard."""
    self.wait()
    for name in os.listdir(self.directory):
      full = os.path.join(self.directory, name)
      if name.endswith(".tmp"):
        os.remove(full)
      elif name.startswith("shard-") and name.endswith((".array_record", ".fields.npz")):
        idx = int(name[len("shard-"):len("shard-") + 6])
        if idx > after_shard:
          os.remove(full)
    with self._lock:
      self._shards = {k: v for k, v in self._shards.items() if k <= after_shard}
      kept = sum(self._shards.values())
    self._write_index()
    return kept

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._pool.shutdown(wait=True)


class FrameLog(Sequence):
  """A frame log read back: `log[i] -> {"frame": [*frame_shape], field: value}`.

  Indices run over the shards in shard order, records in write order. It is a random-
  access source in the sense Grain expects (`__len__`, `__getitem__`), so
  `grain.MapDataset.source(FrameLog(d)).shuffle(seed=0).batch(64)` or
  `grain.DataLoader(data_source=FrameLog(d), ...)` read it in parallel; `read(indices)`
  returns stacked arrays for a batch (one read per shard touched).
  """

  def __init__(self, directory: str):
    index = _read_index(directory)
    require(index is not None, f"{directory} holds no frame log ({INDEX} is missing); give "
                               "the directory a run wrote with config.experience.log=True.")
    self.directory = directory
    self.frame_shape = tuple(index["frame_shape"])
    self.fields = [f["name"] for f in index["fields"]]
    self._layout = _Layout(self.frame_shape, index["dtype"], index["fields"])
    self.shards = {int(k): int(v) for k, v in sorted(index["shards"].items(),
                                                     key=lambda kv: int(kv[0]))}
    self._paths = [os.path.join(directory, shard_name(k)) for k in self.shards]
    for p in self._paths:
      require(os.path.exists(p), f"the frame log in {directory} lists {os.path.basename(p)} "
                                 "but the file is missing; the log is incomplete.")
    self._source = None  # opened lazily: Grain workers unpickle a closed source
    self._len = sum(self.shards.values())

  def _src(self):
    if self._source is None:
      from grain.sources import ArrayRecordDataSource  # pylint: disable=g-import-not-at-top
      self._source = ArrayRecordDataSource(self._paths)
    return self._source

  def __getstate__(self):
    return dict(self.__dict__, _source=None)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i):
    if not isinstance(i, (int, np.integer)):
      raise TypeError(f"FrameLog indices are integers, not {type(i).__name__}.")
    i = int(i)
    if i < 0:
      i += self._len
    if not 0 <= i < self._len:
      raise IndexError(f"frame {i} is outside the log's {self._len} frames.")
    return self._layout.decode(self._src()[i])

  def read(self, indices) -> dict:
    """Stacked `{"frame": [n, *frame_shape], field: [n, ...]}` for `indices` (any order)."""
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
      return self._layout.decode_many([])
    require(min(idx) >= 0 and max(idx) < self._len,
            f"frame indices must lie in [0, {self._len}); got [{min(idx)}, {max(idx)}].")
    return self._layout.decode_many(self._src().__getitems__(idx))

  def read_fields(self, names: Sequence[str] | None = None) -> dict:
    """Every record's fields `names` (default: all) as `[len, ...]` arrays, no frames.

    Scalar fields come from the `*.fields.npz` beside each shard (fast); vector fields,
    or a log without those files, are read record by record (every frame is read)."""
    names = list(self.fields if names is None else names)
    unknown = sorted(set(names) - set(self.fields))
    require(not unknown, f"the frame log in {self.directory} has no field {unknown}; it has "
                         f"{self.fields}.")
    sides = [os.path.join(self.directory, fields_name(k)) for k in self.shards]
    scalar = {f["name"] for f in self._layout.fields if not f["shape"]}
    if set(names) <= scalar and all(os.path.exists(p) for p in sides):
      parts = []
      for p, count in zip(sides, self.shards.values()):
        with np.load(p) as z:
          part = {name: z[name] for name in names}
        require(all(len(v) == count for v in part.values()), f"{p} does not match its shard "
                f"({count} records); the log is corrupt.")
        parts.append(part)
      if parts:
        return {name: np.concatenate([q[name] for q in parts]) for name in names}
    out = {name: [] for name in names}
    step = 65536
    for start in range(0, self._len, step):
      part = self.read(range(start, min(start + step, self._len)))
      for name in names:
        out[name].append(part[name])
    return {name: (np.concatenate(v) if v else np.zeros((0,), np.int64))
            for name, v in out.items()}
