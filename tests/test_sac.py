"""SAC: pure functions against NumPy, compile-once and sharding checks, and learning Pendulum.

The learning test trains on the pure-JAX Pendulum (`tests/env_pendulum.py`) with a tiny
functional replay buffer defined here (the project's sharded buffer lives elsewhere) and the
whole loop in jitted `lax.scan` chunks.
"""
import dataclasses
import functools
import math
import time

import chex
import env_pendulum as pendulum
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from palm_jax.agents import sac
from palm_jax.runtime.errors import UserError

# Every unit test shares these sizes and one config, so `init`/`update` compile once each.
TINY = sac.SACConfig(actor_hidden=(16, 16), critic_hidden=(16, 16), action_scale=1.5)
D, A, B = 5, 3, 32  # obs dim, action dim, batch (divisible by the 8 simulated devices)
UPDATE = jax.jit(sac.update)


@functools.partial(jax.jit, static_argnums=1)
def _batch(key, shape=()):
  """Random `Transition`s with leading dims `shape + (B,)`; actions in [−1.5, 1.5]."""
  k = jax.random.split(key, 5)
  return sac.Transition(
      obs=jax.random.normal(k[0], (*shape, B, D)),
      action=jax.random.uniform(k[1], (*shape, B, A), minval=-1.5, maxval=1.5),
      reward=jax.random.normal(k[2], (*shape, B)),
      next_obs=jax.random.normal(k[3], (*shape, B, D)),
      discount=(jax.random.uniform(k[4], (*shape, B)) > 0.2).astype(jnp.float32))


# ----------------------------------------------------------------------------- distribution


def _np_tanh_gaussian_log_prob(x, mean, log_std, scale):
  """Change of variables in float64: a = s·tanh(x) ⇒ log p(a) = log N(x) − Σ log|da/dx|."""
  x, mean, log_std = (np.asarray(v, np.float64) for v in (x, mean, log_std))
  std = np.exp(log_std)
  log_normal = -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
  log_abs_det = np.log(scale * (1.0 - np.tanh(x) ** 2))
  return np.sum(log_normal - log_abs_det, axis=-1)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_tanh_gaussian_log_prob_matches_numpy(scale):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  mean = jax.random.normal(k1, (64, 3))
  log_std = jax.random.uniform(k2, (64, 3), minval=-2.0, maxval=1.0)
  action, log_prob = jax.jit(sac.sample_tanh_gaussian, static_argnums=3)(
      k3, mean, log_std, scale)
  # Recover x from a in float64 (actions here are far from saturation) and compare.
  x = np.arctanh(np.clip(np.asarray(action, np.float64) / scale, -1 + 1e-12, 1 - 1e-12))
  ok = np.all(np.abs(x) < 5.0, axis=-1)
  expected = _np_tanh_gaussian_log_prob(x, mean, log_std, scale)
  np.testing.assert_allclose(np.asarray(log_prob)[ok], expected[ok], rtol=1e-4, atol=1e-3)
  assert ok.mean() > 0.9
  assert np.all(np.abs(np.asarray(action)) <= scale)


def test_tanh_log_det_is_stable_and_exact():
  x = jnp.array([-30.0, -5.0, -0.3, 0.0, 0.7, 4.0, 30.0])
  got = np.asarray(sac.tanh_log_det_jacobian(x), np.float64)
  xd = np.asarray(x, np.float64)
  # Exact float64 reference: log(1 − tanh²x) = log(4) − 2|x| − 2·log1p(e^{−2|x|}).
  expected = np.log(4.0) - 2 * np.abs(xd) - 2 * np.log1p(np.exp(-2 * np.abs(xd)))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(got))


