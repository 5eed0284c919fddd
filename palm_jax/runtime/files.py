"""Files every job writes the same way: atomic JSON, and room on the disk before writing.

`write_json` writes `path.tmp` and renames it over `path` (`os.replace` is atomic on POSIX),
so a reader — a sweep aggregating while a member runs, a rerun after kill -9 — sees either
the old file or the new one, never half of one. In a multi-process run only process 0
writes (`all_processes=True` for files each process keeps for itself).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax

from palm_jax.runtime.errors import UserError


def write_json(path: str, obj: Any, *, all_processes: bool = False) -> str:
  """Writes `obj` as indented JSON to `path` atomically (process 0 only unless asked)."""
  if all_processes or jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(obj, f, indent=2, default=str)
    os.replace(path + ".tmp", path)
  return path


def free_bytes(path: str) -> int | None:
  """Free bytes on the filesystem of `path` (its nearest existing parent); None if remote."""
  if "://" in path:
    return None
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def mib(n: int) -> str:
  return f"{n / 2**20:,.1f} MiB"


# Orbax/TensorStore write the array bytes plus per-chunk metadata and OCDBT manifests:
# a measured smoke checkpoint is ~1.05x its array bytes; 1.25x + 16 MiB leaves headroom.
SPACE_MARGIN, SPACE_OVERHEAD = 1.25, 16 << 20


def check_free_space(directory: str, nbytes: int, what: str) -> None:
  """UserError unless `directory`'s filesystem has room for `nbytes` × the margin."""
  need = int(nbytes * SPACE_MARGIN) + SPACE_OVERHEAD
  free = free_bytes(directory)
  if free is not None and free < need:
    raise UserError(f"{what} needs about {mib(need)} in {directory} but only {mib(free)} "
                    "is free; free some space or give a --workdir on a larger disk (a rerun "
                    "resumes from the last checkpoint).")
