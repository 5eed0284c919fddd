"""Reader of the DQN Replay Dataset's frames (Agarwal et al. 2020, "An Optimistic
Perspective on Offline RL"): the paper's 50M frames per game, streamed, never loaded whole.

The dataset (gs://atari-replay-datasets/dqn/<Game>/<run>/replay_logs/) is what Dopamine's
`OutOfGraphReplayBuffer.save` writes at each of 50 training iterations
(google/dopamine `dopamine/replay_memory/circular_replay_buffer.py`; read back by
google-research/batch_rl `fixed_replay_buffer.py`, which loads one suffix at a time):

    replay_logs/$store$_observation_ckpt.<n>.gz   gzip( np.save(uint8 [1_000_000, 84, 84]) )
    replay_logs/$store$_action_ckpt.<n>.gz        ... int32 [1_000_000]  (and reward,
    replay_logs/add_count_ckpt.<n>.gz             terminal; add_count = frames ever added)

`STORE_FILENAME_PREFIX = '$store$_'` and `_generate_filename` = `'{}_ckpt.{}.gz'.format(
name, suffix)` there; arrays are written with `allow_pickle=False`. Observations are
single 84×84 grayscale frames (the agent stacks 4 at sampling time). A checkpoint whose
buffer never filled (`add_count < capacity`) holds valid frames only in `[0, add_count)`.

A 1M-frame file is 7 GB of pixels once decompressed; `iter_frames` reads the `.npy`
header and then decompresses `chunk` frames at a time from the gzip stream, so memory is
one chunk whatever the file size. Random access into gzip is not possible; GAN training
streams through shuffled chunks instead (`palm_jax/data/frame_stream.py`).
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from typing import Iterator

import numpy as np

from palm_jax.runtime.errors import UserError, require

PREFIX = "$store$_"
_OBS = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")
FRAME_SHAPE = (84, 84)


def observation_file(directory: str, ckpt: int) -> str:
  return os.path.join(directory, f"{PREFIX}observation_ckpt.{int(ckpt)}.gz")


def list_checkpoints(directory: str) -> list[int]:
  """The checkpoint suffixes `<n>` with an observation file in `directory`, ascending."""
  require(os.path.isdir(directory), f"the DQN Replay directory {directory!r} does not exist; "
          "give the replay_logs folder of one game and run, e.g. .../Pong/1/replay_logs.")
  found = sorted(int(m.group(1)) for m in map(_OBS.match, os.listdir(directory)) if m)
  require(found, f"{directory!r} holds no $store$_observation_ckpt.<n>.gz file; give the "
          "replay_logs folder of one game and run of the DQN Replay Dataset.")
  return found


def _bad(path: str, why: str) -> UserError:
  return UserError(f"{path} is not a DQN Replay observation file ({why}); re-download it "
                   "or leave it out with a checkpoint range (dqn_replay:<dir>:<first>-<last>).")


def _open(path: str):
  """The gzip stream positioned after the .npy header, and (count, frame shape)."""
  require(os.path.exists(path), f"the DQN Replay file {path} is missing; download it or "
          "choose checkpoints that exist (dqn_replay:<dir>:<first>-<last>).")
  f = gzip.open(path, "rb")
  try:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
  except (OSError, EOFError, ValueError, zlib.error) as e:
    f.close()
    raise _bad(path, f"{type(e).__name__}: {e}") from None
  if dtype != np.uint8 or fortran or len(shape) != 3 or tuple(shape[1:]) != FRAME_SHAPE:
    f.close()
    raise _bad(path, f"it holds a {'Fortran-order ' if fortran else ''}{dtype} array of shape "
                     f"{tuple(shape)}, not uint8 [N, 84, 84]")
  return f, int(shape[0])


def _add_count(directory: str, ckpt: int) -> int | None:
  """Frames ever added to the buffer saved as checkpoint `ckpt` (None if not recorded)."""
  path = os.path.join(directory, f"add_count_ckpt.{int(ckpt)}.gz")
  if not os.path.exists(path):
    return None
  try:
    with gzip.open(path, "rb") as f:
      return int(np.load(f, allow_pickle=False))
  except (OSError, EOFError, ValueError, zlib.error) as e:
    raise UserError(f"{path} is not a DQN Replay add_count file ({type(e).__name__}); "
                    "re-download it or delete it (all frames then count as valid).") from None


def num_frames(directory: str, ckpt: int) -> int:
  """Valid frames of checkpoint `ckpt`: the array's length, capped by add_count."""
  f, n = _open(observation_file(directory, ckpt))
  f.close()
  added = _add_count(directory, ckpt)
  return n if added is None else min(n, added)


def iter_frames(directory: str, ckpt: int, chunk: int = 16384) -> Iterator[np.ndarray]:
  """uint8 `[<= chunk, 84, 84]` blocks of checkpoint `ckpt`'s valid frames, in order."""
  require(chunk >= 1, f"chunk={chunk} must be at least 1 frame.")
  path = observation_file(directory, ckpt)
  valid = num_frames(directory, ckpt)
  f, _ = _open(path)
  frame_bytes = FRAME_SHAPE[0] * FRAME_SHAPE[1]
  with f:
    done = 0
    while done < valid:
      k = min(chunk, valid - done)
      try:
        buf = f.read(k * frame_bytes)
      except (OSError, EOFError, zlib.error) as e:
        raise _bad(path, f"{type(e).__name__} after {done:,} frames: {e}") from None
      if len(buf) != k * frame_bytes:
        raise _bad(path, f"it ends after {done + len(buf) // frame_bytes:,} of {valid:,} "
                         "frames (truncated)")
      yield np.frombuffer(buf, np.uint8).reshape((k,) + FRAME_SHAPE)
      done += k


def parse_spec(spec: str) -> tuple[str, list[int]]:
  """`dqn_replay:<dir>[:<first>-<last>]` → (dir, checkpoint suffixes that exist there)."""
  body = spec[len("dqn_replay:"):] if spec.startswith("dqn_replay:") else spec
  directory, sel = body, ""
  m = re.match(r"^(.*):(\d+)-(\d+)$", body)
  if m:
    directory, sel = m.group(1), (int(m.group(2)), int(m.group(3)))
  found = list_checkpoints(directory)
  if not sel:
    return directory, found
  lo, hi = sel
  picked = [c for c in found if lo <= c <= hi]
  require(picked, f"{spec!r}: no checkpoint in [{lo}, {hi}] exists in {directory} (found "
                  f"{found[:5]}{'...' if len(found) > 5 else ''}).")
  return directory, picked


def write_checkpoint(directory: str, ckpt: int, frames: np.ndarray,
                     add_count: int | None = None) -> str:
  """Writes frames in the dataset's layout (what Dopamine's `save` does for the store's
  observations, plus add_count): for tests and for exporting frames to DQN Replay tools."""
  frames = np.asarray(frames)
  require(frames.dtype == np.uint8 and frames.ndim == 3 and frames.shape[1:] == FRAME_SHAPE,
          f"frames must be uint8 [N, 84, 84], got {frames.dtype} {frames.shape}.")
  os.makedirs(directory, exist_ok=True)
  path = observation_file(directory, ckpt)
  with gzip.open(path, "wb") as f:
    np.save(f, frames, allow_pickle=False)
  if add_count is not None:
    with gzip.open(os.path.join(directory, f"add_count_ckpt.{int(ckpt)}.gz"), "wb") as f:
      np.save(f, np.array(add_count), allow_pickle=False)
  return path