def test_tanh_gaussian_density_integrates_and_entropy_monte_carlo():
  """1-D: the density of a integrates to 1, and E[−log π] over samples (the entropy SAC
  estimates) matches −∫ p log p by quadrature."""
  mean, log_std, scale, n = 0.4, -0.3, 2.0, 200_000
  a = np.linspace(-scale, scale, 200_001)[1:-1]
  x = np.arctanh(a / scale)  # quadrature over a, density evaluated through x
  dens = np.exp(_np_tanh_gaussian_log_prob(x[:, None], mean, log_std, scale))
  assert abs(np.trapezoid(dens, a) - 1.0) < 1e-3
  sample = jax.jit(sac.sample_tanh_gaussian, static_argnums=3)
  samples, log_prob = sample(jax.random.key(3), jnp.full((n, 1), mean), jnp.full((n, 1), log_std),
                             scale)
  mc_entropy = -float(jnp.mean(log_prob))
  quad_entropy = -np.trapezoid(dens * np.log(dens), a)
  assert abs(mc_entropy - quad_entropy) < 0.02, (mc_entropy, quad_entropy)
  assert float(jnp.max(jnp.abs(samples))) <= scale


# ----------------------------------------------------------------------------- losses


def test_critic_target_matches_numpy():
  rng = np.random.default_rng(0)
  r, d = rng.normal(size=32), (rng.random(32) > 0.3).astype(np.float64)
  next_q, next_lp = rng.normal(size=(2, 32)), rng.normal(size=32)
  alpha, gamma, rs = 0.37, 0.97, 2.5
  expected = rs * r + gamma * d * (np.minimum(next_q[0], next_q[1]) - alpha * next_lp)
  got = sac.critic_target(*(jnp.asarray(v, jnp.float32) for v in (r, d, next_q, next_lp)),
                          jnp.float32(alpha), gamma, rs)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_critic_loss_uses_target_critics_and_next_policy():
  """Recompute L_Q from the networks' raw outputs in NumPy, with the same sampling noise."""
  state = sac.init(jax.random.key(1), D, A, TINY)
  # Make targets differ from online critics so a mix-up would show.
  state = state.replace(
      target_critic_params=jax.tree.map(lambda p: p * 0.5 + 0.1, state.critic_params),
      log_alpha=jnp.log(jnp.float32(0.3)))
  batch = _batch(jax.random.key(2))
  key = jax.random.key(3)
  loss, metrics = jax.jit(sac.critic_loss)(state, state.critic_params, batch, key)
  mean, log_std = jax.jit(sac.policy)(state, state.actor_params, batch.next_obs)
  eps = np.asarray(jax.random.normal(key, mean.shape), np.float64)
  x = np.asarray(mean, np.float64) + np.exp(np.asarray(log_std, np.float64)) * eps
  a2 = 1.5 * np.tanh(x)
  lp2 = _np_tanh_gaussian_log_prob(x, mean, log_std, 1.5)
  q_values = jax.jit(sac.q_values)
  q_next = np.asarray(q_values(state, state.target_critic_params, batch.next_obs,
                               jnp.asarray(a2, jnp.float32)), np.float64)
  y = np.asarray(batch.reward) + 0.99 * np.asarray(batch.discount) * (
      q_next.min(0) - 0.3 * lp2)
  q = np.asarray(q_values(state, state.critic_params, batch.obs, batch.action))
  expected = np.sum(np.mean(0.5 * (q - y) ** 2, axis=1))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["target_q_mean"]), y.mean(), rtol=1e-4, atol=1e-5)


