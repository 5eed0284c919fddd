"""Pure-JAX Pendulum-v1 against a NumPy transcription of Gymnasium's dynamics.

The reference below is written from Gymnasium's `gymnasium/envs/classic_control/pendulum.py`
(`PendulumEnv.step`, `reset`, `_get_obs`, `angle_normalize`) plus `TimeLimit(200)`; it runs
in float64 like Gymnasium's state, while the JAX environment computes in float32.
"""
import env_pendulum as pendulum
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def np_angle_normalize(x):
  return ((x + np.pi) % (2 * np.pi)) - np.pi


def np_step(th, thdot, u, g=10.0, m=1.0, l=1.0, dt=0.05, max_speed=8.0, max_torque=2.0):
  """Gymnasium's PendulumEnv.step: returns (new θ, new θ̇, reward, obs [cos, sin, θ̇])."""
  u = np.clip(u, -max_torque, max_torque)
  costs = np_angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * (u ** 2)
  newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l ** 2) * u) * dt
  newthdot = np.clip(newthdot, -max_speed, max_speed)
  newth = th + newthdot * dt
  obs = np.array([np.cos(newth), np.sin(newth), newthdot])
  return newth, newthdot, -costs, obs


def _batched_step(keys, states, actions, params):
  return jax.jit(jax.vmap(pendulum.step, in_axes=(0, 0, 0, None)))(keys, states, actions, params)


def test_angle_normalize_matches_numpy():
  x = np.linspace(-20.0, 20.0, 1001, dtype=np.float32)
  np.testing.assert_allclose(pendulum.angle_normalize(jnp.asarray(x)),
                             np_angle_normalize(x.astype(np.float64)), atol=2e-5)


@pytest.mark.parametrize("g", [10.0, 9.81])
def test_single_steps_match_gymnasium_formulas(g):
  """Random states (θ beyond [−π, π], θ̇ up to the speed limit) and actions beyond ±2."""
  rng = np.random.default_rng(0)
  n = 4096
  th = rng.uniform(-3 * np.pi, 3 * np.pi, n).astype(np.float32)
  thdot = rng.uniform(-8.0, 8.0, n).astype(np.float32)
  u = rng.uniform(-3.0, 3.0, (n, 1)).astype(np.float32)
  params = pendulum.EnvParams(g=g)
  state = pendulum.EnvState(jnp.asarray(th), jnp.asarray(thdot),
                            jnp.zeros(n, jnp.int32))
  keys = jax.random.split(jax.random.key(0), n)
  obs, new_state, reward, done, info = _batched_step(keys, state, jnp.asarray(u), params)
  ref_th, ref_thdot, ref_r, ref_obs = np_step(
      th.astype(np.float64), thdot.astype(np.float64), u[:, 0].astype(np.float64), g=g)
  np.testing.assert_allclose(new_state.theta, ref_th, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new_state.theta_dot, ref_thdot, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(reward, ref_r, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(obs, ref_obs.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(info["final_obs"], ref_obs.T, rtol=1e-5, atol=1e-5)
  assert obs.dtype == jnp.float32 and obs.shape == (n, 3)
  assert not np.any(done) and np.all(info["discount"] == 1.0)
  np.testing.assert_array_equal(new_state.time, 1)
  assert np.all(np.abs(np.asarray(new_state.theta_dot)) <= 8.0)  # the clip was exercised
  assert np.mean(np.abs(ref_thdot) == 8.0) > 0.01


def test_rollout_step_by_step_time_limit_and_auto_reset():
  """Two full episodes for 64 pendulums; every step checked against the NumPy reference."""
  params = pendulum.default_params()
  n, horizon = 64, 2 * params.max_steps_in_episode
  rng = np.random.default_rng(1)
  actions = rng.uniform(-2.5, 2.5, (horizon, n, 1)).astype(np.float32)
  obs, state = jax.jit(jax.vmap(pendulum.reset, in_axes=(0, None)))(
      jax.random.split(jax.random.key(1), n), params)
  step = jax.jit(jax.vmap(pendulum.step, in_axes=(0, 0, 0, None)))
  returns = np.zeros(n)
  for t in range(horizon):
    th, thdot = np.asarray(state.theta, np.float64), np.asarray(state.theta_dot, np.float64)
    np.testing.assert_allclose(obs, np.stack([np.cos(th), np.sin(th), thdot], -1), atol=1e-6)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(2), t), n)
    obs, state, reward, done, info = step(keys, state, jnp.asarray(actions[t]), params)
    _, _, ref_r, ref_obs = np_step(th, thdot, actions[t, :, 0].astype(np.float64))
    np.testing.assert_allclose(reward, ref_r, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(info["final_obs"], ref_obs.T, rtol=1e-5, atol=1e-5)
    returns += np.asarray(reward)
    last = (t + 1) % params.max_steps_in_episode == 0
    np.testing.assert_array_equal(done, last)
    np.testing.assert_array_equal(info["truncated"], last)
    assert not np.any(info["terminated"]) and np.all(info["discount"] == 1.0)
    if last:  # auto-reset: a fresh episode, its first observation returned
      np.testing.assert_array_equal(state.time, 0)
      assert np.all(np.abs(np.asarray(state.theta_dot)) <= 1.0)
      assert not np.allclose(obs, info["final_obs"])
    else:
      np.testing.assert_array_equal(state.time, (t + 1) % params.max_steps_in_episode)
      np.testing.assert_array_equal(obs, info["final_obs"])
  # Random torques over 2 episodes: each episode's return lies in Gymnasium's reward range.
  assert np.all(returns >= 2 * 200 * -16.2736044) and np.all(returns <= 0)


def test_reset_distribution():
  params = pendulum.default_params()
  obs, state = jax.jit(jax.vmap(pendulum.reset, in_axes=(0, None)))(
      jax.random.split(jax.random.key(3), 20_000), params)
  th, thdot = np.asarray(state.theta), np.asarray(state.theta_dot)
  assert th.min() >= -np.pi and th.max() <= np.pi and thdot.min() >= -1 and thdot.max() <= 1
  # Uniform: mean ≈ 0, variance ≈ (2·high)²/12.
  assert abs(th.mean()) < 0.05 and abs(th.var() - np.pi ** 2 / 3) < 0.05
  assert abs(thdot.mean()) < 0.02 and abs(thdot.var() - 1 / 3) < 0.01
  np.testing.assert_array_equal(state.time, 0)
  np.testing.assert_allclose(obs[:, 2], thdot)
  # No key reuse across environments: (θ, θ̇) pairs are distinct (single floats may collide).
  assert len(np.unique(np.stack([th, thdot], -1), axis=0)) == len(th)


def test_params_are_passed_not_captured():
  """One compiled step serves different constants (EnvParams leaves are traced)."""
  step = jax.jit(pendulum.step)
  _, state = pendulum.reset(jax.random.key(0), pendulum.default_params())
  a = jnp.array([1.0])
  outs = [step(jax.random.key(1), state, a, pendulum.EnvParams(g=g))[1].theta_dot
          for g in (10.0, 3.7)]
  assert step._cache_size() == 1
  th, thdot = float(state.theta), float(state.theta_dot)
  for g, out in zip((10.0, 3.7), outs):
    np.testing.assert_allclose(out, np_step(th, thdot, 1.0, g=g)[1], rtol=1e-5, atol=1e-6)
