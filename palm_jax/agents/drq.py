"""DrQ(ε) for discrete actions: double DQN on randomly shifted frames, n-step returns.

The agent of Dopamine's Atari 100k lab (google/dopamine, `labs/atari_100k/
atari_100k_rainbow_agent.py` on top of `jax/agents/full_rainbow/full_rainbow_agent.py`) with
`labs/atari_100k/configs/DrQ_eps.gin` (Kostrikov et al. 2020's DrQ with the ε settings of
Agarwal et al. 2021). One update on a batch of n-step transitions (s, a, R, s', done):

    s̃  = aug(s),  s̃' = aug(s')                 independent random shifts per image (below)
    a*  = argmax_a Q_θ(s̃', a)                  double DQN: the online net picks ...
    y   = R + γⁿ (1 − done) Q_θ̄(s̃', a*)        ... the target net evaluates; stop_gradient
    L   = mean_b huber(y − Q_θ(s̃, a))          Huber with δ = 1 (dopamine/jax/losses.py)
    θ  ← Adam(∇θ L);   θ̄ ← θ every `target_update_period` updates

with R = Σ_{k<n} γᵏ r_{t+k} (clipped rewards), truncated at a terminal (then done = 1).

`aug` is Dopamine's `drq_image_augmentation`: frames in [0, 1] are edge-padded by 4 pixels
(their stand-in for PyTorch's ReplicationPad2d), cropped back to 84×84 at an offset drawn
uniformly from {0, …, 7} per axis and image (`randint(0, 2·pad)`: the upper end is
exclusive there), then scaled by 1 + 0.05·clip(N(0, 1), −2, 2) per image (the intensity
augmentation of Schwarzer et al. 2021 that Dopamine adds).

Hyperparameters (all from DrQ_eps.gin unless said):
  γ = 0.99; n = `update_horizon` = 10; `min_replay_history` = 1,600; `update_period` = 1;
  `target_update_period` = 1 (the target is the online net of the previous step);
  ε_train = 0.01 reached by a linear decay over 5,000 steps after the 1,600 warm-up steps
  (`linearly_decaying_epsilon`), ε_eval = 0.001; Adam lr 1e-4, eps 1.5e-4
  (`create_optimizer.learning_rate / eps`, from DER), β = (0.9, 0.999) (Dopamine defaults);
  batch 32 and replay 1M (`ReplayBuffer.batch_size / max_capacity`), uniform sampling;
  dueling head, no noisy nets, no distributional RL; rewards clipped to [−1, 1] (Dopamine's
  `Runner` default `clip_rewards=True`).

Everything here is pure and jittable; `DrQState` is a flax.struct dataclass. The network is
any `QNetwork` (`palm_jax/models/atari_encoder.py`), so the same update trains CartPole's MLP.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct


@dataclasses.dataclass(frozen=True)
class DrQConfig:
  """DrQ(ε)'s hyperparameters; defaults are DrQ_eps.gin's (see the module docstring)."""
  gamma: float = 0.99
  update_horizon: int = 10
  min_replay_history: int = 1_600
  update_period: int = 1
  target_update_period: int = 1
  epsilon_train: float = 0.01
  epsilon_eval: float = 0.001
  epsilon_decay_period: int = 5_000
  learning_rate: float = 1e-4
  adam_eps: float = 1.5e-4
  batch_size: int = 32
  replay_capacity: int = 1_000_000
  data_augmentation: bool = True
  image_pad: int = 4
  intensity_scale: float = 0.05
  huber_delta: float = 1.0
  double_dqn: bool = True

  @property
  def cumulative_gamma(self) -> float:
    return self.gamma ** self.update_horizon


@struct.dataclass
class Batch:
  """n-step transitions `[B, ...]`; observations uint8 frames (or float features)."""
  obs: jax.Array        # [B, 84, 84, 4] uint8
  action: jax.Array     # [B] int32
  reward: jax.Array     # [B] float32, the n-step discounted sum of clipped rewards
  next_obs: jax.Array   # [B, 84, 84, 4] uint8, s_{t+n}
  terminal: jax.Array   # [B] float32, 1 if the episode terminated within the n steps


@struct.dataclass
class DrQState:
  params: Any
  target_params: Any
  opt_state: Any
  key: jax.Array
  updates: jax.Array  # int32 [], gradient steps taken


def make_optimizer(config: DrQConfig) -> optax.GradientTransformation:
  """Adam(lr, b1 = 0.9, b2 = 0.999, eps) — Dopamine's `create_optimizer('adam')`."""
  return optax.adam(config.learning_rate, b1=0.9, b2=0.999, eps=config.adam_eps)


def init_state(network: nn.Module, optimizer: optax.GradientTransformation,
               obs_example: jax.Array, key: jax.Array, params: Any = None) -> DrQState:
  """Initialises (or takes) the online parameters; the target starts equal to them."""
  init_key, key = jax.random.split(key)
  if params is None:
    params = network.init(init_key, preprocess(obs_example))
  # A copy, not an alias: the update donates the state, and one buffer cannot be donated twice.
  return DrQState(params=params, target_params=jax.tree.map(jnp.copy, params),
                  opt_state=optimizer.init(params),
                  key=key, updates=jnp.zeros((), jnp.int32))


def preprocess(obs: jax.Array) -> jax.Array:
  """uint8 frames → float32 in [0, 1] (`preprocess_inputs_with_augmentation`); floats pass."""
  if jnp.issubdtype(obs.dtype, jnp.integer):
    return obs.astype(jnp.float32) / 255.0
  return obs.astype(jnp.float32)


