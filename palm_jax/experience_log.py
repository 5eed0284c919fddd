"""The experience log of a PALM run (`config.experience.log = True`): every frame played.

The replay ring overwrites itself; passive PALM (paper Sec. 6) and coverage need the whole
stream. With the log on, each jitted chunk also returns the frames its iterations stepped
from (`palm_step.make_chunk(record_every=...)`: the same `(s_t, a_t, c, t)` the replay
stores), they leave the device once per chunk, and a background thread writes them as one
frame-log shard per chunk (`palm_jax/data/frame_log.py`, ArrayRecord read through Grain):

    WORKDIR/experience/index.json
    WORKDIR/experience/shard-<chunk:06d>.array_record   one record per (iteration, env)

Records, in online order (iteration-major, then environment):

    frame      uint8 [H, W, 3]   s_t, the frame the agent acted on
    iteration  int64             i: the frame was seen at env step i * num_envs
    env        int64             environment index n in [0, num_envs)
    episode    int64             that environment's episode counter (0, 1, ...)
    t          int64             frame index inside the episode (0 = first frame)
    label      int64             the episode's class c
    action     float16 [A]       a_t (float16: actions lie in [-1, 1]; half the bytes of
                                 float32, which for CIFAR's 512-d latent is 1 KB a frame)

`episode` is derived, not carried: episodes have exactly `episode_length` frames and `t`
advances by one per iteration, so the episode of frame (i, n) started at iteration i - t
and its counter is (i - t + L - 1) // L (0 for the first, possibly staggered, episode).
It is therefore the same after a resume, with no extra state in the checkpoint.

Subsampling (`config.experience.every = k`) keeps environments 0, k, 2k, ...: every frame
of those environments, so episodes stay whole and consecutive frames stay temporal pairs
(subsampling in time would turn (s_t, s_{t+1}) into (s_t, s_{t+k})).

Exactly once: the shard of a chunk is named by the chunk's index. Before a checkpoint is
saved the writer is drained (`before_checkpoint`), so every shard up to a checkpoint is on
disk when it is; a run resuming from the checkpoint at iteration I drops shards >= I /
chunk (and any `*.tmp` of a killed write) and rewrites them as it replays those chunks.
In multi-process runs the frames are gathered and process 0 writes the log.
"""
from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import logging

from palm_jax import sharding
from palm_jax.data import frame_log
from palm_jax.errors import require

DIRECTORY = "experience"
ACTION_DTYPE = "float16"


def enabled(config) -> bool:
  return bool(config.get("experience", {}).get("log", False))


def every(config) -> int:
  return int(config.get("experience", {}).get("every", 1))


def validate(config) -> None:
  """Config mistakes of the log, before anything compiles."""
  k = every(config)
  require(isinstance(k, int) and 1 <= k <= config.env.num_envs,
          f"config.experience.every={k} must lie in [1, env.num_envs="
          f"{config.env.num_envs}] (every k-th environment is logged).")


def fields(action_dim: int) -> tuple:
  return ("iteration", "env", "episode", "t", "label", ("action", ACTION_DTYPE, (action_dim,)))


def logged_envs(config) -> np.ndarray:
  return np.arange(0, config.env.num_envs, every(config))


class ExperienceLog:
  """Host side of the log: disk check at start, truncation on resume, one shard a chunk."""

  def __init__(self, config, workdir: str, *, frame_shape, action_dim: int,
               total_iterations: int, chunk: int, start_iteration: int):
    self.directory = os.path.join(workdir, DIRECTORY)
    self.envs = logged_envs(config)
    self.episode_length = int(config.env.episode_length)
    self.chunk = int(chunk)
    self._fields = fields(action_dim)
    self._writer = None
    remaining = (total_iterations - start_iteration) * len(self.envs)
    total = total_iterations * len(self.envs)
    size = frame_log.expected_bytes(total, frame_shape, fields=self._fields,
                                    num_shards=math.ceil(total_iterations / chunk))
    logging.info("Experience log: %s frames (%d of %d environments, %d iterations) ≈ %.2f GB "
                 "in %s.", f"{total:,}", len(self.envs), config.env.num_envs,
                 total_iterations, size / 1e9, self.directory)
    if jax.process_index() != 0:
      return
    os.makedirs(self.directory, exist_ok=True)
    self._writer = frame_log.FrameLogWriter(self.directory, frame_shape=frame_shape,
                                            fields=self._fields)
    kept = self._writer.truncate(after_shard=start_iteration // self.chunk - 1)
    # What is already on disk counts against the run's size: check only the rest.
    frame_log.check_disk(self.directory, remaining, frame_shape, fields=self._fields,
                         num_shards=math.ceil((total_iterations - start_iteration) / chunk),
                         what="the experience log (config.experience.log)")
    if start_iteration:
      logging.info("Experience log: kept %s frames up to iteration %d (the checkpoint).",
                   f"{kept:,}", start_iteration)

  def write_chunk(self, first_iteration: int, record) -> None:
    """Sends the frames of the chunk that started at `first_iteration` to the writer.

    `record`: the chunk's 4th output (`{"frame": [L, n, H, W, C], "action", "label", "t":
    [L, n]}`, on the device); fetched here (the one device→host transfer of the chunk).
    """
    host = sharding.to_host(record)
    if self._writer is None:
      return
    length, n = host["t"].shape
    it = first_iteration + np.arange(length)[:, None]
    t = host["t"].astype(np.int64)
    flat = lambda x: x.reshape(length * n, *x.shape[2:])  # noqa: E731  iteration-major
    self._writer.submit(
        first_iteration // self.chunk, flat(host["frame"]),
        iteration=flat(np.broadcast_to(it, (length, n))),
        env=flat(np.broadcast_to(self.envs[None, :], (length, n))),
        episode=flat((it - t + self.episode_length - 1) // self.episode_length),
        t=flat(t), label=flat(host["label"].astype(np.int64)),
        action=flat(np.asarray(host["action"], np.float32).astype(ACTION_DTYPE)))

  def before_checkpoint(self) -> None:
    """Every shard up to now on disk before the checkpoint that covers it is written."""
    if self._writer is not None:
      self._writer.wait()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
