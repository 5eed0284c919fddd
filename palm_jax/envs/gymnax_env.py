"""The latent world as a `gymnax` environment, for any gymnax-based RL library.

`GymnaxLatentEnv` subclasses `gymnax.environments.environment.Environment` and honours its
contract (gymnax 1.x, `environment.py`): one environment per call, `reset_env(key, params)
-> (obs, state)`, `step_env(key, state, action, params) -> (obs, state, reward,
terminated, info)`; the base class's `step` auto-resets when `terminated` or the
time limit `state.time >= params.max_steps_in_episode` holds (it returns `terminated` and
`truncated` separately; the latent world never terminates, episodes are truncated).
Batch with `jax.vmap(env.step, in_axes=(0, 0, 0, None))`, as gymnax-based libraries do.
For libraries written against gymnax 0.0.x's five-value `step` (rejax 0.1.3), wrap the
environment in `LegacyStepEnv` (gymnax's own `LegacyStepAPIWrapper`, made deep-copyable).

The dynamics are `LatentEnv`'s (its module docstring), on a batch of one:

    z_0 = eps_0;  z_t = beta z_{t-1} + (1 - beta) (alpha a_t + (1 - alpha) eps_t);
    frame_t = G(z_t, c)

`LatentEnvParams` carries everything numeric and traced — `alpha`, `beta`,
`action_scale`, `truncation_psi`, `max_steps_in_episode` (transitions per episode: an
episode shows `max_steps_in_episode + 1` frames, `LatentEnv`'s `episode_length`) — and the
generator's and the encoder's variables, so changing any of them never recompiles.

Observations (`observation=`): "pixels", the uint8 frame `[H, W, C]`; or "features",
`f(frame)` float32 `[F]` of a given frozen encoder (`palm_jax.evaluation.features.Encoder`,
e.g. a PALM-pretrained ResNet, run with BatchNorm running statistics) — most JAX RL
libraries expect flat vectors.

Reward (`reward=`): "none" (0), or "knn", APT's particle-based entropy (Liu & Abbeel 2021,
as `palm_jax.rewards.apt`) computed per environment over the observations of its own
episode (a memory of the last `memory_size` of them): `r_t = log(1 + mean of the k
smallest ||o_t - o_j||, j < t)` on the observation vector (features, or pixels scaled to
[0, 1]). APT takes the neighbours from a sampled batch across environments; a gymnax
environment sees one environment at a time, so here the particles are the episode's own
earlier frames (an episodic novelty bonus; fewer than k frames so far: all of them).
"""
from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from palm_jax.envs import latent_env as latent_lib
from palm_jax.runtime.errors import RL_INSTALL, missing_dependency, require

try:
  from gymnax.environments import environment, spaces
  from gymnax.wrappers import compat as _compat
except ImportError as e:  # an optional dependency: the PALM trainer does not need it
  raise missing_dependency(e, "palm_jax.envs.gymnax_env", "gymnax", RL_INSTALL) from e

OBSERVATIONS = ("pixels", "features")
REWARDS = ("none", "knn")


@struct.dataclass
class LatentEnvParams(environment.EnvParams):
  """gymnax `EnvParams` of the latent world (all traced)."""
  max_steps_in_episode: int = 19  # transitions per episode (frames = this + 1)
  alpha: float = 0.5              # weight of the action in T_com
  beta: float = 0.95              # EMA weight of the previous latent in T_ema
  action_scale: float = 1.0       # actions in [-1, 1] are multiplied by this
  truncation_psi: float = 1.0     # StyleGAN truncation (ignored by other renderers)
  gen_vars: Any = None            # the generator's / renderer's variables
  encoder_vars: Any = None        # the frozen encoder's variables (observation="features")

  def latent_params(self) -> latent_lib.EnvParams:
    return latent_lib.EnvParams(alpha=self.alpha, beta=self.beta,
                                action_scale=self.action_scale,
                                truncation_psi=self.truncation_psi,
                                episode_length=self.max_steps_in_episode + 1)