def test_polyak_update_matches_numpy():
  rng = np.random.default_rng(1)
  target = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=5)}}
  online = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=5)}}
  got = sac.polyak_update(jax.tree.map(jnp.float32, target), jax.tree.map(jnp.float32, online),
                          0.005)
  expected = jax.tree.map(lambda t, o: 0.005 * o + 0.995 * t, target, online)
  chex.assert_trees_all_close(got, jax.tree.map(np.float32, expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("entropy, direction", [(-3.0, +1), (1.0, -1)])
def test_temperature_gradient_sign(entropy, direction):
  """Entropy below the target (−1 per action dim here) must raise α, above it lower α."""
  log_prob = jnp.full((64,), -entropy)
  grad = jax.grad(sac.alpha_loss)(jnp.float32(0.2), log_prob, -1.0)
  np.testing.assert_allclose(float(grad), -np.exp(0.2) * (-entropy - 1.0), rtol=1e-6)
  assert np.sign(-float(grad)) == direction  # gradient descent moves log α along −grad


def test_update_moves_alpha_the_right_way_and_polyaks_targets():
  state = sac.init(jax.random.key(4), D, A, TINY)
  new, metrics = UPDATE(state, _batch(jax.random.key(5)), jax.random.key(6))
  # Adam's first step moves log α by ≈ lr, up iff the entropy is below H̄ = −A.
  direction = 1.0 if float(metrics["entropy"]) < A * -1.0 else -1.0
  np.testing.assert_allclose(float(new.log_alpha - state.log_alpha), direction * 3e-4, rtol=1e-3)
  expected = jax.tree.map(lambda t, o: 0.005 * o + 0.995 * t,
                          state.target_critic_params, new.critic_params)
  chex.assert_trees_all_close(new.target_critic_params, expected, rtol=1e-6, atol=1e-7)
  assert int(new.step) == 1
  assert set(metrics) >= {"critic_loss", "actor_loss", "alpha", "entropy", "q_mean"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert not jax.tree.all(jax.tree.map(np.array_equal, new.actor_params, state.actor_params))


def test_act_shapes_bounds_and_determinism():
  state = sac.init(jax.random.key(7), D, A, TINY)
  obs = _batch(jax.random.key(8)).obs
  act = jax.jit(sac.act, static_argnames="deterministic")
  a = act(state, obs, jax.random.key(9))
  d1 = act(state, obs, jax.random.key(10), deterministic=True)
  d2 = act(state, obs, jax.random.key(11), deterministic=True)
  chex.assert_shape([a, d1], (B, A))
  assert float(jnp.max(jnp.abs(a))) <= 1.5
  np.testing.assert_array_equal(d1, d2)
  mean, _ = jax.jit(sac.policy)(state, state.actor_params, obs)
  np.testing.assert_allclose(d1, 1.5 * np.tanh(np.asarray(mean)), rtol=1e-6)
  with pytest.raises(AssertionError):
    act(state, obs[:, :-1], jax.random.key(0))


def test_config_mistakes_raise_user_error():
  for bad in (dict(tau=0.0), dict(gamma=1.5), dict(init_alpha=0.0), dict(actor_lr=-1.0),
              dict(log_std_min=3.0), dict(critic_hidden=(0,)), dict(action_scale=0.0)):
    with pytest.raises(UserError):
      sac.init(jax.random.key(0), D, A, dataclasses.replace(TINY, **bad))
  with pytest.raises(UserError):
    sac.init(jax.random.key(0), 0, A, TINY)


def test_bf16_compute_keeps_float32_params_and_losses():
  cfg = dataclasses.replace(TINY, dtype=jnp.bfloat16)
  state = sac.init(jax.random.key(0), D, A, cfg)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.critic_params))
  new, metrics = UPDATE(state, _batch(jax.random.key(1)), jax.random.key(2))
  assert all(v.dtype == jnp.float32 and np.isfinite(float(v)) for v in metrics.values())
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new.actor_params))
  batch = _batch(jax.random.key(3))
  jaxpr = str(jax.make_jaxpr(sac.q_values)(state, state.critic_params, batch.obs, batch.action))
  dots = [line for line in jaxpr.splitlines() if "dot_general" in line]
  assert dots and all(":bf16[" in line for line in dots)  # the matmuls really run in bf16


# ----------------------------------------------------------------------------- compilation


