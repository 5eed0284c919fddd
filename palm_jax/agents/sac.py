"""Soft Actor-Critic (Haarnoja et al., 2018): tanh-Gaussian actor, twin critics, learned α.

Generic over environments: observations are any `[B, obs_dim]` float vectors (the PALM loop
feeds detached 512-d encoder features; the tests feed Pendulum states) and actions lie in
`[-action_scale, action_scale]^action_dim`. Feature computation stays outside this module.

Everything is a pure, jittable function of an explicit `SACState` (brax-style): no Python-side
state, no host callbacks, so `update` can run inside `lax.scan` under `jax.jit` with the batch
sharded over a `("data",)` mesh and parameters replicated; every loss is a mean over the batch,
so XLA all-reduces the gradients. The hyper-parameters ride in the state as static metadata,
which is why `update(state, batch, key)` needs no config argument.

Maths (α = exp(log α), a' ~ π(·|s'), ã ~ π(·|s), θ̄ the target critic parameters):

    y        = reward_scale·r + γ·d·(min_i Q_θ̄i(s', a') − α·log π(a'|s'))     (no gradient)
    L_Q      = Σ_i mean_B ½(Q_θi(s, a) − y)²
    L_π      = mean_B (α·log π(ã|s) − min_i Q_θi(s, ã))
    L_α      = mean_B −α·(log π(ã|s) + H̄)       (H̄ = target entropy, default −action_dim)
    θ̄        ← τ·θ + (1 − τ)·θ̄

`d` is the γ-free bootstrap mask: 0 at a true termination, 1 otherwise (also at time-limit
truncations). One `update` does, in order: critic step, actor step (against the new critics),
temperature step (with the actor step's log-probabilities), Polyak average of the targets.
"""
import dataclasses
import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from palm_jax.runtime.errors import require

Params = Any
Metrics = Dict[str, jax.Array]


# ----------------------------------------------------------------------------- config/state


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """SAC hyper-parameters (batch-size independent). Hashable: it rides in `SACState` as
  static metadata.

  Attributes:
    actor_hidden: hidden widths of the actor MLP.
    critic_hidden: hidden widths of each critic MLP.
    num_critics: size of the critic ensemble (2 = twin critics; the target takes the min).
    actor_lr, critic_lr, alpha_lr: Adam learning rates.
    gamma: discount γ in [0, 1].
    tau: Polyak rate τ in (0, 1] for the target critics (1 = hard copy every update).
    init_alpha: initial temperature α > 0.
    learn_alpha: learn α towards `target_entropy`; False keeps α = init_alpha.
    target_entropy: H̄; None means −action_dim.
    log_std_min, log_std_max: the actor's log σ is clipped into this range.
    action_scale: actions are `action_scale · tanh(x)`, so they lie in [−scale, scale].
    reward_scale: multiplies rewards inside the critic target.
    max_grad_norm: optional global-norm gradient clipping for all three optimisers.
    dtype: compute precision of the MLPs (e.g. jnp.bfloat16 on accelerators); parameters,
      losses and log-probabilities stay float32.
  """
  actor_hidden: Tuple[int, ...] = (256, 256)
  critic_hidden: Tuple[int, ...] = (256, 256)
  num_critics: int = 2
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  alpha_lr: float = 3e-4
  gamma: float = 0.99
  tau: float = 0.005
  init_alpha: float = 1.0
  learn_alpha: bool = True
  target_entropy: Optional[float] = None
  log_std_min: float = -5.0
  log_std_max: float = 2.0
  action_scale: float = 1.0
  reward_scale: float = 1.0
  max_grad_norm: Optional[float] = None
  dtype: Any = jnp.float32


@struct.dataclass
class Transition:
  """A batch of transitions. `discount` is the γ-free mask (0 at termination, else 1)."""
  obs: jax.Array       # [B, obs_dim]
  action: jax.Array    # [B, action_dim]
  reward: jax.Array    # [B]
  next_obs: jax.Array  # [B, obs_dim]
  discount: jax.Array  # [B]