@struct.dataclass
class LatentEnvState(environment.EnvState):
  """gymnax `EnvState` of one environment (`time`: transitions since the reset)."""
  latent: jax.Array   # float32 [D]
  label: jax.Array    # int32 []: the episode's class
  memory: jax.Array   # float32 [M, F]: this episode's observation vectors (reward="knn")
  count: jax.Array    # int32 []: observations written to `memory` (a ring beyond M)


def episodic_knn_reward(obs_vec: jax.Array, memory: jax.Array, count: jax.Array,
                        k: int) -> jax.Array:
  """`log(1 + mean of the k smallest ||obs_vec - memory[j]||)` over the `count` filled rows.

  `obs_vec [F]`, `memory [M, F]`; with fewer than k filled rows the mean is over all of
  them. Equals `apt.knn_reward(obs_vec[None], memory, k=k)` once the memory is full.
  """
  d = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(memory - obs_vec[None]), axis=-1), 0.0))
  valid = jnp.arange(memory.shape[0]) < count
  neg, _ = jax.lax.top_k(jnp.where(valid, -d, -jnp.inf), k)   # the k smallest distances
  used = jnp.isfinite(neg)
  mean = jnp.sum(jnp.where(used, -neg, 0.0)) / jnp.maximum(used.sum(), 1)
  return jnp.log1p(mean)


