"""MLP heads: a plain MLP, and SimSiam's projector and predictor.

SimSiam (Chen & He 2021, `simsiam/builder.py`; CIFAR setting of the paper, Sec. B):
  projector  g:  Linear(no bias) → BN → ReLU  [× (num_layers - 1)]  → Linear(no bias) → BN
                 (the last BN has no affine parameters); 2 layers of 2048 for CIFAR.
  predictor  h:  Linear(no bias) → BN → ReLU → Linear(with bias); 2048 → 512 → 2048.
Linear layers feeding a BN have no bias (the BN's shift replaces it). BN momentum 0.9 in
Flax's convention (PyTorch's 0.1), statistics in the `batch_stats` collection.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)).
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class MLP(nn.Module):
  """`[..., D] → [..., features[-1]]`: Dense layers with `activation` between them.

  `x_{l+1} = act(W_l x_l + b_l)`; the last layer is linear unless `activate_final`.
  """
  features: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  activate_final: bool = False
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, f in enumerate(self.features):
      x = nn.Dense(f, kernel_init=self.kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=f"dense{i}")(x)
      if i < len(self.features) - 1 or self.activate_final:
        x = self.activation(x)
    return x


class _DenseBN(nn.Module):
  """Dense (no bias) then BatchNorm over the batch axis: `[B, D] → [B, features]`."""
  features: int
  affine: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Dense(self.features, use_bias=False, kernel_init=dense_init, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="dense")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_scale=self.affine, use_bias=self.affine, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="bn")(x)


class Projector(nn.Module):
  """SimSiam's projection MLP `g`: `[B, D] → [B, out_dim]`, ending in a non-affine BN.

  `num_layers` Dense+BN layers; hidden ones are `hidden_dim` wide and followed by ReLU.
  """
  hidden_dim: int = 2048
  out_dim: int = 2048
  num_layers: int = 2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    batch = x.shape[0]
    for i in range(self.num_layers - 1):
      x = _DenseBN(self.hidden_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                   name=f"layer{i}")(x, train)
      x = nn.relu(x)
    x = _DenseBN(self.out_dim, affine=False, dtype=self.dtype, param_dtype=self.param_dtype,
                 name=f"layer{self.num_layers - 1}")(x, train)
    chex.assert_shape(x, (batch, self.out_dim))
    return x


class Predictor(nn.Module):
  """SimSiam's prediction MLP `h`: `[B, D] → [B, out_dim]`, a bottleneck of `hidden_dim`.

  `p = W2 relu(BN(W1 z)) + b2` (no BN on the output).
  """
  hidden_dim: int = 512
  out_dim: int = 2048
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    batch = x.shape[0]
    x = nn.relu(_DenseBN(self.hidden_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="layer0")(x, train))
    x = nn.Dense(self.out_dim, kernel_init=dense_init, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="layer1")(x)
    chex.assert_shape(x, (batch, self.out_dim))
    return x
