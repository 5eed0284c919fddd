"""The latent world behind Gymnasium's API: host-side objects, batched on the device.

For PyTorch-world users and tools that speak Gymnasium (1.x). Both classes drive a
`GymnaxLatentEnv` (its docstring: dynamics, params, observations, reward) through one
jitted `vmap` of its `reset`/`step` over all environments, so a step of N environments is
one device program; the host sees NumPy arrays only.

`LatentVectorEnv(env, num_envs)` is a `gymnasium.vector.VectorEnv`: `reset(seed=...)`
→ `(obs [N, ...], infos)`, `step(actions [N, D])` → `(obs, rewards [N], terminations [N],
truncations [N], infos)`. It auto-resets in the *same* step
(`metadata["autoreset_mode"] = AutoresetMode.SAME_STEP`, Gymnasium's convention for it):
for an environment whose episode just ended, `obs[i]` is the first observation of the next
episode and `infos["final_obs"][i]` (mask `infos["_final_obs"]`) the last one of the
ended episode (its class in `infos["final_info"]["label"]`). `infos["label"]` is the class
of each environment's current episode.

`LatentGymEnv(env)` is a single `gymnasium.Env` (one environment; passes
`gymnasium.utils.env_checker.check_env`): at the end of an episode it returns the final
observation with `truncated=True`, and the next `reset()` starts a new episode.

Seeding: `reset(seed=s)` seeds `self.np_random` (Gymnasium), which draws the JAX key; the
same seed gives the same episodes.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from palm_jax.runtime.errors import RL_INSTALL, missing_dependency, require

try:
  import gymnasium as gym
  from gymnasium.vector import AutoresetMode
  from gymnasium.vector.utils import batch_space
except ImportError as e:  # an optional dependency: the PALM trainer does not need it
  raise missing_dependency(e, "palm_jax.envs.gymnasium_env", "gymnasium", RL_INSTALL) from e


def to_gym_space(space) -> gym.spaces.Box:
  """A gymnax `Box` as a `gymnasium.spaces.Box` (same bounds, shape and dtype)."""
  dtype, shape = np.dtype(space.dtype), tuple(space.shape)
  bound = lambda b: np.broadcast_to(np.asarray(b, dtype), shape)
  return gym.spaces.Box(low=bound(space.low), high=bound(space.high), shape=shape,
                        dtype=dtype)


class LatentVectorEnv(gym.vector.VectorEnv):
  """`num_envs` latent worlds as one Gymnasium vector environment (see the module doc)."""

  metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

  def __init__(self, env, num_envs: int, params: Any = None,
               render_mode: str | None = None):
    require(int(num_envs) >= 1, f"num_envs={num_envs} must be at least 1.")
    require(render_mode in (None, "rgb_array"), f"render_mode={render_mode!r}: the latent "
                                                "world renders only 'rgb_array'.")
    self.env, self.num_envs, self.render_mode = env, int(num_envs), render_mode
    self.params = env.default_params if params is None else params
    self.single_observation_space = to_gym_space(env.observation_space(self.params))
    self.single_action_space = to_gym_space(env.action_space(self.params))
    self.observation_space = batch_space(self.single_observation_space, self.num_envs)
    self.action_space = batch_space(self.single_action_space, self.num_envs)
    self._reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    self._step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    self._frames = jax.jit(jax.vmap(env.render_frame, in_axes=(0, None)))
    self._key = self._state = None

  def reset(self, *, seed: int | None = None, options: dict | None = None):
    """New episodes in every environment: `(obs [N, ...], infos)`."""
    super().reset(seed=seed)            # seeds self.np_random when a seed is given
    if options and "env_params" in options:   # as gymnax's Gymnasium wrappers allow
      self.params = options["env_params"]
    self._key = jax.random.key(int(self.np_random.integers(2**31)))
    self._key, k = jax.random.split(self._key)
    obs, self._state = self._reset(jax.random.split(k, self.num_envs), self.params)
    return np.asarray(obs), self._infos(self._state)

  def step(self, actions):
    """One step of every environment with `actions [N, D]` in [-1, 1]."""
    require(self._state is not None, "call reset() before step().")
    actions = np.asarray(actions, np.float32)
    want = self.action_space.shape
    require(actions.shape == want, f"actions must have shape {want}, found {actions.shape}.")
    self._key, k = jax.random.split(self._key)
    obs, self._state, reward, terminated, truncated, info = self._step(
        jax.random.split(k, self.num_envs), self._state, actions, self.params)
    obs, reward = np.asarray(obs), np.asarray(reward, np.float32)
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    infos = self._infos(self._state)
    done = terminated | truncated
    if done.any():
      final = np.asarray(info["final_observation"])
      infos["final_obs"] = np.full(self.num_envs, None, dtype=object)  # Gymnasium's layout
      for i in np.flatnonzero(done):
        infos["final_obs"][i] = final[i]
      infos["_final_obs"] = done
      infos["final_info"] = {"label": np.asarray(info["label"]), "_label": done}
      infos["_final_info"] = done
    return obs, reward, terminated, truncated, infos

  def render(self):
    """The current frames, a tuple of `num_envs` uint8 `[H, W, C]` arrays."""
    if self.render_mode is None or self._state is None:
      return None
    return tuple(np.asarray(self._frames(self._state, self.params)))

  def _infos(self, state) -> dict:
    return {"label": np.asarray(state.label), "_label": np.ones(self.num_envs, bool)}


class LatentGymEnv(gym.Env):
  """One latent world as a `gymnasium.Env` (see the module docstring)."""

  metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

  def __init__(self, env, params: Any = None, render_mode: str | None = None):
    self._vec = LatentVectorEnv(env, 1, params, render_mode)
    self.render_mode = render_mode
    self.observation_space = self._vec.single_observation_space
    self.action_space = self._vec.single_action_space

  def reset(self, *, seed: int | None = None, options: dict | None = None):
    super().reset(seed=seed)
    obs, infos = self._vec.reset(seed=int(self.np_random.integers(2**31)), options=options)
    return obs[0], {"label": int(infos["label"][0])}

  def step(self, action):
    obs, reward, terminated, truncated, infos = self._vec.step(
        np.asarray(action, np.float32)[None])
    done = bool(terminated[0] or truncated[0])
    if done:  # the ended episode's last observation and class (the next reset starts anew)
      obs, label = infos["final_obs"][0], infos["final_info"]["label"][0]
    else:
      obs, label = obs[0], infos["label"][0]
    return obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), {"label": int(label)}

  def render(self):
    frames = self._vec.render()
    return None if frames is None else frames[0]
