"""CIFAR ResNet (ResNet-18 by default): the encoder `f` that PALM pretrains.

The CIFAR variant of ResNet-18 (He et al. 2016, as used by SimSiam's CIFAR experiments):
a 3x3 stride-1 stem convolution with 64 channels, BatchNorm, ReLU and *no* max-pool, then
four stages of two BasicBlocks with widths 64, 128, 256, 512 and strides 1, 2, 2, 2
(1x1 projection shortcuts where shape changes), then a global average pool to 512-d
features. With the defaults the module has exactly 11,168,832 parameters (ResNet-18 minus
its classifier), plus BatchNorm running statistics in the `batch_stats` collection.

Image convention (the single place where images are normalised):
  * uint8 images are in [0, 255] (what the replay buffer and the datasets store);
  * float images are in [-1, 1] (what the generator outputs); `images_to_uint8` and
    `images_to_float` convert between the two with NVIDIA's rounding.
`normalize_images` maps either to `(x01 - CIFAR_MEAN) / CIFAR_STD`, where `x01` in [0, 1]
is `u / 255` or `(x + 1) / 2`, and the CIFAR-10 per-channel statistics below. `ResNet`
calls it first, so callers pass raw uint8 or [-1, 1] images and never normalise themselves.

Multi-device: under `jax.jit` with the batch sharded over a mesh, BatchNorm's `jnp.mean`
over the batch axis is a global reduction, so batch statistics are those of the *global*
batch (like SyncBatchNorm) without an `axis_name`.
"""
from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import require

# CIFAR-10 training-set per-channel mean and standard deviation of images in [0, 1].
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# PyTorch's ResNet initialisation: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def images_to_float(images: jax.Array) -> jax.Array:
  """uint8 `[..., H, W, C]` in [0, 255] → float32 in [-1, 1]: `x = u / 127.5 - 1`.

  Float input is taken to be in [-1, 1] already and is returned as float32.
  """
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


def images_to_uint8(images: jax.Array) -> jax.Array:
  """float `[..., H, W, C]` in [-1, 1] → uint8: `u = clip(floor(x * 127.5 + 128), 0, 255)`.

  Same rounding as NVIDIA's StyleGAN `(img * 127.5 + 128).clamp(0, 255).to(uint8)` and as
  `palm_jax.runtime.images.to_uint8`; `images_to_float(images_to_uint8(x))` is within 1/255 of x.
  uint8 input is returned unchanged. Jittable; use it before inserting into the replay.
  """
  if images.dtype == jnp.uint8:
    return images
  x = jnp.floor(images.astype(jnp.float32) * 127.5 + 128.0)
  return jnp.clip(x, 0.0, 255.0).astype(jnp.uint8)


def images_to_unit(images: jax.Array) -> jax.Array:
  """uint8 in [0, 255] or float in [-1, 1] → float32 in [0, 1] (`u / 255` or `(x + 1) / 2`)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return (images.astype(jnp.float32) + 1.0) * 0.5


def normalize_images(images: jax.Array) -> jax.Array:
  """The encoder's input normalisation: `[..., C=3]` images → `(x01 - mean) / std`, float32."""
  x01 = images_to_unit(images)
  return (x01 - jnp.asarray(CIFAR_MEAN, jnp.float32)) / jnp.asarray(CIFAR_STD, jnp.float32)


class BasicBlock(nn.Module):
  """Two 3x3 conv-BN layers with an identity or 1x1-conv-BN projection shortcut.

  `y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`; `[B, H, W, C] → [B, H/s, W/s, F]`.
  """
  features: int
  strides: int = 1
  zero_init_residual: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda **kw: nn.BatchNorm(  # noqa: E731
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
        param_dtype=self.param_dtype, **kw)
    conv = lambda f, k, s, name: nn.Conv(  # noqa: E731
        f, (k, k), strides=(s, s), padding=((k // 2, k // 2),) * 2, use_bias=False,
        kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = conv(self.features, 3, self.strides, "conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv(self.features, 3, 1, "conv2")(y)
    # Zero-initialised last BN scale: each block starts as the identity (SimSiam's
    # `zero_init_residual=True`, Goyal et al. 2017).
    scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = norm(name="bn2", scale_init=scale_init)(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = conv(self.features, 1, self.strides, "shortcut_conv")(x)
      x = norm(name="shortcut_bn")(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """CIFAR ResNet: images `[B, H, W, 3]` (uint8 or float [-1, 1]) → features `[B, F]`.

  `F = width * 2 ** (len(stage_sizes) - 1)` (512 for ResNet-18). Stage `i` has
  `stage_sizes[i]` BasicBlocks of width `width * 2**i`, stride 1 for stage 0 and 2 after.
  `train=True` normalises with batch statistics and updates `batch_stats` (pass
  `mutable=["batch_stats"]`); `train=False` uses the running averages.
  Features are returned in float32 whatever the compute `dtype`.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  zero_init_residual: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return self.width * 2 ** (len(self.stage_sizes) - 1)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    chex.assert_rank(images, 4)
    batch = images.shape[0]
    x = normalize_images(images).astype(self.dtype)
    x = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype,
                name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, param_dtype=self.param_dtype, name="stem_bn")(x)
    x = nn.relu(x)
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = BasicBlock(self.width * 2 ** i, strides=2 if (i > 0 and j == 0) else 1,
                       zero_init_residual=self.zero_init_residual, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=f"stage{i}_block{j}")(x, train)
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    chex.assert_shape(features, (batch, self.feature_dim))
    return features


def resnet18(**kwargs) -> ResNet:
  """The paper's encoder: CIFAR ResNet-18, 512-d features, 11,168,832 parameters."""
  return ResNet(stage_sizes=(2, 2, 2, 2), width=64, **kwargs)


def resnet_tiny(**kwargs) -> ResNet:
  """A test-sized encoder: two stages of one block, widths 8 and 16 (16-d features)."""
  return ResNet(stage_sizes=(1, 1), width=8, **kwargs)


def infer_resnet(encoder_params: Any, **kwargs) -> ResNet:
  """Rebuilds the `ResNet` whose parameters are `encoder_params` (from their names/shapes).

  Lets evaluation restore an encoder from a checkpoint without its config. Raises a
  UserError when the tree is not a `ResNet`'s parameter tree.
  """
  require(isinstance(encoder_params, dict) and "stem_conv" in encoder_params,
          "the given parameters are not a ResNet encoder's (no 'stem_conv'); pass the "
          "encoder's own params, e.g. variables['params']['encoder'].")
  width = int(np.shape(encoder_params["stem_conv"]["kernel"])[-1])
  stage_sizes, i = [], 0
  while any(k.startswith(f"stage{i}_block") for k in encoder_params):
    stage_sizes.append(sum(k.startswith(f"stage{i}_block") for k in encoder_params))
    i += 1
  return ResNet(stage_sizes=tuple(stage_sizes), width=width, **kwargs)


def count_params(params: Any) -> int:
  """Total number of scalars in a parameter pytree."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params)))
