"""StyleGAN2 losses (NVIDIA's `training/loss.py` `StyleGAN2Loss`), as pure functions.

With logits `l = D(augment(x), c)`:

  G main   L_G  = mean softplus(-l(G(z)))                       (non-saturating logistic)
  D main   L_D  = mean softplus(l(G(z))) + mean softplus(-l(x))
  D reg    L_R1 = interval * gamma/2 * mean_i ||d sum(l) / d x_i||^2   on reals (lazy R1)
  G reg    L_pl = interval * pl_weight * mean_i (|J_i^T y_i| - a)^2    (path length)
           with y ~ N(0, I) / sqrt(H W), J = d img / d ws, |.| = sqrt(mean_ws sum_w (.)^2),
           a <- a + pl_decay * (mean_i |J_i^T y_i| - a)

The regularisers run every `interval` steps as their own optimiser steps (lazy
regularisation); multiplying them by `interval` keeps their average strength.
Networks enter as callables so the same code trains any generator/discriminator pair:
`run_g(params, z, c, key) -> (img [N, H, W, C], extras)` (extras: e.g. updated buffers),
`run_d(params, img, c, key) -> logits [N]` (augmenting inside), and for the path-length
term `map_g(params, z, c, key) -> (ws [N, L, W], extras)`, `synth_g(params, ws, key) -> img`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

RunG = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]
RunD = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def g_nonsaturating(fake_logits: jax.Array) -> jax.Array:
  """`mean softplus(-l_fake)` = `-mean log sigmoid(l_fake)`; logits [N] -> scalar."""
  return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def d_logistic(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """`mean softplus(l_fake) + mean softplus(-l_real)`; logits [N] each -> scalar."""
  return (jnp.mean(jax.nn.softplus(fake_logits.astype(jnp.float32)))
          + jnp.mean(jax.nn.softplus(-real_logits.astype(jnp.float32))))


def r1_penalty(d_of_x: Callable[[jax.Array], jax.Array], reals: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """`(||d sum(D(x)) / d x_i||^2 per sample [N], logits [N])` for reals [N, H, W, C]."""
  logits, vjp = jax.vjp(d_of_x, reals)
  (grads,) = vjp(jnp.ones_like(logits))
  penalty = jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, reals.ndim)))
  return penalty, logits


def style_mix(key: jax.Array, ws: jax.Array, ws2: jax.Array, prob: float) -> jax.Array:
  """With probability `prob` (one draw per batch, as NVIDIA), layers `>= cutoff` of
  ws [N, L, W] take ws2's, cutoff ~ U{1, ..., L-1}; otherwise ws unchanged."""
  k1, k2 = jax.random.split(key)
  num_ws = ws.shape[1]
  cutoff = jax.random.randint(k1, (), 1, num_ws)
  cutoff = jnp.where(jax.random.uniform(k2) < prob, cutoff, num_ws)
  mask = (jnp.arange(num_ws) >= cutoff)[None, :, None]
  return jnp.where(mask, ws2, ws)


def path_lengths(synth: Callable[[jax.Array], jax.Array], ws: jax.Array, key: jax.Array
                 ) -> jax.Array:
  """`|J^T y|` per sample [N]: y ~ N(0,1)/sqrt(H*W) like the image, J = d synth(ws) / d ws,
  the norm being `sqrt(mean over layers of sum over w_dim of (J^T y)^2)`."""
  img, vjp = jax.vjp(synth, ws)
  noise = jax.random.normal(key, img.shape, jnp.float32) / np.sqrt(img.shape[1] * img.shape[2])
  (grads,) = vjp(noise.astype(img.dtype))
  return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=2), axis=1))


def pl_loss(lengths: jax.Array, pl_mean: jax.Array, *, decay: float, weight: float,
            interval: int) -> tuple[jax.Array, jax.Array]:
  """`(loss, new_pl_mean)`: a' = a + decay (mean(lengths) - a) (no gradient through a'),
  loss = interval * weight * mean (lengths - a')^2."""
  new_mean = jax.lax.stop_gradient(pl_mean + decay * (jnp.mean(lengths) - pl_mean))
  return interval * weight * jnp.mean(jnp.square(lengths - new_mean)), new_mean


def g_main_loss(g_params: Any, d_params: Any, run_g: RunG, run_d: RunD, z: jax.Array,
                c: jax.Array, key: jax.Array) -> tuple[jax.Array, tuple[dict, Any]]:
  """G main phase: generate from (z [N, z_dim], c [N, c_dim]), L_G on D's logits.

  Returns `(loss, (stats, extras of run_g))`.
  """
  kg, kd = jax.random.split(key)
  img, extras = run_g(g_params, z, c, kg)
  logits = run_d(d_params, img, c, kd)
  loss = g_nonsaturating(logits)
  return loss, ({"loss_g": loss, "scores_fake": jnp.mean(logits.astype(jnp.float32))}, extras)


def g_pl_loss(g_params: Any, map_g: Callable, synth_g: Callable, z: jax.Array, c: jax.Array,
              pl_mean: jax.Array, key: jax.Array, *, decay: float, weight: float,
              interval: int) -> tuple[jax.Array, tuple[dict, Any]]:
  """G reg phase: path-length penalty on (z, c) (NVIDIA shrinks the batch by 2 first).

  ws come from `map_g` inside the loss, so the penalty trains the mapping network too.
  Returns `(loss, (stats incl. the new pl_mean, extras of map_g))`.
  """
  km, ks, kn = jax.random.split(key, 3)
  ws, extras = map_g(g_params, z, c, km)
  lengths = path_lengths(lambda w: synth_g(g_params, w, ks), ws, kn)
  loss, new_mean = pl_loss(lengths, pl_mean, decay=decay, weight=weight, interval=interval)
  return loss, ({"loss_pl": loss, "pl_mean": new_mean}, extras)


def d_main_loss(d_params: Any, run_d: RunD, real: jax.Array, real_c: jax.Array,
                fake: jax.Array, fake_c: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
  """D main phase: L_D on reals [N, H, W, C] and (already generated, constant) fakes."""
  kr, kf = jax.random.split(key)
  fake_logits = run_d(d_params, jax.lax.stop_gradient(fake), fake_c, kf)
  real_logits = run_d(d_params, real, real_c, kr)
  loss = d_logistic(real_logits, fake_logits)
  real_logits = real_logits.astype(jnp.float32)
  return loss, {"loss_d": loss, "scores_real": jnp.mean(real_logits),
                "scores_fake": jnp.mean(fake_logits.astype(jnp.float32)),
                "signs_real": jnp.sign(real_logits)}


def d_r1_loss(d_params: Any, run_d: RunD, real: jax.Array, real_c: jax.Array,
              key: jax.Array, *, gamma: float, interval: int) -> tuple[jax.Array, dict]:
  """D reg phase: `interval * gamma/2 * mean R1 penalty` on reals (through augmentation)."""
  penalty, logits = r1_penalty(lambda x: run_d(d_params, x, real_c, key), real)
  loss = interval * (gamma / 2) * jnp.mean(penalty)
  return loss, {"loss_r1": loss, "r1_penalty": jnp.mean(penalty),
                "signs_real": jnp.sign(logits.astype(jnp.float32))}
