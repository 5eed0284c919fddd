"""CartPole-v1 in pure JAX with Gymnasium's dynamics, for proving the DQN/DrQ update.

Transcribes `gymnasium/envs/classic_control/cartpole.py` (Euler integration, the
equations of Florian 2007 as Gymnasium writes them). With F = ±10 N (action 1 pushes right),

    temp  = (F + m_p l θ̇² sin θ) / (m_c + m_p)
    θ̈     = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos²θ / (m_c + m_p)))
    ẍ     = temp − m_p l θ̈ cos θ / (m_c + m_p)
    x ← x + τ ẋ,  ẋ ← ẋ + τ ẍ,  θ ← θ + τ θ̇,  θ̇ ← θ̇ + τ θ̈          (τ = 0.02 s)

with g = 9.8, m_c = 1.0, m_p = 0.1, l = 0.5 (half the pole). Reward 1 on every step,
the terminating one included; terminated when |x| > 2.4 or |θ| > 12° (= 12·2π/360 rad);
CartPole-v1's `TimeLimit` truncates at 500 steps. Reset draws all four state variables
from U(−0.05, 0.05). Observations `[x, ẋ, θ, θ̇]` float32.

`CartPoleVectorEnv` steps N of them with one jitted, vmapped call and resets finished
episodes itself; it has the interface of `palm_jax.envs.atari.AtariVectorEnv`, so the same
DQN host loop (`palm_jax/atari/trainer.py`) drives both.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

OBS_DIM = 4
NUM_ACTIONS = 2


@struct.dataclass
class EnvParams:
  gravity: float = 9.8
  masscart: float = 1.0
  masspole: float = 0.1
  length: float = 0.5
  force_mag: float = 10.0
  tau: float = 0.02
  x_threshold: float = 2.4
  theta_threshold: float = 12 * 2 * np.pi / 360
  max_steps_in_episode: int = 500


@struct.dataclass
class EnvState:
  obs: jax.Array   # [4] float32: x, x_dot, theta, theta_dot
  time: jax.Array  # [] int32


def reset(key: jax.Array, params: EnvParams):
  del params
  obs = jax.random.uniform(key, (OBS_DIM,), jnp.float32, -0.05, 0.05)
  return obs, EnvState(obs=obs, time=jnp.zeros((), jnp.int32))


def step(key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
  """One step with auto-reset. Returns (obs, state, reward, terminated, truncated)."""
  x, x_dot, theta, theta_dot = state.obs
  force = jnp.where(action == 1, params.force_mag, -params.force_mag)
  total_mass = params.masscart + params.masspole
  pml = params.masspole * params.length
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  temp = (force + pml * theta_dot ** 2 * sin) / total_mass
  thetaacc = (params.gravity * sin - cos * temp) / (
      params.length * (4.0 / 3.0 - params.masspole * cos ** 2 / total_mass))
  xacc = temp - pml * thetaacc * cos / total_mass
  new = jnp.stack([x + params.tau * x_dot, x_dot + params.tau * xacc,
                   theta + params.tau * theta_dot, theta_dot + params.tau * thetaacc])
  time = state.time + 1
  terminated = (jnp.abs(new[0]) > params.x_threshold) | (
      jnp.abs(new[2]) > params.theta_threshold)
  truncated = (time >= params.max_steps_in_episode) & ~terminated
  obs_reset, state_reset = reset(key, params)
  done = terminated | truncated
  next_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_reset,
                            EnvState(obs=new, time=time))
  obs = jnp.where(done, obs_reset, new)
  return obs, next_state, jnp.ones((), jnp.float32), terminated, truncated


class CartPoleVectorEnv:
  """N CartPoles behind `AtariVectorEnv`'s interface (numpy in, numpy out, auto-reset)."""

  def __init__(self, num_envs: int, seed: int, params: EnvParams = EnvParams()):
    self.params = params
    self.key = jax.random.PRNGKey(seed)
    self.frame_shape = (OBS_DIM,)
    self.num_envs = num_envs
    self.num_actions = NUM_ACTIONS
    self._step = jax.jit(functools.partial(_vstep, params=params))
    self._state = None

  def reset(self) -> np.ndarray:
    self.key, k = jax.random.split(self.key)
    obs, self._state = jax.vmap(reset, (0, None))(
        jax.random.split(k, self.num_envs), self.params)
    return np.asarray(obs)

  def step(self, actions: np.ndarray):
    self.key, k = jax.random.split(self.key)
    obs, self._state, rew, term, trunc = self._step(k, self._state, jnp.asarray(actions))
    term, trunc = np.asarray(term), np.asarray(trunc)
    return np.asarray(obs), np.asarray(rew), term, term | trunc


def _vstep(key, state, actions, params):
  keys = jax.random.split(key, actions.shape[0])
  return jax.vmap(step, (0, 0, 0, None))(keys, state, actions, params)
