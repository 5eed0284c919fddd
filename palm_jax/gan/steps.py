"""The GAN training state and its one compiled training step (G phase, D phase, EMA, ADA).

One call of the step is one StyleGAN2-ADA "batch": NVIDIA's phases in order

  Gmain   Adam step on L_G                                  every step
  Greg    Adam step on the path-length penalty              every g_reg_interval (if on)
  Dmain   Adam step on L_D (fakes from G, no G gradient)    every step
  Dreg    Adam step on the R1 penalty                       every d_reg_interval
  G_ema   ema <- g + beta (ema - g),  beta = 0.5 ** (B / max(ema_nimg, 1e-8)),
          ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup)
  ADA     every ada_interval steps: p <- max(0, p + sign(E[sign D(real)] - target) * ...)

Each phase draws its own latents and fake labels (labels of random training images), reals
are drawn uniformly from the dataset held on the device (or, `streamed`, are the batch the
host streamed in for this step: `palm_jax/data/frame_stream.py`), and the batch is split over the
`data` mesh axis; parameters and optimiser state are replicated. The lazy regularisers sit
behind `lax.cond` on the step counter: one executable (one compilation) for every step,
and nothing leaves the device between log steps. Gradients with a NaN/Inf skip that Adam step
(`optax.apply_if_finite`, counted in the optimiser state); NVIDIA zeroes them instead.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.gan import augment as aug
from palm_jax.gan import loss as losses
from palm_jax.models.discriminator import Discriminator
from palm_jax.models.stylegan2 import Generator
from palm_jax.runtime import sharding
from palm_jax.runtime.sharding import DATA

# The names of the scalars every step reports (summed on the device between log steps).
STAT_NAMES = ("loss_g", "loss_d", "scores_real", "scores_fake", "loss_r1", "r1_penalty",
              "loss_pl", "pl_mean")


@flax.struct.dataclass
class GanState:
  """Everything a run needs to continue bit-for-bit (all arrays, replicated)."""
  step: jax.Array            # int32 []: batches done; cur_nimg = step * batch_size
  g_params: Any              # generator 'params' (float32)
  g_buffers: Any             # generator 'buffers' (w_avg, noise_const); shared with G_ema
  g_ema_params: Any          # EMA of g_params (what gets exported)
  d_params: Any              # discriminator params
  g_opt: Any                 # optimiser states
  d_opt: Any
  ada_p: jax.Array           # float32 []: augmentation probability
  ada_signs: jax.Array       # float32 [2]: sum of sign(D(real)) and count since the last
                             # ADA adjustment
  pl_mean: jax.Array         # float32 []: path-length moving average


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static (hashable) settings of the compiled step; one compilation per value."""
  generator: Generator
  discriminator: Discriminator
  batch_size: int
  lr: float = 0.0025
  beta2: float = 0.99
  eps: float = 1e-8
  g_reg_interval: int = 4
  d_reg_interval: int = 16
  r1_gamma: float = 0.01
  pl_weight: float = 0.0
  pl_decay: float = 0.01
  pl_batch_shrink: int = 2
  style_mixing: float = 0.0
  ema_kimg: float = 500.0
  ema_rampup: float | None = 0.05
  augment: aug.AugmentSpec | None = None   # None: no augmentation
  ada_target: float | None = 0.6           # None: p stays fixed
  ada_interval: int = 4
  ada_kimg: float = 500.0
  mirror: bool = False                      # x-flip reals with probability 1/2
  mesh: Mesh | None = None
  streamed: bool = False                    # `images` is this step's batch of reals


def make_optimizer(lr: float, beta2: float, eps: float, reg_interval: int | None
                   ) -> optax.GradientTransformation:
  """Adam(0, beta2) with NVIDIA's lazy-regularisation correction: with reg interval k,
  lr *= k/(k+1) and betas **= k/(k+1). Non-finite gradients skip the step."""
  ratio = 1.0 if not reg_interval else reg_interval / (reg_interval + 1)
  adam = optax.adam(lr * ratio, b1=0.0, b2=beta2 ** ratio, eps=eps)
  return optax.apply_if_finite(adam, max_consecutive_errors=2 ** 30)


def ema_beta(cur_nimg: jax.Array, batch_size: int, ema_kimg: float,
             ema_rampup: float | None) -> jax.Array:
  """`0.5 ** (batch / max(ema_nimg, 1e-8))`, `ema_nimg = min(ema_kimg*1000, nimg*rampup)`."""
  ema_nimg = jnp.asarray(ema_kimg * 1000.0, jnp.float32)
  if ema_rampup is not None:
    ema_nimg = jnp.minimum(ema_nimg, cur_nimg.astype(jnp.float32) * ema_rampup)
  return 0.5 ** (batch_size / jnp.maximum(ema_nimg, 1e-8))