@struct.dataclass
class SACState:
  """Everything SAC learns, plus its (static) hyper-parameters and sizes."""
  actor_params: Params
  critic_params: Params
  target_critic_params: Params
  log_alpha: jax.Array          # [] float32
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  alpha_opt_state: optax.OptState
  step: jax.Array               # [] int32, number of `update` calls so far
  config: SACConfig = struct.field(pytree_node=False)
  obs_dim: int = struct.field(pytree_node=False)
  action_dim: int = struct.field(pytree_node=False)

  @property
  def alpha(self) -> jax.Array:
    return jnp.exp(self.log_alpha)

  @property
  def target_entropy(self) -> float:
    return target_entropy(self.config, self.action_dim)


def target_entropy(config: SACConfig, action_dim: int) -> float:
  """H̄ = config.target_entropy, or −action_dim when unset."""
  return -float(action_dim) if config.target_entropy is None else float(config.target_entropy)


# ----------------------------------------------------------------------------- networks


class MLP(nn.Module):
  """ReLU MLP: `[..., in] → [..., out_dim]`, computing in `dtype`, parameters float32."""
  hidden: Sequence[int]
  out_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype)(x))
    return nn.Dense(self.out_dim, dtype=self.dtype, param_dtype=self.param_dtype)(x)


class Actor(nn.Module):
  """Gaussian head before the tanh: obs [B, D] → (mean [B, A], log_std [B, A]), float32.

  log σ is clipped into [log_std_min, log_std_max] (outside it the gradient is zero, which
  keeps σ from collapsing or exploding).
  """
  hidden: Sequence[int]
  action_dim: int
  log_std_min: float = -5.0
  log_std_max: float = 2.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
    out = MLP(self.hidden, 2 * self.action_dim, self.dtype, self.param_dtype)(obs)
    mean, log_std = jnp.split(out.astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


class Critic(nn.Module):
  """An ensemble of Q-functions in one module: (obs [B, D], action [B, A]) → q [E, B].

  The members are one MLP vmapped over a leading ensemble axis of the parameters (each
  member initialised independently), so the twin critics cost one batched matmul per layer.
  """
  hidden: Sequence[int]
  num_critics: int = 2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs.astype(jnp.float32), action.astype(jnp.float32)], axis=-1)
    ensemble = nn.vmap(
        MLP, variable_axes={"params": 0}, split_rngs={"params": True},
        in_axes=None, out_axes=0, axis_size=self.num_critics)
    q = ensemble(self.hidden, 1, self.dtype, self.param_dtype)(x)  # [E, B, 1]
    return q[..., 0].astype(jnp.float32)


def _actor(config: SACConfig, action_dim: int) -> Actor:
  return Actor(config.actor_hidden, action_dim, config.log_std_min, config.log_std_max,
               dtype=config.dtype)


def _critic(config: SACConfig) -> Critic:
  return Critic(config.critic_hidden, config.num_critics, dtype=config.dtype)


def _optimizer(lr: float, max_grad_norm: Optional[float]) -> optax.GradientTransformation:
  adam = optax.adam(lr)
  if max_grad_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


# ----------------------------------------------------------------------------- distribution


def tanh_log_det_jacobian(x: jax.Array) -> jax.Array:
  """Elementwise log(1 − tanh(x)²) in the stable form 2·(log 2 − x − softplus(−2x))."""
  return 2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x))


def tanh_gaussian_log_prob(
    pre_tanh: jax.Array, mean: jax.Array, log_std: jax.Array, scale: float = 1.0,
) -> jax.Array:
  """log-density of a = scale·tanh(x), x ~ N(mean, σ²), evaluated at x = `pre_tanh`.

  By change of variables, summed over the action dimension (inputs [..., A], output [...]):

      log π(a) = Σ_j [log N(x_j; μ_j, σ_j) − log(1 − tanh(x_j)²) − log scale]

  Working from x rather than a avoids atanh of saturated actions.
  """
  z = (pre_tanh - mean) * jnp.exp(-log_std)
  normal = -0.5 * z ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
  per_dim = normal - tanh_log_det_jacobian(pre_tanh) - jnp.log(scale)
  return jnp.sum(per_dim, axis=-1)