def test_update_traces_once_inside_scan_and_across_calls():
  traces = []

  def counted_update(state, batch, key):
    traces.append(1)
    return sac.update(state, batch, key)

  @jax.jit
  def chunk(state, batches, key):
    keys = jax.random.split(key, batches.reward.shape[0])
    return jax.lax.scan(lambda s, xs: counted_update(s, *xs), state, (batches, keys))

  state = sac.init(jax.random.key(0), D, A, TINY)
  for i in range(3):
    batches = _batch(jax.random.key(i), (4,))
    state, metrics = chunk(state, batches, jax.random.key(100 + i))
  assert len(traces) == 1
  assert int(state.step) == 12
  chex.assert_shape(metrics["critic_loss"], (4,))


def test_sharded_update_matches_single_device():
  """Batch split over an 8-device ("data",) mesh, params replicated: same result as 1 device."""
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  by_batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  state = sac.init(jax.random.key(0), D, A, TINY)
  batch = _batch(jax.random.key(1))
  key = jax.random.key(2)
  ref_state, ref_metrics = UPDATE(state, batch, key)
  state_s = jax.device_put(state, replicated)
  batch_s = jax.device_put(batch, by_batch)
  new, metrics = jax.jit(sac.update, out_shardings=(replicated, replicated))(
      state_s, batch_s, key)
  assert new.actor_params["MLP_0"]["Dense_0"]["kernel"].sharding.is_fully_replicated
  chex.assert_trees_all_close(new, ref_state, rtol=2e-5, atol=1e-6)
  chex.assert_trees_all_close(metrics, ref_metrics, rtol=2e-5, atol=1e-6)


# ----------------------------------------------------------------------------- learning


@struct.dataclass
class Replay:
  """Minimal functional ring buffer over `sac.Transition` rows (test support only)."""
  data: sac.Transition  # leaves [capacity, ...]
  ptr: jax.Array        # [] int32, next row to write
  size: jax.Array       # [] int32


def replay_init(capacity, obs_dim, action_dim):
  z = lambda *s: jnp.zeros((capacity, *s), jnp.float32)  # noqa: E731
  return Replay(sac.Transition(z(obs_dim), z(action_dim), z(), z(obs_dim), z()),
                jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def replay_add(buf, rows):
  """Writes n rows at ptr (capacity must be a multiple of n, so a write never wraps)."""
  capacity = buf.data.reward.shape[0]
  n = rows.reward.shape[0]
  data = jax.tree.map(lambda d, r: jax.lax.dynamic_update_slice_in_dim(d, r, buf.ptr, 0),
                      buf.data, rows)
  return Replay(data, (buf.ptr + n) % capacity, jnp.minimum(buf.size + n, capacity))


def replay_sample(buf, key, batch_size):
  idx = jax.random.randint(key, (batch_size,), 0, buf.size)
  return jax.tree.map(lambda d: d[idx], buf.data)


@struct.dataclass
class Loop:
  agent: sac.SACState
  replay: Replay
  env_state: pendulum.EnvState  # leaves [num_envs]
  obs: jax.Array                # [num_envs, 3]
  key: jax.Array


PENDULUM_SAC = sac.SACConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), action_scale=2.0)


