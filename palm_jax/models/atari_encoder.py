"""The Atari conv torso and the dueling Q head of DrQ(ε) in Dopamine's Atari 100k.

Transcribes `FullRainbowNetwork` (google/dopamine, `dopamine/jax/networks.py`) with the
settings of `labs/atari_100k/configs/DrQ_eps.gin` (`noisy = False`, `dueling = True`,
`distributional = False`, `num_atoms = 1`):

    x ∈ [0, 1]^{B×84×84×4}                      (uint8 frames / 255, done by the agent)
    Conv(32, 8×8, stride 4) → ReLU → Conv(64, 4×4, stride 2) → ReLU → Conv(64, 3×3, stride 1)
      → ReLU → flatten                          (AtariEncoder: the Nature-DQN filter bank
                                                 of Mnih et al. 2015, but with flax's default
                                                 'SAME' padding as Dopamine has it, so the
                                                 maps are 21×21, 11×11, 11×11: 7744 features)
    h = ReLU(Dense(512))
    Q(s, ·) = V(h) + A(h) − mean_a A(h)        (dueling, Wang et al. 2016)

All kernels `xavier_uniform`, biases zero, as in Dopamine. The torso is its own module so
that PALM pretraining can produce it and DrQ finetuning can load it
(`palm_jax.runtime.checkpoint.restore_encoder`); the head is always trained from scratch.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# (features, kernel, stride) of the three convolutions: FullRainbowNetwork's hidden_sizes,
# kernel_sizes, stride_sizes.
TORSO = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


class AtariEncoder(nn.Module):
  """Conv torso `[B, 84, 84, C] float → [B, 7744]` (for 84×84 inputs)."""
  layers: Sequence[tuple[int, int, int]] = TORSO
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    for features, kernel, stride in self.layers:
      x = nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME",
                  kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype)(x)
      x = nn.relu(x)
    return x.reshape(x.shape[0], -1)


def torso_features(size: int = 84, layers: Sequence[tuple[int, int, int]] = TORSO) -> int:
  """Flattened width of the torso on `[size, size]` inputs ('SAME': each map is
  ceil(in / stride)); 7744 = 11·11·64 for 84×84."""
  for _, _, stride in layers:
    size = -(-size // stride)
  return size * size * layers[-1][0]


class PalmAtariEncoder(AtariEncoder):
  """The torso as PALM's SimSiam encoder: uint8 stacks `[B, 84, 84, 4]` → `[B, 7744]`.

  Divides by 255 as DrQ's agent does before its network, and has exactly the parameters
  of `AtariEncoder` (`Conv_0..2`), so `restore_encoder` of a PALM run drops into DrQ's
  `params['encoder']` (`palm_jax.jobs.atari100k.load_palm_encoder`). `train` is accepted for
  SimSiam's encoder interface; the torso has no BatchNorm.
  """

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:  # noqa: ARG002
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    return super().__call__(x)

  @property
  def feature_dim(self) -> int:
    return torso_features(84, self.layers)


class DuelingHead(nn.Module):
  """`[B, F] → Q [B, num_actions]`: a 512-unit ReLU layer, then V + A − mean(A)."""
  num_actions: int
  hidden: int = 512
  dueling: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    dense = lambda n: nn.Dense(n, kernel_init=nn.initializers.xavier_uniform(),  # noqa: E731
                               dtype=self.dtype)
    h = nn.relu(dense(self.hidden)(h.astype(self.dtype)))
    if not self.dueling:
      return dense(self.num_actions)(h).astype(jnp.float32)
    adv = dense(self.num_actions)(h)
    value = dense(1)(h)
    return (value + adv - jnp.mean(adv, axis=-1, keepdims=True)).astype(jnp.float32)


class QNetwork(nn.Module):
  """Q(s, ·) = head(encoder(s)): `[B, ...] → [B, num_actions]` float32.

  `encoder` is any module mapping observations to `[B, F]` (the Atari torso for DrQ, an MLP
  for CartPole); `stop_encoder_grad` freezes it (features are `stop_gradient`-ed, so the
  optimiser's updates to its parameters are exactly zero).
  """
  encoder: nn.Module
  head: nn.Module
  stop_encoder_grad: bool = False

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.encoder(x)
    if self.stop_encoder_grad:
      h = jax.lax.stop_gradient(h)
    return self.head(h)


class MLPEncoder(nn.Module):
  """`[B, ...] → [B, hidden[-1]]` ReLU MLP on the flattened input (vector observations)."""
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for n in self.hidden:
      x = nn.relu(nn.Dense(n, kernel_init=nn.initializers.xavier_uniform())(x))
    return x


def atari_q_network(num_actions: int, freeze_encoder: bool = False,
                    dtype: Any = jnp.float32) -> QNetwork:
  """DrQ(ε)'s network for a game with `num_actions` minimal actions."""
  return QNetwork(encoder=AtariEncoder(dtype=dtype),
                  head=DuelingHead(num_actions, dtype=dtype),
                  stop_encoder_grad=freeze_encoder)