def sample_tanh_gaussian(
    key: jax.Array, mean: jax.Array, log_std: jax.Array, scale: float = 1.0,
) -> Tuple[jax.Array, jax.Array]:
  """Reparameterised sample a = scale·tanh(μ + σ·ε), ε ~ N(0, I); returns (a [B, A], log π(a) [B]).

  Differentiable in `mean` and `log_std` (the pathwise gradient SAC's actor loss needs).
  """
  eps = jax.random.normal(key, mean.shape, jnp.float32)
  x = mean + jnp.exp(log_std) * eps
  return scale * jnp.tanh(x), tanh_gaussian_log_prob(x, mean, log_std, scale)


# ----------------------------------------------------------------------------- public API


def init(key: jax.Array, obs_dim: int, action_dim: int,
         config: SACConfig = SACConfig()) -> SACState:
  """Builds fresh parameters and optimiser states; targets start equal to the critics.

  Config values are checked here, before anything is compiled; mistakes raise `UserError`.
  """
  _check(obs_dim, action_dim, config)
  config = dataclasses.replace(
      config, actor_hidden=tuple(int(w) for w in config.actor_hidden),
      critic_hidden=tuple(int(w) for w in config.critic_hidden))
  return _init(key, int(obs_dim), int(action_dim), config)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init(key: jax.Array, obs_dim: int, action_dim: int, config: SACConfig) -> SACState:
  # Jitted: initialising op by op would compile dozens of tiny kernels (seconds on CPU).
  actor_key, critic_key = jax.random.split(key)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  act = jnp.zeros((1, action_dim), jnp.float32)
  actor_params = _actor(config, action_dim).init(actor_key, obs)["params"]
  critic_params = _critic(config).init(critic_key, obs, act)["params"]
  log_alpha = jnp.asarray(np.log(config.init_alpha), jnp.float32)
  return SACState(
      actor_params=actor_params,
      critic_params=critic_params,
      target_critic_params=jax.tree.map(jnp.copy, critic_params),
      log_alpha=log_alpha,
      actor_opt_state=_optimizer(config.actor_lr, config.max_grad_norm).init(actor_params),
      critic_opt_state=_optimizer(config.critic_lr, config.max_grad_norm).init(critic_params),
      alpha_opt_state=_optimizer(config.alpha_lr, config.max_grad_norm).init(log_alpha),
      step=jnp.zeros((), jnp.int32),
      config=config, obs_dim=obs_dim, action_dim=action_dim)


def policy(state: SACState, actor_params: Params, obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """The actor's Gaussian before the tanh: obs [B, D] → (mean [B, A], log_std [B, A])."""
  return _actor(state.config, state.action_dim).apply({"params": actor_params}, obs)


def q_values(state: SACState, critic_params: Params, obs: jax.Array,
             action: jax.Array) -> jax.Array:
  """All ensemble members' Q(s, a): obs [B, D], action [B, A] → [num_critics, B]."""
  return _critic(state.config).apply({"params": critic_params}, obs, action)


def act(state: SACState, obs: jax.Array, key: jax.Array,
        deterministic: bool = False) -> jax.Array:
  """Actions for a batch of observations: obs [B, D] → action [B, A] in [−scale, scale].

  Stochastic: scale·tanh(μ + σ·ε); deterministic (evaluation): scale·tanh(μ). `deterministic`
  is a Python bool (static under jit).
  """
  chex.assert_rank(obs, 2)
  chex.assert_axis_dimension(obs, 1, state.obs_dim)
  mean, log_std = policy(state, state.actor_params, obs)
  if deterministic:
    action = state.config.action_scale * jnp.tanh(mean)
  else:
    action, _ = sample_tanh_gaussian(key, mean, log_std, state.config.action_scale)
  chex.assert_shape(action, (obs.shape[0], state.action_dim))
  return action


def random_act(state: SACState, key: jax.Array, batch_size: int) -> jax.Array:
  """Uniform actions in [−scale, scale]^A (for warm-up): [batch_size, A]."""
  scale = state.config.action_scale
  return jax.random.uniform(key, (batch_size, state.action_dim), jnp.float32, -scale, scale)


def critic_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array,
                  next_log_prob: jax.Array, alpha: jax.Array, gamma: float,
                  reward_scale: float = 1.0) -> jax.Array:
  """y = reward_scale·r + γ·d·(min_i Q̄_i(s', a') − α·log π(a'|s')).

  Args: reward [B], discount d [B] (γ-free mask), next_q [E, B] target-critic values at
  a' ~ π(·|s'), next_log_prob [B], alpha [], gamma float. Returns y [B] (not stop-gradded;
  callers do that).
  """
  soft_value = jnp.min(next_q, axis=0) - alpha * next_log_prob
  return reward_scale * reward + gamma * discount * soft_value


