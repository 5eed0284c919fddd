"""Replay ring vs a NumPy model of the same ring; sharded sampling on 8 devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.palm import replay
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import UserError


def _fill(num_slots, num_envs, steps, episode_length, seed=0):
  """Inserts `steps` steps where frame = (global step, env id); returns state + NumPy log."""
  rng = np.random.default_rng(seed)
  state = replay.init_replay(num_slots, num_envs, (1, 1, 2), action_dim=3,
                             action_dtype=jnp.float32)
  offsets = rng.integers(0, episode_length, num_envs)  # staggered episodes
  log = []
  for s in range(steps):
    frames = np.stack([np.full(num_envs, s % 256), np.arange(num_envs)], -1)
    frames = frames.reshape(num_envs, 1, 1, 2).astype(np.uint8)
    first = (s + offsets) % episode_length == 0
    actions = rng.normal(size=(num_envs, 3)).astype(np.float32)
    labels = rng.integers(0, 10, num_envs).astype(np.int32)
    state = replay.insert(state, frames, actions, first, labels)
    log.append((frames, actions, first, labels))
  return state, log


def _numpy_valid(log, num_slots):
  """Valid (step, env) pairs among the last `num_slots` steps."""
  steps = len(log)
  kept = range(max(0, steps - num_slots), steps)
  valid = set()
  for s in kept:
    if s + 1 < steps:
      for n in range(log[0][0].shape[0]):
        if not log[s + 1][2][n]:
          valid.add((s, n))
  return valid


@pytest.mark.parametrize("steps", [1, 3, 7, 20])
def test_valid_mask_matches_numpy(steps):
  t, n = 6, 5
  state, log = _fill(t, n, steps, episode_length=3)
  mask = np.asarray(replay.valid_mask(state))
  got = set()
  for i in range(t):
    for c in range(n):
      if mask[i, c]:
        got.add((int(np.asarray(state.frames)[i, c, 0, 0, 0]), c))
  want = {(s % 256, c) for s, c in _numpy_valid(log, t)}
  assert got == want
  assert int(replay.count_valid(state)) == len(want)


def test_sample_on_8_devices_is_valid_uniform_and_sharded():
  mesh = sharding.make_mesh()
  t, n = 8, 16
  state, log = _fill(t, n, steps=13, episode_length=4, seed=1)
  state = jax.device_put(state, replay.replay_shardings(mesh))
  valid = _numpy_valid(log, t)
  sample = jax.jit(lambda s, k: replay.sample(s, k, 4096, mesh))
  batch = sample(state, jax.random.PRNGKey(0))
  assert batch.obs.sharding.spec[0] == "data"
  obs, nxt = np.asarray(batch.obs), np.asarray(batch.next_obs)
  act, lab = np.asarray(batch.action), np.asarray(batch.label)
  counts = {}
  for b in range(obs.shape[0]):
    step, env = int(obs[b, 0, 0, 0]), int(obs[b, 0, 0, 1])
    abs_step = max(s for s, _ in valid if s % 256 == step)  # steps < 256 here
    assert (abs_step, env) in valid
    assert int(nxt[b, 0, 0, 0]) == (step + 1) % 256 and int(nxt[b, 0, 0, 1]) == env
    np.testing.assert_allclose(act[b], log[abs_step][1][env], rtol=0, atol=0)
    assert lab[b] == log[abs_step][3][env]
    # device d samples only from its own columns (2 envs per device)
    assert env // (n // 8) == b // (4096 // 8)
    counts[(abs_step, env)] = counts.get((abs_step, env), 0) + 1
  # uniform within each device's columns: every valid pair drawn, no pair far off its mean
  per_device = {}
  for (s, env), c in counts.items():
    per_device.setdefault(env // 2, []).append(c)
  for d, cs in per_device.items():
    n_valid = sum(1 for s, env in valid if env // 2 == d)
    assert len(cs) == n_valid
    mean = 512 / n_valid
    assert max(abs(c - mean) for c in cs) < 5 * np.sqrt(mean) + 1


def test_ring_overwrites_oldest():
  state, log = _fill(4, 2, steps=10, episode_length=100)
  frames = np.asarray(state.frames)[:, 0, 0, 0, 0]
  assert sorted(frames.tolist()) == [6, 7, 8, 9]
  assert int(state.size) == 4 and int(state.ptr) == 10 % 4


def test_capacity_of_cifar_config_fits_8gb():
  # 1M transitions of 32x32x3 uint8 frames, 512-d bf16 actions, 4096 environments.
  t = replay.num_slots(1_000_000, 4096)
  shapes = jax.eval_shape(lambda: replay.init_replay(t, 4096, (32, 32, 3), 512))
  total = sharding.num_bytes(shapes)
  assert t * 4096 >= 0.99e6
  assert total < 8 * 2**30, total


def test_too_small_capacity_is_a_user_error():
  with pytest.raises(UserError, match="replay.capacity"):
    replay.init_replay(1, 4, (2, 2, 3), 2)
