"""Streaming frames for GAN training: shuffled batches from datasets that never fit in memory.

The DQN Replay Dataset holds 50M frames per game (350 GB of pixels); a frame log written
by the collect job can be as large. The gan job draws its real images from a
`FrameStream` instead of loading a dataset (`palm_jax/gan/train.py`):

    shards     the dataset's units: frame-log shards (`palm_jax.data.frame_log`) or DQN
               Replay checkpoints (`palm_jax.data.dqn_replay`), each read sequentially in
               chunks of `chunk` frames
    epoch e    the shard order is a permutation drawn from (seed, e); `cycle` shards are
               open at once and read round-robin, chunk by chunk (tf.data's interleave),
               so the buffer mixes frames from several parts of the data
    buffer     a shuffle buffer of `buffer` frames (tf.data / Grain windowed shuffle): a
               batch takes `batch` slots drawn uniformly without replacement, and those
               slots are refilled with the next frames of the interleaved stream

Memory is the buffer plus one chunk per open shard, whatever the dataset's size
(`FrameStream.resident_frames`, tested). Frames are preprocessed as they arrive:
grayscale `[H, W]` or `[H, W, C]` → area-downsampled to `resolution` (OpenCV INTER_AREA's
linear map, `palm_jax.envs.atari.area_weights`) → uint8 `[resolution, resolution, C]`.

Specs: `framelog:<dir>` and `dqn_replay:<replay_logs dir>[:<first>-<last>]`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from palm_jax.data import dqn_replay
from palm_jax.envs.atari import area_weights
from palm_jax.runtime.errors import require

STREAM_PREFIXES = ("framelog:", "dqn_replay:")


def is_stream_spec(spec: str) -> bool:
  return isinstance(spec, str) and spec.startswith(STREAM_PREFIXES)


class _FrameLogShards:
  """A frame log's shards as sequential chunk readers."""

  def __init__(self, directory: str):
    from palm_jax.data.frame_log import FrameLog  # pylint: disable=g-import-not-at-top
    self.log = FrameLog(directory)
    require(len(self.log) > 0, f"the frame log in {directory} is empty; collect frames "
                               "first (config.job='collect').")
    starts = np.cumsum([0] + list(self.log.shards.values()))
    self.ranges = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]) if b > a]
    self.frame_shape = tuple(self.log.frame_shape)

  def __len__(self) -> int:
    return len(self.ranges)

  def chunks(self, shard: int, chunk: int) -> Iterator[np.ndarray]:
    lo, hi = self.ranges[shard]
    for start in range(lo, hi, chunk):
      yield self.log.read(np.arange(start, min(start + chunk, hi)))["frame"]


class _DqnReplayShards:
  """DQN Replay checkpoints as sequential chunk readers (gzip streams)."""

  def __init__(self, spec: str):
    self.directory, self.ckpts = dqn_replay.parse_spec(spec)
    self.frame_shape = dqn_replay.FRAME_SHAPE

  def __len__(self) -> int:
    return len(self.ckpts)

  def chunks(self, shard: int, chunk: int) -> Iterator[np.ndarray]:
    return dqn_replay.iter_frames(self.directory, self.ckpts[shard], chunk)


def open_shards(spec: str):
  require(is_stream_spec(spec), f"config.data={spec!r} is not a frame stream; use "
          "framelog:<dir> or dqn_replay:<replay_logs dir>[:<first>-<last>].")
  if spec.startswith("framelog:"):
    return _FrameLogShards(spec[len("framelog:"):])
  return _DqnReplayShards(spec)


class Preprocess:
  """uint8 frames `[k, H, W]` or `[k, H, W, C]` → uint8 `[k, R, R, C]` (area resize)."""

  def __init__(self, frame_shape, resolution: int):
    h, w = frame_shape[:2]
    require(h == w and resolution <= h, f"frames of shape {tuple(frame_shape)} cannot be "
            f"area-resized to {resolution}x{resolution}; frames must be square and at least "
            "that size (config.resolution).")
    self.channels = frame_shape[2] if len(frame_shape) == 3 else 1
    self.weights = None if resolution == h else area_weights(h, resolution).astype(np.float32)

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    x = frames if frames.ndim == 4 else frames[..., None]
    if self.weights is None:
      return np.ascontiguousarray(x, np.uint8)
    w = self.weights
    out = np.einsum("ia,kabc,jb->kijc", w, x.astype(np.float32), w, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class FrameStream:
  """Infinite iterator of shuffled uint8 batches `[batch, R, R, C]` (see the module doc)."""

  def __init__(self, spec: str, *, resolution: int, batch: int, buffer: int, seed: int,
               chunk: int = 4096, cycle: int = 8):
    require(buffer >= batch >= 1, f"config.stream_buffer={buffer} must be at least the batch "
                                  f"size {batch}.")
    self.shards = open_shards(spec)
    self.prep = Preprocess(self.shards.frame_shape, resolution)
    self.batch, self.buffer_size, self.chunk = int(batch), int(buffer), int(chunk)
    self.cycle = max(1, min(int(cycle), len(self.shards)))
    self.seed, self.epoch = int(seed), 0
    self.frame_shape = (resolution, resolution, self.prep.channels)
    self.resident_frames = 0        # frames in memory now: buffer + pending chunks
    self.peak_resident_frames = 0
    self._frames = self._stream()
    self._pending: list[np.ndarray] = []
    self._rng = np.random.default_rng([self.seed, 1])
    self._buffer = np.array(self._take(self.buffer_size))  # writable: slots are refilled

  def _epoch_order(self) -> list[int]:
    return list(np.random.default_rng([self.seed, 0, self.epoch]).permutation(len(self.shards)))

  def _stream(self) -> Iterator[np.ndarray]:
    """Preprocessed chunks forever: epochs of interleaved shards in a seeded order."""
    while True:
      order = self._epoch_order()
      open_ = [iter(self.shards.chunks(s, self.chunk)) for s in order[:self.cycle]]
      rest = order[self.cycle:]
      while open_:
        for it in list(open_):
          block = next(it, None)
          if block is None:
            open_.remove(it)
            if rest:
              open_.append(iter(self.shards.chunks(rest.pop(0), self.chunk)))
            continue
          yield self.prep(block)
      self.epoch += 1

  def _take(self, n: int) -> np.ndarray:
    """The next `n` frames of the stream `[n, R, R, C]`."""
    have = sum(len(p) for p in self._pending)
    while have < n:
      block = next(self._frames)
      self._pending.append(block)
      have += len(block)
      self._track(have)
    out = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
    self._pending = [out[n:]] if len(out) > n else []
    return out[:n]

  def _track(self, pending: int) -> None:
    buffered = len(getattr(self, "_buffer", ()))
    self.resident_frames = buffered + pending
    self.peak_resident_frames = max(self.peak_resident_frames, self.resident_frames)

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    slots = self._rng.choice(self.buffer_size, self.batch, replace=False)
    out = self._buffer[slots].copy()
    self._buffer[slots] = self._take(self.batch)
    return out

  def sample(self, n: int) -> np.ndarray:
    """`n` random frames of the buffer (the reals grid, FID's reference), without
    consuming the stream or its random draws."""
    slots = np.random.default_rng([self.seed, 2]).choice(self.buffer_size, n, replace=False)
    return self._buffer[np.sort(slots)].copy()