class GymnaxLatentEnv(environment.Environment):
  """PALM's latent world for gymnax (see the module docstring).

  Args:
    gen: a `GeneratorHandle` (StyleGAN2; `latent_space` "z" or "w") or a
      `renderer.RendererHandle` (any `Renderer`); its variables become
      `default_params.gen_vars`.
    observation: "pixels" or "features" (then `encoder` is required).
    encoder: a frozen `palm_jax.evaluation.features.Encoder` (model + variables).
    reward: "none" or "knn"; `knn_k` neighbours among the last `memory_size` observations.
    episode_length: frames per episode in `default_params` (PALM's `env.episode_length`).
  """

  def __init__(self, gen, *, observation: str = "pixels", encoder=None, reward: str = "knn",
               knn_k: int = 4, memory_size: int | None = None, episode_length: int = 20,
               alpha: float = 0.5, beta: float = 0.95, action_scale: float = 1.0,
               truncation_psi: float = 1.0, latent_space: str = "z",
               noise_mode: str = "const"):
    super().__init__()
    require(observation in OBSERVATIONS, f"observation={observation!r} must be one of "
                                         f"{OBSERVATIONS}.")
    require(reward in REWARDS, f"reward={reward!r} must be one of {REWARDS}.")
    require(observation != "features" or encoder is not None,
            "observation='features' needs encoder=<a palm_jax.evaluation.features.Encoder>; "
            "pass one or use observation='pixels'.")
    require(episode_length >= 2, f"episode_length={episode_length} must be at least 2 (an "
                                 "episode needs a transition).")
    self.latent = latent_lib.make_latent_env(gen, latent_space=latent_space,
                                               noise_mode=noise_mode)
    self.observation, self.reward, self.encoder = observation, reward, encoder
    res, ch = gen.img_resolution, gen.img_channels
    self.image_shape = (res, res, ch)
    self.feature_dim = (encoder.feature_dim if observation == "features"
                        else res * res * ch)
    self.memory_size = int(memory_size or max(episode_length, knn_k))
    require(1 <= knn_k <= self.memory_size, f"knn_k={knn_k} must lie in [1, memory_size="
                                            f"{self.memory_size}].")
    self.knn_k = int(knn_k)
    self._defaults = LatentEnvParams(
        max_steps_in_episode=int(episode_length) - 1, alpha=float(alpha), beta=float(beta),
        action_scale=float(action_scale), truncation_psi=float(truncation_psi),
        gen_vars=gen.variables,
        encoder_vars=encoder.variables if observation == "features" else None)

  # -- the gymnax contract ------------------------------------------------------------
  @property
  def default_params(self) -> LatentEnvParams:
    return self._defaults

  def reset_env(self, key, params: LatentEnvParams):
    frames, s = self.latent.reset(key, params.gen_vars, params.latent_params(), 1)
    obs, vec = self._observe(frames, params)
    memory = jnp.zeros((self.memory_size, vec.shape[0]), jnp.float32).at[0].set(vec)
    state = LatentEnvState(time=jnp.zeros((), jnp.int32), latent=s.latent[0],
                           label=s.label[0], memory=memory, count=jnp.ones((), jnp.int32))
    return obs, state

  def step_env(self, key, state: LatentEnvState, action, params: LatentEnvParams):
    action = jnp.reshape(jnp.asarray(action, jnp.float32), (self.latent.action_dim,))
    s = latent_lib.EnvState(latent=state.latent[None], label=state.label[None],
                            t=state.time[None])
    frames, s, _ = self.latent.step(key, s, action[None], params.gen_vars,
                                    params.latent_params())
    obs, vec = self._observe(frames, params)
    if self.reward == "knn":
      reward = episodic_knn_reward(vec, state.memory, state.count, self.knn_k)
    else:
      reward = jnp.zeros((), jnp.float32)
    memory = state.memory.at[state.count % self.memory_size].set(vec)
    state = LatentEnvState(time=state.time + 1, latent=s.latent[0], label=s.label[0],
                           memory=memory, count=state.count + 1)
    return obs, state, reward, jnp.zeros((), bool), {"label": state.label}

  def is_terminated(self, state, params) -> jax.Array:
    return jnp.zeros((), bool)           # a latent world never ends by itself

  def action_space(self, params=None):
    return spaces.Box(-1.0, 1.0, (self.latent.action_dim,), jnp.float32)

  def observation_space(self, params=None):
    if self.observation == "pixels":
      return spaces.Box(0, 255, self.image_shape, jnp.uint8)
    return spaces.Box(-jnp.inf, jnp.inf, (self.feature_dim,), jnp.float32)

  @property
  def name(self) -> str:
    return "PALMLatentWorld"

  @property
  def num_actions(self) -> int:
    return self.latent.action_dim

  # -- helpers ------------------------------------------------------------------------
  def _observe(self, frames, params: LatentEnvParams):
    """`frames uint8 [1, H, W, C]` → (observation, its float32 vector `[F]` for the reward)."""
    if self.observation == "pixels":
      return frames[0], frames[0].reshape(-1).astype(jnp.float32) / 255.0
    feats = self.encoder.model.apply(params.encoder_vars, frames, train=False)[0]
    feats = jax.lax.stop_gradient(feats.astype(jnp.float32))   # the encoder is frozen
    return feats, feats

  def render_frame(self, state: LatentEnvState, params: LatentEnvParams) -> jax.Array:
    """The current frame uint8 `[H, W, C]` of `state` (either observation mode)."""
    frames = self.latent.render(params.gen_vars, state.latent[None], state.label[None],
                                params.latent_params(), jax.random.key(0))
    return frames[0]


class LegacyStepEnv(_compat.LegacyStepAPIWrapper):
  """gymnax's `LegacyStepAPIWrapper` (five-value `step`, `done = terminated | truncated`)
  that survives `copy.deepcopy`: rejax 0.1.3's `Algorithm.create` deep-copies its config,
  and the gymnax 1.0.1 wrapper's `__getattr__` then recurses forever (it looks up `_env`
  on a copy that has none yet)."""

  def __getattr__(self, name: str) -> Any:
    if name == "_env" or name.startswith("__"):
      raise AttributeError(name)
    return getattr(self._env, name)

  def __deepcopy__(self, memo):
    return type(self)(copy.deepcopy(self._env, memo))