def polyak_update(target: Params, online: Params, tau: float) -> Params:
  """θ̄ ← τ·θ + (1 − τ)·θ̄, leafwise."""
  return jax.tree.map(lambda t, o: (tau * o + (1.0 - tau) * t).astype(t.dtype), target, online)


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, target_ent: float) -> jax.Array:
  """L(log α) = mean_B −α·(log π + H̄), log π treated as constant.

  ∂L/∂log α = −α·mean(log π + H̄): when the policy's entropy −log π falls below H̄ the
  gradient is negative and descent raises α, and vice versa.
  """
  return -jnp.exp(log_alpha) * jnp.mean(jax.lax.stop_gradient(log_prob) + target_ent)


def critic_loss(state: SACState, critic_params: Params, batch: Transition,
                key: jax.Array) -> Tuple[jax.Array, Metrics]:
  """L_Q = Σ_i mean_B ½(Q_i(s, a) − sg(y))², y from `critic_target` with a' ~ π(·|s')."""
  cfg = state.config
  mean, log_std = policy(state, state.actor_params, batch.next_obs)
  next_action, next_log_prob = sample_tanh_gaussian(key, mean, log_std, cfg.action_scale)
  next_q = q_values(state, state.target_critic_params, batch.next_obs, next_action)
  y = critic_target(batch.reward.astype(jnp.float32), batch.discount.astype(jnp.float32),
                    next_q, next_log_prob, state.alpha, cfg.gamma, cfg.reward_scale)
  y = jax.lax.stop_gradient(y)
  q = q_values(state, critic_params, batch.obs, batch.action)  # [E, B]
  loss = jnp.sum(jnp.mean(0.5 * (q - y[None]) ** 2, axis=1))
  return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "target_q_mean": jnp.mean(y)}


def actor_loss(state: SACState, actor_params: Params, obs: jax.Array,
               key: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """L_π = mean_B (α·log π(ã|s) − min_i Q_i(s, ã)), ã reparameterised. Returns (loss, log π [B])."""
  mean, log_std = policy(state, actor_params, obs)
  action, log_prob = sample_tanh_gaussian(key, mean, log_std, state.config.action_scale)
  q = q_values(state, state.critic_params, obs, action)
  loss = jnp.mean(jax.lax.stop_gradient(state.alpha) * log_prob - jnp.min(q, axis=0))
  return loss, log_prob


def update_critic(state: SACState, batch: Transition, key: jax.Array) -> Tuple[SACState, Metrics]:
  """One Adam step on the critics (targets untouched)."""
  cfg = state.config
  (_, metrics), grads = jax.value_and_grad(
      lambda p: critic_loss(state, p, batch, key), has_aux=True)(state.critic_params)
  updates, opt_state = _optimizer(cfg.critic_lr, cfg.max_grad_norm).update(
      grads, state.critic_opt_state, state.critic_params)
  params = optax.apply_updates(state.critic_params, updates)
  return state.replace(critic_params=params, critic_opt_state=opt_state), metrics


def update_actor_and_alpha(state: SACState, obs: jax.Array,
                           key: jax.Array) -> Tuple[SACState, Metrics]:
  """One Adam step on the actor, then one on log α with that step's log-probabilities."""
  cfg = state.config
  (loss, log_prob), grads = jax.value_and_grad(
      lambda p: actor_loss(state, p, obs, key), has_aux=True)(state.actor_params)
  updates, actor_opt_state = _optimizer(cfg.actor_lr, cfg.max_grad_norm).update(
      grads, state.actor_opt_state, state.actor_params)
  actor_params = optax.apply_updates(state.actor_params, updates)
  h_bar = state.target_entropy
  a_loss, a_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, log_prob, h_bar)
  if cfg.learn_alpha:
    a_updates, alpha_opt_state = _optimizer(cfg.alpha_lr, cfg.max_grad_norm).update(
        a_grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, a_updates)
  else:
    alpha_opt_state, log_alpha = state.alpha_opt_state, state.log_alpha
  state = state.replace(actor_params=actor_params, actor_opt_state=actor_opt_state,
                        log_alpha=log_alpha, alpha_opt_state=alpha_opt_state)
  return state, {"actor_loss": loss, "alpha_loss": a_loss, "alpha": jnp.exp(log_alpha),
                 "entropy": -jnp.mean(log_prob)}