def augment(key: jax.Array, x: jax.Array, pad: int = 4, scale: float = 0.05) -> jax.Array:
  """Random shift + intensity, `[B, H, W, C] float → [B, H, W, C]` (module docstring)."""
  b, h, w, _ = x.shape
  key_intensity, key_crop = jax.random.split(key)
  key_x, key_y = jax.random.split(key_crop)
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  dx = jax.random.randint(key_x, (b,), 0, 2 * pad)
  dy = jax.random.randint(key_y, (b,), 0, 2 * pad)
  crop = jax.vmap(lambda img, i, j: jax.lax.dynamic_slice(
      img, (i, j, 0), (h, w, x.shape[-1])))(padded, dx, dy)
  noise = 1.0 + scale * jnp.clip(jax.random.normal(key_intensity, (b, 1, 1, 1)), -2.0, 2.0)
  return crop * noise


def linearly_decaying_epsilon(step: jax.Array, config: DrQConfig) -> jax.Array:
  """ε(t) = ε + clip((1 − ε)(D + W − t)/D, 0, 1 − ε): 1 for t ≤ W, then linear to ε at W + D.

  W = `min_replay_history`, D = `epsilon_decay_period` (Dopamine's dqn_agent, Nature DQN).
  """
  eps = config.epsilon_train
  d = config.epsilon_decay_period
  bonus = (1.0 - eps) * (d + config.min_replay_history - step) / d
  return eps + jnp.clip(bonus, 0.0, 1.0 - eps)


def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
  """0.5 x² for |x| ≤ δ, else 0.5 δ² + δ(|x| − δ)."""
  a = jnp.abs(x)
  return jnp.where(a <= delta, 0.5 * a ** 2, 0.5 * delta ** 2 + delta * (a - delta))


def td_target(network: nn.Module, params: Any, target_params: Any, next_x: jax.Array,
              reward: jax.Array, terminal: jax.Array, config: DrQConfig) -> jax.Array:
  """y = R + γⁿ (1 − done) Q_θ̄(s', argmax_a Q_θ(s', a)), `[B]`, no gradient."""
  q_target = network.apply(target_params, next_x)
  q_select = network.apply(params, next_x) if config.double_dqn else q_target
  a_star = jnp.argmax(q_select, axis=-1)
  q_next = jnp.take_along_axis(q_target, a_star[:, None], axis=-1)[:, 0]
  y = reward + config.cumulative_gamma * (1.0 - terminal.astype(jnp.float32)) * q_next
  return jax.lax.stop_gradient(y)


def loss_fn(params: Any, network: nn.Module, x: jax.Array, action: jax.Array,
            target: jax.Array, config: DrQConfig):
  """Mean Huber TD loss and the per-sample losses `[B]`."""
  q = network.apply(params, x)
  q_a = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]
  per_sample = huber(target - q_a, config.huber_delta)
  return jnp.mean(per_sample), per_sample


def update(state: DrQState, batch: Batch, *, network: nn.Module,
           optimizer: optax.GradientTransformation, config: DrQConfig):
  """One DrQ(ε) gradient step, then θ̄ ← θ if (updates + 1) % target_update_period == 0.

  Dopamine counts the sync period in agent steps; with `update_period = 1` that is the
  update count (up to the warm-up offset), and DrQ(ε)'s period 1 syncs after every update.

  Returns (new state, metrics {"loss", "q"}). Jit with `network`, `optimizer`, `config`
  static (see `make_update`).
  """
  key, k_obs, k_next = jax.random.split(state.key, 3)
  x, next_x = preprocess(batch.obs), preprocess(batch.next_obs)
  if config.data_augmentation:
    x = augment(k_obs, x, config.image_pad, config.intensity_scale)
    next_x = augment(k_next, next_x, config.image_pad, config.intensity_scale)
  target = td_target(network, state.params, state.target_params, next_x, batch.reward,
                     batch.terminal, config)
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, network, x, batch.action, target, config)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  sync = ((state.updates + 1) % config.target_update_period) == 0
  target_params = jax.tree.map(lambda p, t: jnp.where(sync, p, t), params,
                               state.target_params)
  new = DrQState(params=params, target_params=target_params, opt_state=opt_state, key=key,
                 updates=state.updates + 1)
  return new, {"loss": loss, "target": jnp.mean(target)}


def make_update(network: nn.Module, optimizer: optax.GradientTransformation,
                config: DrQConfig):
  """`jit(update)` with the static pieces bound; the state is donated."""
  return jax.jit(functools.partial(update, network=network, optimizer=optimizer,
                                   config=config), donate_argnums=(0,))


def select_action(network: nn.Module, params: Any, obs: jax.Array, key: jax.Array,
                  epsilon: jax.Array, num_actions: int) -> jax.Array:
  """ε-greedy over Q(obs): `[N, ...] → [N] int32` (with probability ε uniform)."""
  k_explore, k_random = jax.random.split(key)
  greedy = jnp.argmax(network.apply(params, preprocess(obs)), axis=-1)
  n = obs.shape[0]
  random = jax.random.randint(k_random, (n,), 0, num_actions)
  explore = jax.random.uniform(k_explore, (n,)) <= epsilon
  return jnp.where(explore, random, greedy).astype(jnp.int32)


def make_act(network: nn.Module, num_actions: int):
  """`jit(select_action)` with the network bound: (params, obs, key, epsilon) → actions."""
  return jax.jit(functools.partial(select_action, network, num_actions=num_actions))