def init_state(cfg: StepConfig, g_variables: dict, d_params: Any, *,
               augment_p: float = 0.0) -> GanState:
  """The state at step 0: G_ema = G, fresh optimisers."""
  g_params = g_variables["params"]
  return GanState(
      step=jnp.zeros((), jnp.int32), g_params=g_params,
      g_buffers=g_variables.get("buffers", {}),
      g_ema_params=jax.tree.map(jnp.array, g_params), d_params=d_params,
      g_opt=make_optimizer(cfg.lr, cfg.beta2, cfg.eps, cfg.g_reg_interval).init(g_params),
      d_opt=make_optimizer(cfg.lr, cfg.beta2, cfg.eps, cfg.d_reg_interval).init(d_params),
      ada_p=jnp.asarray(augment_p, jnp.float32), ada_signs=jnp.zeros((2,), jnp.float32),
      pl_mean=jnp.zeros((), jnp.float32))


def empty_stats() -> dict:
  """Device accumulators: per name a [sum, count] pair."""
  return {k: jnp.zeros((2,), jnp.float32) for k in STAT_NAMES}


def _shard(x: jax.Array, cfg: StepConfig) -> jax.Array:
  if cfg.mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(cfg.mesh, P(DATA)))


def _train_step(state: GanState, stats: dict, images: jax.Array, labels: jax.Array,
                root_key: jax.Array, *, cfg: StepConfig) -> tuple[GanState, dict]:
  """One batch (module doc). images uint8 [N, H, W, C], labels int32 [N] (all replicated)."""
  G, D, B = cfg.generator, cfg.discriminator, cfg.batch_size
  c_dim, z_dim = G.config.c_dim, G.config.z_dim
  keys = iter(jax.random.split(jax.random.fold_in(root_key, state.step), 16))
  n_data = images.shape[0]

  def labels_of(idx):
    if c_dim == 0:
      return jnp.zeros((idx.shape[0], 0), jnp.float32)
    return _shard(jax.nn.one_hot(labels[idx], c_dim, dtype=jnp.float32), cfg)

  def latents(n):
    z = jax.random.normal(next(keys), (n, z_dim), jnp.float32)
    c = labels_of(jax.random.randint(next(keys), (n,), 0, n_data))
    return _shard(z, cfg), c

  real_idx = jax.random.randint(next(keys), (B,), 0, n_data)
  if cfg.streamed:  # the host's shuffled stream already drew this step's B reals
    real_idx = jnp.arange(B)
  reals = _shard(images[real_idx].astype(jnp.float32) / 127.5 - 1.0, cfg)
  if cfg.mirror:
    flip = jax.random.bernoulli(next(keys), 0.5, (B, 1, 1, 1))
    reals = jnp.where(flip, reals[:, :, ::-1], reals)
  real_c = labels_of(real_idx)

  def map_g(params, buffers, z, c, key):
    """ws with w_avg tracking (and style mixing), -> (ws, new buffers)."""
    variables = {"params": params, "buffers": buffers}
    ws, new = G.apply(variables, z, c, update_w_avg=True, method="mapping",
                      mutable=["buffers"])
    if cfg.style_mixing > 0:
      k1, k2 = jax.random.split(key)
      ws2 = G.apply(variables, jax.random.normal(k1, z.shape), c, method="mapping")
      ws = losses.style_mix(k2, ws, ws2, cfg.style_mixing)
    return ws, new["buffers"]

  def synth_g(params, buffers, ws, key):
    return G.apply({"params": params, "buffers": buffers}, ws, "random",
                   method="synthesis", rngs={"noise": key})

  def run_g(params, buffers, z, c, key):
    k1, k2 = jax.random.split(key)
    ws, new_buffers = map_g(params, buffers, z, c, k1)
    return synth_g(params, buffers, ws, k2), new_buffers

  def run_d(params, img, c, key):
    if cfg.augment is not None:
      img = aug.augment(img, state.ada_p, key, cfg.augment)
    return D.apply({"params": params}, img, c)

  g_tx = make_optimizer(cfg.lr, cfg.beta2, cfg.eps, cfg.g_reg_interval)
  d_tx = make_optimizer(cfg.lr, cfg.beta2, cfg.eps, cfg.d_reg_interval)
  out = {}

  # Gmain.
  buffers = state.g_buffers
  z, c = latents(B)
  grads, (g_stats, buffers) = jax.grad(losses.g_main_loss, has_aux=True)(
      state.g_params, state.d_params,
      lambda p, z, c, k: run_g(p, buffers, z, c, k), run_d, z, c, next(keys))
  updates, g_opt = g_tx.update(grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  out.update(loss_g=g_stats["loss_g"], scores_fake=g_stats["scores_fake"])

  # Greg: path length on a batch shrunk by pl_batch_shrink, every g_reg_interval steps.
  pl_mean = state.pl_mean
  if cfg.pl_weight > 0 and cfg.g_reg_interval:
    n = max(B // cfg.pl_batch_shrink, 1)
    z, c = latents(n)
    k_pl = next(keys)

    def greg(operand):
      g_params, g_opt, buffers, pl_mean = operand
      grads, (pl_stats, new_buffers) = jax.grad(losses.g_pl_loss, has_aux=True)(
          g_params, lambda p, z, c, k: map_g(p, buffers, z, c, k),
          lambda p, ws, k: synth_g(p, buffers, ws, k), z, c, pl_mean, k_pl,
          decay=cfg.pl_decay, weight=cfg.pl_weight, interval=cfg.g_reg_interval)
      updates, g_opt = g_tx.update(grads, g_opt, g_params)
      return (optax.apply_updates(g_params, updates), g_opt, new_buffers,
              pl_stats["pl_mean"]), pl_stats["loss_pl"]

    do_greg = state.step % cfg.g_reg_interval == 0
    (g_params, g_opt, buffers, pl_mean), loss_pl = jax.lax.cond(
        do_greg, greg, lambda operand: (operand, jnp.zeros((), jnp.float32)),
        (g_params, g_opt, buffers, pl_mean))
    out.update(loss_pl=(loss_pl, do_greg), pl_mean=(pl_mean, do_greg))

  # Dmain: fakes from the updated G (as NVIDIA, whose G step precedes the D phase).
  z, c = latents(B)
  fakes, buffers = run_g(g_params, buffers, z, c, next(keys))
  grads, d_stats = jax.grad(losses.d_main_loss, has_aux=True)(
      state.d_params, run_d, reals, real_c, fakes, c, next(keys))
  updates, d_opt = d_tx.update(grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)
  signs = state.ada_signs + jnp.stack([jnp.sum(d_stats["signs_real"]), B])
  out.update(loss_d=d_stats["loss_d"], scores_real=d_stats["scores_real"])

  # Dreg: lazy R1 on the same reals, every d_reg_interval steps.
  if cfg.r1_gamma > 0 and cfg.d_reg_interval:
    k_r1 = next(keys)

    def dreg(operand):
      d_params, d_opt, signs = operand
      grads, r1_stats = jax.grad(losses.d_r1_loss, has_aux=True)(
          d_params, run_d, reals, real_c, k_r1, gamma=cfg.r1_gamma,
          interval=cfg.d_reg_interval)
      updates, d_opt = d_tx.update(grads, d_opt, d_params)
      signs = signs + jnp.stack([jnp.sum(r1_stats["signs_real"]), B])
      return ((optax.apply_updates(d_params, updates), d_opt, signs),
              (r1_stats["loss_r1"], r1_stats["r1_penalty"]))

    zero = jnp.zeros((), jnp.float32)
    do_dreg = state.step % cfg.d_reg_interval == 0
    (d_params, d_opt, signs), (loss_r1, r1_pen) = jax.lax.cond(
        do_dreg, dreg, lambda operand: (operand, (zero, zero)), (d_params, d_opt, signs))
    out.update(loss_r1=(loss_r1, do_dreg), r1_penalty=(r1_pen, do_dreg))

  # G_ema (buffers are shared: NVIDIA copies them into G_ema).
  beta = ema_beta(state.step * B, B, cfg.ema_kimg, cfg.ema_rampup)
  g_ema = jax.tree.map(lambda g, e: g + beta * (e - g), g_params, state.g_ema_params)

  # ADA.
  step = state.step + 1
  ada_p = state.ada_p
  if cfg.augment is not None and cfg.ada_target is not None:
    adjust = step % cfg.ada_interval == 0
    new_p = aug.ada_adjust(ada_p, signs[0] / jnp.maximum(signs[1], 1), target=cfg.ada_target,
                           batch_size=B, interval=cfg.ada_interval, ada_kimg=cfg.ada_kimg)
    ada_p = jnp.where(adjust, new_p, ada_p)
    signs = jnp.where(adjust, jnp.zeros_like(signs), signs)

  def counted(value):   # (value, counts?) or value (always counted)
    value, n = value if isinstance(value, tuple) else (value, True)
    n = jnp.asarray(n, jnp.float32)
    return jnp.stack([value.astype(jnp.float32) * n, n])
  stats = {k: v + counted(out[k]) if k in out else v for k, v in stats.items()}
  new_state = GanState(step=step, g_params=g_params, g_buffers=buffers, g_ema_params=g_ema,
                       d_params=d_params, g_opt=g_opt, d_opt=d_opt, ada_p=ada_p,
                       ada_signs=signs, pl_mean=pl_mean)
  return new_state, stats


@functools.lru_cache(maxsize=None)
def compiled_step(cfg: StepConfig):
  """`step(state, stats, images, labels, key) -> (state, stats)`, jitted once per config
  and shared by every run in the process; state and stats are donated. In multi-process
  runs every process starts it together (`sharding.start_together`: gloo's 30 s connect)."""
  return sharding.start_together(
      jax.jit(functools.partial(_train_step, cfg=cfg), donate_argnums=(0, 1)), "gan_step")


def nonfinite_count(opt_state: Any) -> jax.Array:
  """Total Adam steps skipped for non-finite gradients (from `apply_if_finite`)."""
  return opt_state.total_notfinite