def update(state: SACState, batch: Transition, key: jax.Array) -> Tuple[SACState, Metrics]:
  """One SAC update: critic step, actor step, temperature step, Polyak targets.

  Args:
    state: current `SACState`.
    batch: `Transition` with obs [B, D], action [B, A], reward [B], next_obs [B, D],
      discount [B]; B may be sharded over devices (every loss is a batch mean).
    key: fresh PRNG key for this update.

  Returns:
    (new state, metrics) with scalar float32 metrics `critic_loss`, `actor_loss`,
    `alpha_loss`, `alpha` (after the step), `entropy` (−mean log π of fresh samples),
    `q_mean` (mean online Q of the batch actions), `target_q_mean` (mean y).
  """
  b = batch.obs.shape[0]
  chex.assert_shape([batch.obs, batch.next_obs], (b, state.obs_dim))
  chex.assert_shape(batch.action, (b, state.action_dim))
  chex.assert_shape([batch.reward, batch.discount], (b,))
  critic_key, actor_key = jax.random.split(key)
  state, critic_metrics = update_critic(state, batch, critic_key)
  state, actor_metrics = update_actor_and_alpha(state, batch.obs, actor_key)
  state = state.replace(
      target_critic_params=polyak_update(
          state.target_critic_params, state.critic_params, state.config.tau),
      step=state.step + 1)
  return state, {**critic_metrics, **actor_metrics}


# ----------------------------------------------------------------------------- checks


def _check(obs_dim: int, action_dim: int, c: SACConfig) -> None:
  """User-facing validation, one sentence per mistake."""
  require(int(obs_dim) > 0, f"SAC obs_dim must be positive, got {obs_dim}.")
  require(int(action_dim) > 0, f"SAC action_dim must be positive, got {action_dim}.")
  for name in ("actor_hidden", "critic_hidden"):
    widths = getattr(c, name)
    require(all(int(w) > 0 for w in widths),
            f"SAC {name} must be a tuple of positive widths, got {widths!r}.")
  require(c.num_critics >= 1, f"SAC num_critics must be at least 1, got {c.num_critics}.")
  for name in ("actor_lr", "critic_lr", "alpha_lr"):
    require(getattr(c, name) > 0, f"SAC {name} must be positive, got {getattr(c, name)}.")
  require(0.0 <= c.gamma <= 1.0, f"SAC gamma must lie in [0, 1], got {c.gamma}.")
  require(0.0 < c.tau <= 1.0, f"SAC tau must lie in (0, 1], got {c.tau}.")
  require(c.init_alpha > 0, f"SAC init_alpha must be positive, got {c.init_alpha}.")
  require(c.log_std_min < c.log_std_max,
          f"SAC log_std_min ({c.log_std_min}) must be below log_std_max ({c.log_std_max}).")
  require(c.action_scale > 0, f"SAC action_scale must be positive, got {c.action_scale}.")
  require(c.max_grad_norm is None or c.max_grad_norm > 0,
          f"SAC max_grad_norm must be positive or None, got {c.max_grad_norm}.")
