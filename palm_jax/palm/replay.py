"""On-device replay: a time-major ring of frames, sharded over environments.

Every environment writes one frame per step, so the buffer is a ring over time with one
column per environment:

    frames   uint8 [T, N, H, W, C]   s_t as the agent saw it (each frame stored once)
    actions        [T, N, A]          a_t, the action taken *at* s_t
    first    bool  [T, N]             s_t is the first frame of an episode
    labels   int32 [T, N]             the episode's class

A transition (s_t, a_t, s_{t+1}) is read from slots i and i+1 of the same column, so a frame
is never duplicated as both obs and next-obs. It is valid when slot i is filled, is not the
newest slot (its successor is not written yet), and s_{t+1} is not the first frame of a new
episode. Sampling is uniform over valid transitions.

The environment axis `N` is split over the `data` mesh axis like the environments that
write it, so inserting is local; sampling runs per device under `jax.shard_map` (each device
draws `batch / devices` transitions from its own columns), so no frames cross devices and the
sampled batch comes out `data`-sharded, ready for the updates. Capacity in transitions is
`T * N`; e.g. 1M transitions with 4096 environments is T = 244 slots.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.runtime.errors import require
from palm_jax.runtime.sharding import DATA


@struct.dataclass
class ReplayState:
  frames: jax.Array   # uint8 [T, N, H, W, C]
  actions: jax.Array  # [T, N, A]
  first: jax.Array    # bool [T, N]
  labels: jax.Array   # int32 [T, N]
  ptr: jax.Array      # int32 [], next slot to write
  size: jax.Array     # int32 [], number of filled slots (<= T)


@struct.dataclass
class Transitions:
  """A batch of transitions `[B, ...]` sampled from the replay."""
  obs: jax.Array       # uint8 [B, H, W, C]  s_t
  action: jax.Array    # float32 [B, A]       a_t
  next_obs: jax.Array  # uint8 [B, H, W, C]  s_{t+1}
  label: jax.Array     # int32 [B]           class of the episode


def num_slots(capacity: int, num_envs: int) -> int:
  """Time slots T so that T * num_envs ≈ capacity transitions (at least 2)."""
  return max(2, capacity // num_envs)


def init_replay(num_slots_: int, num_envs: int, frame_shape: tuple[int, ...],
                action_dim: int, action_dtype=jnp.bfloat16) -> ReplayState:
  """An empty buffer (call under `jax.jit(..., out_shardings=replay_shardings(mesh))`)."""
  require(num_slots_ >= 2, f"the replay needs at least 2 time slots, got {num_slots_}; "
                           "raise config.replay.capacity to at least 2 * num_envs.")
  t, n = num_slots_, num_envs
  return ReplayState(
      frames=jnp.zeros((t, n) + tuple(frame_shape), jnp.uint8),
      actions=jnp.zeros((t, n, action_dim), action_dtype),
      first=jnp.zeros((t, n), bool),
      labels=jnp.zeros((t, n), jnp.int32),
      ptr=jnp.zeros((), jnp.int32),
      size=jnp.zeros((), jnp.int32))


def replay_shardings(mesh: Mesh) -> ReplayState:
  """Environment columns split over `data`; the ring pointers replicated."""
  columns = NamedSharding(mesh, P(None, DATA))
  scalar = NamedSharding(mesh, P())
  return ReplayState(frames=columns, actions=columns, first=columns, labels=columns,
                     ptr=scalar, size=scalar)


def insert(state: ReplayState, frames, actions, first, labels) -> ReplayState:
  """Writes one step of all environments (`[N, ...]` each) at slot `ptr`."""
  t = state.frames.shape[0]
  put = lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype),
                                                          state.ptr, 0)
  return state.replace(
      frames=put(state.frames, frames), actions=put(state.actions, actions),
      first=put(state.first, first), labels=put(state.labels, labels),
      ptr=(state.ptr + 1) % t, size=jnp.minimum(state.size + 1, t))


def valid_mask(state: ReplayState) -> jax.Array:
  """bool [T, N]: slot i of column n starts a valid transition (see module docstring)."""
  t = state.first.shape[0]
  slots = jnp.arange(t)
  age = (state.ptr - 1 - slots) % t           # 0 for the newest slot
  filled = age < state.size
  has_next = age > 0
  next_first = jnp.roll(state.first, -1, axis=0)  # next_first[i] = first[(i + 1) % T]
  return (filled & has_next)[:, None] & ~next_first


def searchsorted_method(platform: str) -> str:
  """`jnp.searchsorted`'s algorithm for a platform, as its docs advise: "'scan' (the
  default) tends to be more performant on CPU ... 'scan_unrolled' is more performant on GPU
  at the expense of additional compile time" (docs.jax.dev, jax.numpy.searchsorted)."""
  return "scan_unrolled" if platform == "gpu" else "scan"


def _sample_local(state: ReplayState, key, batch: int, method: str = "scan") -> Transitions:
  """Uniform draw of `batch` valid transitions from this device's columns."""
  t, n = state.first.shape
  key = jax.random.fold_in(key, jax.lax.axis_index(DATA))
  valid = valid_mask(state).reshape(-1)
  cdf = jnp.cumsum(valid.astype(jnp.int32))
  # u ~ U{1..count}; the first flat index whose cdf reaches u is the u-th valid slot.
  u = jax.random.randint(key, (batch,), 1, jnp.maximum(cdf[-1], 1) + 1)
  flat = jnp.searchsorted(cdf, u, side="left", method=method)
  flat = jnp.minimum(flat, t * n - 1)
  i, col = flat // n, flat % n
  j = (i + 1) % t
  return Transitions(obs=state.frames[i, col], action=state.actions[i, col].astype(jnp.float32),
                     next_obs=state.frames[j, col], label=state.labels[i, col])


def sample(state: ReplayState, key: jax.Array, batch_size: int, mesh: Mesh) -> Transitions:
  """`batch_size` transitions, `data`-sharded: each device samples from its own columns.

  Call only when every device holds at least one valid transition (after warm-up); with an
  empty buffer the draws fall on slot 0 and are meaningless. `batch_size` must divide over
  the mesh (checked by the caller's config validation).
  """
  per_device = batch_size // mesh.size
  cols, scalar, rows = P(None, DATA), P(), P(DATA)
  specs = ReplayState(frames=cols, actions=cols, first=cols, labels=cols, ptr=scalar,
                      size=scalar)
  method = searchsorted_method(mesh.devices.flat[0].platform)
  fn = jax.shard_map(functools.partial(_sample_local, batch=per_device, method=method),
                     mesh=mesh,
                     in_specs=(specs, P()), out_specs=Transitions(rows, rows, rows, rows),
                     check_vma=False)
  return fn(state, key)


def count_valid(state: ReplayState) -> jax.Array:
  """Number of valid transitions in the whole buffer."""
  return valid_mask(state).sum()
