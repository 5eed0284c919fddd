"""The experience log of a PALM run (`config.experience.log = True`): every frame played.

The replay ring overwrites itself; passive PALM (paper Sec. 6) and coverage need the whole
stream. A chunk of `L` iterations has just written its frames into the replay's newest `L`
time slots (`replay.insert`: `(s_t, a_t, c)` of every environment, each frame once), so
after each chunk a small jitted gather takes those slots (the chunk's program is
unchanged: with the log off nothing differs, with it on the hot loop is the same), they
leave the device in one transfer per chunk, and a background thread writes them as one
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

`t` and `episode` are derived, not stored in the replay: episodes have exactly
`episode_length` (E) frames and `t` advances by one per iteration, so with t_end the
environment's `t` after the chunk (iteration i_end), t(i) = (t_end - (i_end - i)) mod E
(checked against the replay's `first` flags), the episode of frame (i, n) started at
iteration i - t and its counter is (i - t + E - 1) // E (0 for the first, possibly
staggered, episode). Both are therefore the same after a resume, with no extra state.

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
import jax.numpy as jnp
import numpy as np
from absl import logging

from palm_jax.data import frame_log
from palm_jax.palm import replay as replay_lib
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

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
  if enabled(config):
    slots = replay_lib.num_slots(config.replay.capacity, config.env.num_envs)
    require(slots >= config.log.chunk_iterations,
            f"config.experience.log reads each chunk's frames from the replay, whose "
            f"{slots} time slots (replay.capacity / env.num_envs) are fewer than "
            f"log.chunk_iterations={config.log.chunk_iterations}; raise replay.capacity to "
            f"{config.log.chunk_iterations * config.env.num_envs} or lower "
            "log.chunk_iterations.")


def fields(action_dim: int) -> tuple:
  return ("iteration", "env", "episode", "t", "label", ("action", ACTION_DTYPE, (action_dim,)))


class ExperienceLog:
  """Host side of the log: disk check at start, truncation on resume, one shard a chunk."""

  def __init__(self, workdir: str, *, num_envs: int, every_k: int, episode_length: int,
               frame_shape, action_dim: int, total_iterations: int, chunk: int):
    """Prints the log's size and refuses a disk that cannot hold it (call it before
    anything compiles); `resume` then truncates to the run's restored iteration.
    Environments 0, `every_k`, 2·`every_k`, ... of `num_envs` are logged."""
    self.directory = os.path.join(workdir, DIRECTORY)
    self.envs = np.arange(0, num_envs, every_k)
    self.episode_length = int(episode_length)
    self.chunk = int(chunk)
    self._fields = fields(action_dim)
    self._writer = None
    length = self.chunk

    def take(replay, t_end):
      """The newest `length` slots, environments 0, k, 2k, ...: `[length, n, ...]`."""
      slots = (replay.ptr - length + jnp.arange(length)) % replay.first.shape[0]
      pick = lambda x: x[slots][:, ::every_k]  # noqa: E731
      return {"frame": pick(replay.frames), "action": pick(replay.actions),
              "label": pick(replay.labels), "first": pick(replay.first),
              "t_end": t_end[::every_k]}
    self._take = jax.jit(take)
    total = total_iterations * len(self.envs)
    size = frame_log.expected_bytes(total, frame_shape, fields=self._fields,
                                    num_shards=math.ceil(total_iterations / chunk))
    logging.info("Experience log: %s frames (%d of %d environments, %d iterations) ≈ %s in "
                 "%s.", f"{total:,}", len(self.envs), num_envs, total_iterations,
                 frame_log.format_bytes(size), self.directory)
    if jax.process_index() != 0:
      return
    os.makedirs(self.directory, exist_ok=True)
    self._writer = frame_log.FrameLogWriter(self.directory, frame_shape=frame_shape,
                                            fields=self._fields)
    # What is already on disk (a resumed run) counts against the run's size.
    done = self._writer.shards
    frame_log.check_disk(self.directory, max(total - sum(done.values()), 0), frame_shape,
                         fields=self._fields,
                         num_shards=max(math.ceil(total_iterations / chunk) - len(done), 0),
                         what="the experience log (config.experience.log)")

  def resume(self, start_iteration: int) -> None:
    """Drops the shards of chunks at or after `start_iteration` (the restored checkpoint's
    iteration; 0 for a fresh run) and unfinished writes: each env step is logged once."""
    if self._writer is None:
      return
    kept = self._writer.truncate(after_shard=start_iteration // self.chunk - 1)
    if start_iteration:
      logging.info("Experience log: kept %s frames up to iteration %d (the checkpoint).",
                   f"{kept:,}", start_iteration)

  def write_chunk(self, first_iteration: int, replay, t_end) -> None:
    """Sends the frames of the chunk that started at `first_iteration` to the writer.

    `replay`: the replay after the chunk; `t_end` int [N]: the environments' `t` after it
    (`state.env.t`). The gather and the one device→host transfer happen here; call it
    before the next chunk (which donates the replay).
    """
    host = sharding.to_host(self._take(replay, t_end))
    if self._writer is None:
      return
    length, n = host["first"].shape
    it = first_iteration + np.arange(length)[:, None]
    back = (length - np.arange(length))[:, None]  # iterations from frame i to the chunk end
    t = (host["t_end"].astype(np.int64)[None, :] - back) % self.episode_length
    if not np.array_equal(t == 0, host["first"]):
      raise RuntimeError("experience log: the derived frame indices t disagree with the "
                         "replay's first-frame flags; episodes are not of fixed length.")
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
