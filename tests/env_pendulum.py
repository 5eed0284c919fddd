"""Pendulum-v1 in pure JAX, with Gymnasium's exact dynamics (gymnax-style functions).

A small continuous-control task to prove the SAC agent on (`palm_jax/agents/sac.py`). The
dynamics transcribe Gymnasium's `gymnasium/envs/classic_control/pendulum.py`; with
`u = clip(a, -max_torque, max_torque)` and `θ̂ = ((θ + π) mod 2π) − π`:

    cost    = θ̂² + 0.1·θ̇² + 0.001·u²                (reward = −cost, from the *old* state)
    θ̇'      = clip(θ̇ + (3g/(2l)·sin θ + 3/(m·l²)·u)·dt, −max_speed, max_speed)
    θ'      = θ + θ̇'·dt
    obs     = [cos θ, sin θ, θ̇]

Reset draws θ ~ U[−π, π], θ̇ ~ U[−1, 1]. Episodes end only by Gymnasium's `TimeLimit` (200
steps): that is a *truncation*, never a termination, so a learner must keep bootstrapping
(`info["discount"]` is always 1). Like gymnax, `step` resets finished episodes itself with a
`select`, so the returned `obs` is the first observation of the next episode; the true last
observation of the finished one is `info["final_obs"]`, which is what a learner stores as
`next_obs`.

Every function takes `params` explicitly (never captured) and handles one environment;
`jax.vmap` them over a batch of keys/states/actions.
"""
from typing import Any, Dict, Tuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

OBS_DIM = 3
ACTION_DIM = 1


@struct.dataclass
class EnvParams:
  """Physical constants and the time limit (leaves, so they can be varied under `vmap`)."""
  max_speed: float = 8.0
  max_torque: float = 2.0
  dt: float = 0.05
  g: float = 10.0
  m: float = 1.0
  l: float = 1.0
  max_steps_in_episode: int = 200


@struct.dataclass
class EnvState:
  """One pendulum: angle θ (0 = upright), angular velocity θ̇, steps taken this episode."""
  theta: jax.Array      # [] float32
  theta_dot: jax.Array  # [] float32
  time: jax.Array       # [] int32


def default_params() -> EnvParams:
  """Gymnasium's Pendulum-v1 defaults (g = 10)."""
  return EnvParams()


def angle_normalize(x: jax.Array) -> jax.Array:
  """Wraps angles into [−π, π): `((x + π) mod 2π) − π` (floored modulo, as NumPy's)."""
  return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


def observation(state: EnvState) -> jax.Array:
  """`[cos θ, sin θ, θ̇]`, shape [3], float32."""
  return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(
      jnp.float32)


def reset(key: jax.Array, params: EnvParams) -> Tuple[jax.Array, EnvState]:
  """Starts an episode: θ ~ U[−π, π], θ̇ ~ U[−1, 1]. Returns (obs [3], state)."""
  del params  # Gymnasium's default reset bounds do not depend on the physical constants.
  high = jnp.array([jnp.pi, 1.0], jnp.float32)
  init = jax.random.uniform(key, (2,), jnp.float32, minval=-high, maxval=high)
  state = EnvState(theta=init[0], theta_dot=init[1], time=jnp.zeros((), jnp.int32))
  return observation(state), state


def step_dynamics(
    state: EnvState, action: jax.Array, params: EnvParams) -> Tuple[EnvState, jax.Array]:
  """One Euler step without the time limit. `action` [1] → (next state, reward [])."""
  chex.assert_shape(action, (ACTION_DIM,))
  u = jnp.clip(action[0].astype(jnp.float32), -params.max_torque, params.max_torque)
  th, thdot = state.theta, state.theta_dot
  cost = angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
  new_thdot = thdot + (3 * params.g / (2 * params.l) * jnp.sin(th)
                       + 3.0 / (params.m * params.l ** 2) * u) * params.dt
  new_thdot = jnp.clip(new_thdot, -params.max_speed, params.max_speed)
  new_th = th + new_thdot * params.dt
  next_state = EnvState(theta=new_th, theta_dot=new_thdot, time=state.time + 1)
  return next_state, -cost


def step(
    key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams,
) -> Tuple[jax.Array, EnvState, jax.Array, jax.Array, Dict[str, Any]]:
  """Steps one pendulum and resets it when its episode is over (gymnax's auto-reset).

  Args:
    key: used only for the reset draw.
    state: current state.
    action: torque, shape [1]; clipped to [−max_torque, max_torque].
    params: environment constants.

  Returns:
    `(obs [3], state, reward [], done [] bool, info)`; after the last step of an episode
    `obs`/`state` already belong to the next episode. `info` holds `final_obs` [3] (the
    observation reached by this step, before any reset), `truncated` [] bool (time limit),
    `terminated` [] bool (always False) and `discount` [] float32 (`1 − terminated`, the
    bootstrap mask for the learner).
  """
  next_state, reward = step_dynamics(state, action, params)
  final_obs = observation(next_state)
  truncated = next_state.time >= params.max_steps_in_episode
  terminated = jnp.zeros((), bool)
  done = jnp.logical_or(truncated, terminated)
  reset_obs, reset_state = reset(key, params)
  state_out = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, next_state)
  obs_out = jnp.where(done, reset_obs, final_obs)
  info = {
      "final_obs": final_obs,
      "truncated": truncated,
      "terminated": terminated,
      "discount": 1.0 - terminated.astype(jnp.float32),
  }
  return obs_out, state_out, reward.astype(jnp.float32), done, info
