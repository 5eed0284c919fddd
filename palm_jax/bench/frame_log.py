"""`python -m palm_jax.bench framelog`: write and random-read speed of frame-log layouts.

The measurement behind `palm_jax.data.frame_log`'s record layout (BENCHMARKS.md, "frame
log"): one record per frame, uncompressed, against ArrayRecord's compressed defaults and
one record per 256-frame batch, on uniform-noise frames (the worst case for compression).
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from palm_jax.data.frame_log import WRITER_OPTIONS


def add_framelog_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--frames", type=int, default=8192, help="frames written per layout")
  parser.add_argument("--dir", default="", help="scratch directory (default: a temp dir)")


def bench_framelog(args: argparse.Namespace) -> list[dict]:
  rows = measure(args.frames, directory=args.dir or None)
  for row in rows:
    print(row)
  return rows


def measure(num_frames: int = 8192, frame_shape=(32, 32, 3), directory: str | None = None):
  """Write and random-read times of the shard layouts (BENCHMARKS.md, "frame log").

  Per-frame records (`WRITER_OPTIONS`, and ArrayRecord's compressed defaults) against one
  record per 256-frame batch, on uniform-noise frames (the worst case for compression):
  seconds to write `num_frames`, bytes per frame, and 1,000 random single-frame reads.
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  from array_record.python import array_record_module as arm  # pylint: disable=g-import-not-at-top
  directory = directory or tempfile.mkdtemp(prefix="frame_log_bench_")
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (num_frames, *frame_shape), dtype=np.uint8)
  picks = rng.integers(0, num_frames, 1000)
  rows = []
  for name, options, per in (("per-frame, group_size:1, uncompressed", WRITER_OPTIONS, 1),
                             ("per-frame, group_size:1, zstd:1", "group_size:1,zstd:1", 1),
                             ("per-frame, default (group 65536, brotli)", "", 1),
                             ("256 frames per record, uncompressed", WRITER_OPTIONS, 256)):
    path = os.path.join(directory, f"bench-{len(rows)}.array_record")
    start = time.perf_counter()
    w = arm.ArrayRecordWriter(path, options)
    for i in range(0, num_frames, per):
      w.write(frames[i:i + per].tobytes())
    w.close()
    write_s = time.perf_counter() - start
    r = arm.ArrayRecordReader(path, "readahead_buffer_size:0")
    start = time.perf_counter()
    for i in picks:
      rec = r.read([int(i) // per])[0]
      j = int(i) % per
      np.frombuffer(rec, np.uint8, count=math.prod(frame_shape),
                    offset=j * math.prod(frame_shape))
    read_s = time.perf_counter() - start
    r.close()
    rows.append(dict(layout=name, write_frames_per_s=num_frames / write_s,
                     bytes_per_frame=os.path.getsize(path) / num_frames,
                     random_reads_per_s=len(picks) / read_s))
    os.remove(path)
  return rows
