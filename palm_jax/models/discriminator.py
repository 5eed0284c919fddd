"""StyleGAN2-ADA discriminator (Karras et al. 2020), NHWC, Flax linen.

Follows NVIDIA's `training/networks.py` `Discriminator`: one block per resolution from the
image's down to 8 (`b32, b16, b8` for CIFAR), each `conv0` (3x3) then `conv1` (3x3, FIR
[1,3,3,1] blur then stride 2), a `fromrgb` 1x1 in the first block, optionally a 1x1 `skip`
('resnet'); then the 4x4 epilogue: minibatch standard deviation, 3x3 conv, FC, output FC.
Conditioning is the projection discriminator of the official code: a mapping network turns
the one-hot class `c` into `cmap` [N, cmap_dim] and the logit is
`(out(x) * cmap).sum(1) / sqrt(cmap_dim)`.

Every layer uses equalized learning rate: weights are stored N(0, 1) and multiplied at run
time by `lr_multiplier / sqrt(fan_in)`; activations are `lrelu(x + b) * sqrt(2) * gain`,
clamped to `+-conv_clamp * gain`. Blocks at the `num_fp16_res` highest resolutions compute
in `dtype` (bf16 on accelerators, where NVIDIA uses fp16); the epilogue and the label
mapping always compute in float32; parameters are `param_dtype` (float32).
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import require

Dtype = Any
LRELU_ALPHA = 0.2
LRELU_GAIN = float(np.sqrt(2.0))
# The [1, 3, 3, 1] low-pass filter, normalised to unit DC gain; applied separably.
FIR_1D = np.array([1.0, 3.0, 3.0, 1.0], np.float32) / 8.0


def bias_act(x: jax.Array, b: jax.Array | None, activation: str, gain: float = 1.0,
             clamp: float | None = None) -> jax.Array:
  """NVIDIA's `bias_act`: `clip(act(x + b) * def_gain * gain, +-clamp * gain)`.

  `b` [C] broadcasts over the last axis; `activation` is 'lrelu' (slope 0.2,
  def_gain sqrt 2) or 'linear' (def_gain 1). No clamping when `clamp` is None.
  """
  if b is not None:
    x = x + b.astype(x.dtype)
  act_gain = gain
  if activation == "lrelu":
    x = jnp.where(x >= 0, x, x * LRELU_ALPHA)
    act_gain = gain * LRELU_GAIN
  elif activation != "linear":
    raise ValueError(f"unknown activation {activation!r}")
  if act_gain != 1:
    x = x * jnp.asarray(act_gain, x.dtype)
  if clamp is not None:
    x = jnp.clip(x, -clamp * gain, clamp * gain)
  return x


def fir_blur(x: jax.Array, pad: int) -> jax.Array:
  """Zero-pads `x` [N, H, W, C] by `pad` on every side, then applies the 4x4 FIR filter
  `outer(f, f)`, f = [1,3,3,1]/8, 'valid' -> [N, H + 2 pad - 3, W + 2 pad - 3, C].

  Done separably as four shifted slices per axis, which XLA fuses into one elementwise
  pass (no depthwise convolution over hundreds of channels).
  """
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  f = [jnp.asarray(v, x.dtype) for v in FIR_1D]
  h = x.shape[1] - 3
  x = sum(f[i] * x[:, i:i + h] for i in range(4))
  w = x.shape[2] - 3
  return sum(f[i] * x[:, :, i:i + w] for i in range(4))


class EqualConv(nn.Module):
  """Equalized-lr 2-D convolution `[N, H, W, Cin] -> [N, H/down, W/down, features]`.

  `down=2` is NVIDIA's `conv2d_resample` down path: pad, FIR blur, stride-2 convolution
  (3x3), or blur-and-decimate then 1x1 for a 1x1 kernel. Same-size output otherwise.
  """
  features: int
  kernel_size: int
  down: int = 1
  use_bias: bool = True
  activation: str = "linear"
  conv_clamp: float | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    weight = self.param("weight", nn.initializers.normal(1.0),
                        (k, k, cin, self.features), self.param_dtype)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    w = (weight * (1.0 / np.sqrt(cin * k * k))).astype(self.dtype)
    x = x.astype(self.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    if self.down == 1:
      x = jax.lax.conv_general_dilated(x, w, (1, 1), [(k // 2, k // 2)] * 2,
                                       dimension_numbers=dn)
    elif k == 1:
      x = fir_blur(x, 1)[:, ::self.down, ::self.down]
      x = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dn)
    else:
      x = fir_blur(x, k // 2 + 1)
      x = jax.lax.conv_general_dilated(x, w, (self.down, self.down), "VALID",
                                       dimension_numbers=dn)
    return bias_act(x, bias, self.activation, gain=gain, clamp=self.conv_clamp)


class EqualDense(nn.Module):
  """Equalized-lr fully connected layer `[N, in] -> [N, features]`.

  `y = act(x @ (W * lr_multiplier / sqrt(in)) + b * lr_multiplier)`, W ~ N(0, 1/lr_mult^2).
  """
  features: int
  activation: str = "linear"
  lr_multiplier: float = 1.0
  bias_init: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    weight = self.param(
        "weight", nn.initializers.normal(1.0 / self.lr_multiplier), (cin, self.features),
        self.param_dtype)
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,),
                      self.param_dtype)
    w = (weight * (self.lr_multiplier / np.sqrt(cin))).astype(self.dtype)
    return bias_act(x.astype(self.dtype) @ w, bias * self.lr_multiplier, self.activation)


def minibatch_std(x: jax.Array, group_size: int | None, num_channels: int = 1) -> jax.Array:
  """Appends `num_channels` minibatch-stddev feature maps: [N, H, W, C] -> [N, H, W, C+F].

  As NVIDIA's `MinibatchStdLayer`: the batch is split as `reshape(G, N/G)` (sample i is in
  group i mod N/G), channels into F groups of C/F; per group
  `s = mean_{c,h,w} sqrt(var_G(x) + 1e-8)` (biased variance over the G members), and `s`
  is broadcast back to every member and pixel. G = min(group_size, N) (None: G = N).
  """
  n, h, w, c = x.shape
  g = n if group_size is None else min(group_size, n)
  f = num_channels
  require(n % g == 0, f"the discriminator's minibatch-std group size {g} does not divide "
                      f"the batch of {n}; set config.mbstd_group to a divisor of it.")
  y = x.astype(jnp.float32).reshape(g, n // g, h, w, f, c // f)
  y = y - y.mean(axis=0)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)   # [n, H, W, F, c]
  y = y.mean(axis=(1, 2, 4))                             # [n, F]
  y = jnp.tile(y, (g, 1))[:, None, None, :]              # [N, 1, 1, F]
  y = jnp.broadcast_to(y, (n, h, w, f)).astype(x.dtype)
  return jnp.concatenate([x, y], axis=-1)


class LabelMapping(nn.Module):
  """The discriminator's class mapping: one-hot `c` [N, c_dim] -> `cmap` [N, cmap_dim].

  NVIDIA's `MappingNetwork(z_dim=0, ...)`: `embed` FC, 2nd-moment normalisation, then
  `num_layers` lrelu FCs at learning-rate multiplier 0.01. Always float32.
  """
  cmap_dim: int
  num_layers: int = 8
  lr_multiplier: float = 0.01
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, c: jax.Array) -> jax.Array:
    x = EqualDense(self.cmap_dim, param_dtype=self.param_dtype, name="embed")(
        c.astype(jnp.float32))
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)
    for i in range(self.num_layers):
      x = EqualDense(self.cmap_dim, "lrelu", self.lr_multiplier,
                     param_dtype=self.param_dtype, name=f"fc{i}")(x)
    return x


class Discriminator(nn.Module):
  """StyleGAN2-ADA discriminator: images [N, H, W, C] in [-1, 1], labels [N, c_dim] ->
  logits [N] (float32). Constructor arguments mirror NVIDIA's `Discriminator`."""
  c_dim: int
  img_resolution: int
  img_channels: int = 3
  architecture: str = "resnet"         # 'orig' (CIFAR config) or 'resnet'
  channel_base: int = 32768
  channel_max: int = 512
  num_fp16_res: int = 0                # blocks at this many top resolutions use `dtype`
  conv_clamp: float | None = None
  cmap_dim: int | None = None          # None: the 4x4 block's channel count
  mbstd_group_size: int | None = 4
  mbstd_num_channels: int = 1
  mapping_layers: int = 8
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def channels(self, res: int) -> int:
    return min(self.channel_base // res, self.channel_max)

  def _check_config(self) -> None:
    log2 = int(np.log2(self.img_resolution))
    require(self.img_resolution >= 8 and 2 ** log2 == self.img_resolution,
            f"img_resolution={self.img_resolution} is not a power of two >= 8; resize the "
            "images to 8, 16, 32, 64, ... pixels.")
    require(self.architecture in ("orig", "resnet"),
            f"discriminator architecture={self.architecture!r} is not supported; use "
            "'orig' or 'resnet'.")

  @nn.compact
  def __call__(self, img: jax.Array, c: jax.Array | None = None) -> jax.Array:
    self._check_config()
    n = img.shape[0]
    res0 = self.img_resolution
    chex.assert_shape(img, (n, res0, res0, self.img_channels))
    log2 = int(np.log2(res0))
    fp16_res = max(2 ** (log2 + 1 - self.num_fp16_res), 8)
    kw = dict(conv_clamp=self.conv_clamp, param_dtype=self.param_dtype)
    x = None
    for res in [2 ** i for i in range(log2, 2, -1)]:
      dtype = self.dtype if res >= fp16_res else jnp.float32
      tmp, out = self.channels(res), self.channels(res // 2)
      if x is None:
        x = EqualConv(tmp, 1, activation="lrelu", dtype=dtype, name=f"b{res}_fromrgb",
                      **kw)(img)
      x = x.astype(dtype)
      if self.architecture == "resnet":
        y = EqualConv(out, 1, down=2, use_bias=False, dtype=dtype,
                      param_dtype=self.param_dtype, name=f"b{res}_skip")(x, gain=np.sqrt(0.5))
        x = EqualConv(tmp, 3, activation="lrelu", dtype=dtype, name=f"b{res}_conv0", **kw)(x)
        x = EqualConv(out, 3, down=2, activation="lrelu", dtype=dtype,
                      name=f"b{res}_conv1", **kw)(x, gain=np.sqrt(0.5))
        x = y + x
      else:
        x = EqualConv(tmp, 3, activation="lrelu", dtype=dtype, name=f"b{res}_conv0", **kw)(x)
        x = EqualConv(out, 3, down=2, activation="lrelu", dtype=dtype,
                      name=f"b{res}_conv1", **kw)(x)

    # Epilogue at 4x4, float32.
    c4 = self.channels(4)
    x = x.astype(jnp.float32)
    chex.assert_shape(x, (n, 4, 4, c4))
    if self.mbstd_num_channels > 0:
      x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
    x = EqualConv(c4, 3, activation="lrelu", name="b4_conv", **kw)(x)
    # Flatten in NCHW order, as the official FC weight expects.
    x = x.transpose(0, 3, 1, 2).reshape(n, -1)
    x = EqualDense(c4, "lrelu", param_dtype=self.param_dtype, name="b4_fc")(x)
    cmap_dim = (self.cmap_dim or c4) if self.c_dim > 0 else 0
    x = EqualDense(cmap_dim or 1, param_dtype=self.param_dtype, name="b4_out")(x)
    if self.c_dim > 0:
      chex.assert_shape(c, (n, self.c_dim))
      cmap = LabelMapping(cmap_dim, self.mapping_layers, param_dtype=self.param_dtype,
                          name="mapping")(c)
      x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / np.sqrt(cmap_dim))
    return x[:, 0]