def train_pendulum(seed, total_steps=20_000, num_envs=4, warmup_steps=2_000, batch_size=256,
                   updates_per_step=1, num_chunks=4, config=PENDULUM_SAC, log=print):
  """SAC on `num_envs` Pendulums; `updates_per_step` updates per environment step (UTD)."""
  params = pendulum.default_params()
  key = jax.random.key(seed)
  key, agent_key, env_key = jax.random.split(key, 3)
  obs, env_state = jax.vmap(pendulum.reset, in_axes=(0, None))(
      jax.random.split(env_key, num_envs), params)
  loop = Loop(sac.init(agent_key, pendulum.OBS_DIM, pendulum.ACTION_DIM, config),
              replay_init(total_steps, pendulum.OBS_DIM, pendulum.ACTION_DIM),
              env_state, obs, key)

  def env_step(loop, key, random):
    act_key, step_key = jax.random.split(key)
    if random:
      action = sac.random_act(loop.agent, act_key, num_envs)
    else:
      action = sac.act(loop.agent, loop.obs, act_key)
    obs, env_state, reward, _, info = jax.vmap(pendulum.step, in_axes=(0, 0, 0, None))(
        jax.random.split(step_key, num_envs), loop.env_state, action, params)
    rows = sac.Transition(loop.obs, action, reward, info["final_obs"], info["discount"])
    return loop.replace(replay=replay_add(loop.replay, rows), env_state=env_state, obs=obs)

  @jax.jit
  def warmup(loop):
    def body(loop, _):
      key, step_key = jax.random.split(loop.key)
      return env_step(loop.replace(key=key), step_key, random=True), None
    return jax.lax.scan(body, loop, None, warmup_steps // num_envs)[0]

  def train_iter(loop, _):
    key, step_key, update_key = jax.random.split(loop.key, 3)
    loop = env_step(loop.replace(key=key), step_key, random=False)

    def one_update(agent, k):
      sample_key, k = jax.random.split(k)
      return sac.update(agent, replay_sample(loop.replay, sample_key, batch_size), k)

    agent, metrics = jax.lax.scan(
        one_update, loop.agent, jax.random.split(update_key, num_envs * updates_per_step))
    return loop.replace(agent=agent), jax.tree.map(jnp.mean, metrics)

  train_iters = (total_steps - warmup_steps) // num_envs
  chunk = jax.jit(lambda loop: jax.lax.scan(train_iter, loop, None, train_iters // num_chunks))
  loop = warmup(loop)
  for i in range(num_chunks):
    loop, metrics = chunk(loop)
    if log:
      m = {k: round(float(v[-1]), 3) for k, v in metrics.items()}
      log(f"seed {seed} chunk {i}: {m}")
  env_steps = warmup_steps + num_chunks * (train_iters // num_chunks) * num_envs
  return loop.agent, env_steps


@functools.partial(jax.jit, static_argnums=2)
def _eval_returns(agent, key, num_episodes):
  params = pendulum.default_params()
  reset_key, key = jax.random.split(key)
  obs, env_state = jax.vmap(pendulum.reset, in_axes=(0, None))(
      jax.random.split(reset_key, num_episodes), params)

  def body(carry, k):
    obs, env_state = carry
    action = sac.act(agent, obs, k, deterministic=True)
    obs, env_state, reward, _, _ = jax.vmap(pendulum.step, in_axes=(0, 0, 0, None))(
        jax.random.split(k, num_episodes), env_state, action, params)
    return (obs, env_state), reward

  keys = jax.random.split(key, params.max_steps_in_episode)
  _, rewards = jax.lax.scan(body, (obs, env_state), keys)
  return rewards.sum(0)  # [num_episodes]


def evaluate(agent, seed, num_episodes=16):
  """Undiscounted returns [num_episodes] of the deterministic policy, full 200-step episodes
  from fresh resets."""
  return np.asarray(_eval_returns(agent, jax.random.key(seed), num_episodes))


@pytest.mark.slow
def test_sac_solves_pendulum_within_20k_steps():
  start = time.time()
  agent, env_steps = train_pendulum(seed=0, log=None)
  returns = evaluate(agent, seed=12345)
  untrained = evaluate(sac.init(jax.random.key(1), pendulum.OBS_DIM, pendulum.ACTION_DIM,
                                PENDULUM_SAC), seed=12345)
  print(f"env steps {env_steps}, eval returns mean {returns.mean():.1f} "
        f"min {returns.min():.1f} (untrained {untrained.mean():.1f}), "
        f"{time.time() - start:.1f}s")
  assert env_steps <= 20_000
  assert len(returns) >= 10
  assert returns.mean() >= -250.0, returns
  assert untrained.mean() < -600.0, untrained  # the threshold is not met by chance
  assert math.isfinite(float(agent.log_alpha))
