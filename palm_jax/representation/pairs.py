"""Where SimSiam's positive pairs come from (a config switch, for the paper's ablations).

  temporal      (s_t, s_{t+1}) of one trajectory, read from the replay (PALM itself)
  same_class    two independent generator draws of the sampled transition's class
  perturbation  G(z, c) and G(z + sigma * n, c): a latent and its Gaussian perturbation
                (Jahanian et al.'s "Generative models as a data source" pairs)
  real          two real training images of the sampled transition's class

All sources return uint8 `[B, H, W, C]` pairs so the encoder sees one image format.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from palm_jax.runtime.errors import require

PAIR_SOURCES = ("temporal", "same_class", "perturbation", "real")


@struct.dataclass
class RealBank:
  """Real images grouped by class: class k is `images[start[k] : start[k] + count[k]]`."""
  images: jax.Array  # uint8 [M, H, W, C], sorted by class
  start: jax.Array   # int32 [K]
  count: jax.Array   # int32 [K]


def make_real_bank(images: np.ndarray, labels: np.ndarray, num_classes: int) -> RealBank:
  """Sorts a labelled dataset by class (host side) for same-class sampling."""
  require(labels is not None, "simsiam.real_data must be a labelled dataset (real "
                              "same-class pairs need labels); use an npz or tfds spec.")
  labels = np.asarray(labels).astype(np.int64)
  count = np.bincount(labels, minlength=num_classes)[:num_classes]
  missing = np.flatnonzero(count == 0)
  require(missing.size == 0, f"simsiam.real_data has no images of class(es) "
                             f"{missing[:10].tolist()}; real pairs need every class of the "
                             "generator, so use a dataset covering all of them.")
  order = np.argsort(labels, kind="stable")
  start = np.concatenate([[0], np.cumsum(count)[:-1]])
  return RealBank(images=np.asarray(images)[order], start=start.astype(np.int32),
                  count=count.astype(np.int32))


def real_pairs(key, bank: RealBank, labels) -> tuple[jax.Array, jax.Array]:
  """Two uniformly drawn real images of each class in `labels [B]` (possibly the same)."""
  k1, k2 = jax.random.split(key)
  count = bank.count[labels]
  pick = lambda k: bank.start[labels] + jnp.floor(
      jax.random.uniform(k, labels.shape) * count).astype(jnp.int32)
  return bank.images[pick(k1)], bank.images[pick(k2)]


def generated_pairs(key, source: str, env, gen_vars, env_params, labels, perturb_std: float):
  """Pairs rendered by the generator for `labels [B]` (same_class or perturbation)."""
  k1, k2, k_render = jax.random.split(key, 3)
  z1 = jax.random.normal(k1, (labels.shape[0], env.z_dim), jnp.float32)
  noise = jax.random.normal(k2, z1.shape, jnp.float32)
  z2 = noise if source == "same_class" else z1 + perturb_std * noise
  r1, r2 = jax.random.split(k_render)
  return (env.render_z(gen_vars, z1, labels, env_params, r1),
          env.render_z(gen_vars, z2, labels, env_params, r2))
