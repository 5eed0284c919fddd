"""NVIDIA's StyleGAN2-ADA generator (`training/networks.py: Generator`) as Flax linen modules.

The modules reproduce the official PyTorch generator's outputs (to ~1e-6 in float32, checked
against a fixture made by the official code) with a faster formulation of its costly parts:

* Modulated convolution without per-sample weights: scale the input activations by the
  styles, run one convolution with the shared weight, scale the outputs by the
  demodulation coefficients `d = rsqrt(styles² @ ΣW²ᵀ + 1e-8)`.
* The up-sampling convolution (stride-2 transposed 3×3 conv, then a 4×4 FIR blur) folded into
  one 3×3 convolution at input resolution with `4·O` outputs (one per output phase), then a
  depth-to-space reshape; no grouped/depthwise convolutions over feature channels
  (`up_impl="polyphase"`, default). `up_impl="transpose"` keeps the official order instead:
  an input-dilated conv (a quarter of the FLOPs) then the blur as shifted slices; which one
  is faster depends on the accelerator, so `palm_jax.bench generator --up_impl` times both.
  Either may be chosen per resolution: `up_impl="8:transpose,16:polyphase,32:polyphase"`.
* `modulation="weights"` instead folds styles and demodulation into per-sample weights (the
  official fused path: one grouped conv with N groups); also selectable per resolution.

Activations are NHWC in the compute `dtype` (bf16 on accelerators, float32 for the reference
path, which uses `Precision.HIGHEST`); parameters are float32; the mapping network, styles,
demodulation coefficients and the RGB skip path stay float32 as in the official code.

Variables (`Generator.init`) follow the official `state_dict()` keys, '.' becoming nesting,
with the official layouts (weights stored unscaled; the equalized-lr gain is applied at run
time), so converting official weights is a rename:

    params   (trainable, float32)
      mapping/embed/{weight [E, c_dim], bias [E]}             conditional models only
      mapping/fc{i}/{weight [out, in], bias [out]}
      synthesis/b4/const [C4, 4, 4]
      synthesis/b{R}/conv{0,1}/{weight [O, I, k, k], bias [O], noise_strength [],
                                affine/{weight [I, w_dim], bias [I]}}   (b4 has conv1 only)
      synthesis/b{R}/torgb/{weight [img_channels, C, 1, 1], bias [img_channels],
                            affine/{weight [C, w_dim], bias [C]}}
    buffers  (not trained by gradients)
      mapping/w_avg [w_dim]                                   tracked mean of w
      synthesis/b{R}/conv{0,1}/noise_const [R, R]             the 'const' noise inputs

The official `resample_filter` buffers follow from the config. Conditioning `c` is a float
one-hot (or soft) label `[N, c_dim]` as officially; `GeneratorHandle` takes integer labels.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.models.stylegan2.ops import (ACTIVATION_GAIN, HIGHEST, MODULATIONS, UP_IMPLS,
                                           activate, choice_for_resolution,
                                           modulated_conv2d, normalize_2nd_moment,
                                           upsample_2x)
from palm_jax.runtime.errors import require

NOISE_MODES = ("const", "random", "none")

# Official constructor keywords: Generator(z_dim, c_dim, w_dim, img_resolution, img_channels,
# mapping_kwargs, synthesis_kwargs); values here are the official defaults.
_MAPPING_DEFAULTS = dict(num_layers=8, embed_features=None, layer_features=None,
                         activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995)
_SYNTHESIS_DEFAULTS = dict(channel_base=32768, channel_max=512, num_fp16_res=0,
                           conv_clamp=None, architecture="skip", resample_filter=(1, 3, 3, 1),
                           use_noise=True, activation="lrelu", kernel_size=3,
                           fp16_channels_last=False, channels_dict=None)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """The official `Generator` constructor arguments, flattened and validated (hashable).

  `channels_dict` (not official) overrides `channel_base`/`channel_max` with explicit
  `((resolution, channels), ...)` for weights whose channel counts no base/max pair yields.
  `num_fp16_res` and `fp16_channels_last` are accepted and ignored (see `dtype`).
  """
  z_dim: int
  c_dim: int
  w_dim: int
  img_resolution: int
  img_channels: int
  num_layers: int = 8
  embed_features: int | None = None
  layer_features: int | None = None
  mapping_activation: str = "lrelu"
  lr_multiplier: float = 0.01
  w_avg_beta: float | None = 0.995
  channel_base: int = 32768
  channel_max: int = 512
  channels_dict: tuple[tuple[int, int], ...] | None = None
  num_fp16_res: int = 0
  conv_clamp: float | None = None
  architecture: str = "skip"
  resample_filter: tuple[float, ...] = (1, 3, 3, 1)
  use_noise: bool = True
  activation: str = "lrelu"
  kernel_size: int = 3
  fp16_channels_last: bool = False

  @classmethod
  def from_kwargs(cls, z_dim, c_dim, w_dim, img_resolution, img_channels,
                  mapping_kwargs=None, synthesis_kwargs=None) -> GeneratorConfig:
    """Builds the config from official `Generator(**init_kwargs)` keywords."""
    mapping_kwargs, synthesis_kwargs = dict(mapping_kwargs or {}), dict(synthesis_kwargs or {})
    for name, given, known in (("mapping_kwargs", mapping_kwargs, _MAPPING_DEFAULTS),
                               ("synthesis_kwargs", synthesis_kwargs, _SYNTHESIS_DEFAULTS)):
      unknown = sorted(set(given) - set(known))
      require(not unknown, f"Generator {name} has unsupported keys {unknown}; supported keys "
              f"are {sorted(known)}, so remove or rename them.")
    m = {**_MAPPING_DEFAULTS, **mapping_kwargs}
    s = {**_SYNTHESIS_DEFAULTS, **synthesis_kwargs}
    taps = np.asarray(s["resample_filter"], np.float64)
    require(taps.ndim == 1 and taps.size > 0, f"synthesis_kwargs.resample_filter must be 1-D "
            f"filter taps such as [1, 3, 3, 1], found {s['resample_filter']!r}.")
    channels = s["channels_dict"]
    if channels is not None:
      channels = tuple(sorted((int(r), int(ch)) for r, ch in dict(channels).items()))
    config = cls(
        z_dim=int(z_dim), c_dim=int(c_dim), w_dim=int(w_dim),
        img_resolution=int(img_resolution), img_channels=int(img_channels),
        num_layers=int(m["num_layers"]), embed_features=m["embed_features"],
        layer_features=m["layer_features"], mapping_activation=m["activation"],
        lr_multiplier=float(m["lr_multiplier"]), w_avg_beta=m["w_avg_beta"],
        channel_base=int(s["channel_base"]), channel_max=int(s["channel_max"]),
        channels_dict=channels, num_fp16_res=int(s["num_fp16_res"]),
        conv_clamp=None if s["conv_clamp"] is None else float(s["conv_clamp"]),
        architecture=s["architecture"], resample_filter=tuple(float(t) for t in taps),
        use_noise=bool(s["use_noise"]), activation=s["activation"],
        kernel_size=int(s["kernel_size"]), fp16_channels_last=bool(s["fp16_channels_last"]))
    config.validate()
    return config

  def to_kwargs(self) -> dict[str, Any]:
    """The official `Generator` keywords (JSON-serialisable); inverse of `from_kwargs`."""
    mapping = dict(num_layers=self.num_layers, embed_features=self.embed_features,
                   layer_features=self.layer_features, activation=self.mapping_activation,
                   lr_multiplier=self.lr_multiplier, w_avg_beta=self.w_avg_beta)
    synthesis = dict(channel_base=self.channel_base, channel_max=self.channel_max,
                     num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp,
                     architecture=self.architecture, resample_filter=list(self.resample_filter),
                     use_noise=self.use_noise, activation=self.activation,
                     kernel_size=self.kernel_size, fp16_channels_last=self.fp16_channels_last)
    if self.channels_dict is not None:
      synthesis["channels_dict"] = {r: ch for r, ch in self.channels_dict}
    return dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                img_resolution=self.img_resolution, img_channels=self.img_channels,
                mapping_kwargs=mapping, synthesis_kwargs=synthesis)

  def validate(self) -> None:
    """Raises `UserError` for configurations the official code (or this port) rejects."""
    r = self.img_resolution
    require(r >= 4 and r & (r - 1) == 0,
            f"img_resolution must be a power of two >= 4, found {r}.")
    require(self.architecture == "skip", f"synthesis architecture {self.architecture!r} is "
            "not supported; only the 'skip' generator (the StyleGAN2-ADA default) is.")
    require(self.z_dim >= 0 and self.c_dim >= 0 and self.z_dim + self.c_dim > 0,
            f"z_dim + c_dim must be positive, found z_dim={self.z_dim}, c_dim={self.c_dim}.")
    require(self.num_layers >= 1, f"mapping num_layers must be >= 1, found {self.num_layers}.")
    for name in ("activation", "mapping_activation"):
      require(getattr(self, name) in ACTIVATION_GAIN, f"{name} {getattr(self, name)!r} is "
              f"not supported; use one of {sorted(ACTIVATION_GAIN)}.")
    require(self.kernel_size % 2 == 1, f"kernel_size must be odd, found {self.kernel_size}.")
    if self.channels_dict is not None:
      missing = sorted(set(self.block_resolutions) - {res for res, _ in self.channels_dict})
      require(not missing, f"channels_dict lacks resolutions {missing}; give every block "
              f"resolution {self.block_resolutions}.")

  @property
  def block_resolutions(self) -> tuple[int, ...]:
    return tuple(2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1))

  @property
  def channels(self) -> dict[int, int]:
    """Feature channels per block resolution: `min(channel_base // res, channel_max)`."""
    if self.channels_dict is not None:
      return dict(self.channels_dict)
    return {r: min(self.channel_base // r, self.channel_max) for r in self.block_resolutions}

  @property
  def num_ws(self) -> int:
    """Official count: one w per conv layer, plus one for the last block's ToRGB."""
    return 2 * len(self.block_resolutions)

  @property
  def embed_dim(self) -> int:
    if self.c_dim == 0:
      return 0
    return self.w_dim if self.embed_features is None else int(self.embed_features)

  @property
  def hidden_dim(self) -> int:
    return self.w_dim if self.layer_features is None else int(self.layer_features)


# ------------------------------------------------------------------------------- modules ---

class FullyConnected(nn.Module):
  """Equalized-lr dense layer: `y = act(x @ (W·lr/√in)ᵀ + b·lr)`, float32.

  `weight [out, in]` is stored as `N(0, 1) / lr` (official init), `bias [out]`.
  """
  features: int
  activation: str = "linear"
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    lr = self.lr_multiplier
    weight = self.param("weight", lambda k, s: jax.random.normal(k, s) / lr,
                        (self.features, in_features))
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
    y = jnp.dot(x.astype(jnp.float32), (weight * (lr / math.sqrt(in_features))).T,
                precision=HIGHEST)
    return activate(y + bias * lr, self.activation)


class MappingNetwork(nn.Module):
  """z, c → ws `[N, num_ws, w_dim]` (official `MappingNetwork`).

      x  = concat(normalize_2nd_moment(z), normalize_2nd_moment(embed(c)))
      w  = fc_{L-1}(… fc_0(x))                            lrelu·√2, lr_mult 0.01
      ws = broadcast(w, num_ws);  ws[:, :cutoff] = w_avg + psi · (ws - w_avg)
  With `update_w_avg` (needs `mutable=['buffers']`): `w_avg ← mean_n(w) + β (w_avg - mean_n(w))`.
  """
  config: GeneratorConfig

  @nn.compact
  def __call__(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
    cfg = self.config
    parts = []
    if cfg.z_dim > 0:
      chex.assert_shape(z, (None, cfg.z_dim))
      parts.append(normalize_2nd_moment(z.astype(jnp.float32)))
    if cfg.c_dim > 0:
      chex.assert_shape(c, (None, cfg.c_dim))
      y = FullyConnected(cfg.embed_dim, name="embed")(c.astype(jnp.float32))
      parts.append(normalize_2nd_moment(y))
    x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    for idx in range(cfg.num_layers):
      features = cfg.w_dim if idx == cfg.num_layers - 1 else cfg.hidden_dim
      x = FullyConnected(features, activation=cfg.mapping_activation,
                         lr_multiplier=cfg.lr_multiplier, name=f"fc{idx}")(x)
    w_avg = None
    if cfg.w_avg_beta is not None:
      w_avg = self.variable("buffers", "w_avg", jnp.zeros, (cfg.w_dim,), jnp.float32)
      if update_w_avg and not self.is_initializing():
        mean = jnp.mean(x, axis=0)
        w_avg.value = mean + cfg.w_avg_beta * (w_avg.value - mean)
    ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], cfg.num_ws, cfg.w_dim))
    static_psi = isinstance(truncation_psi, (int, float))
    if static_psi and truncation_psi == 1:
      return ws
    if w_avg is None:       # a traced psi was checked to be 1 on the host (GeneratorHandle)
      require(not static_psi, "truncation needs the tracked w_avg, but this generator was "
              "built with w_avg_beta=None; use truncation_psi=1.")
      return ws
    avg = w_avg.value
    truncated = avg + jnp.asarray(truncation_psi, jnp.float32) * (ws - avg)
    if truncation_cutoff is not None:
      keep = (jnp.arange(cfg.num_ws) < truncation_cutoff)[None, :, None]
      truncated = jnp.where(keep, truncated, ws)
    if not static_psi:                                     # traced psi: exact at psi == 1
      truncated = jnp.where(truncation_psi == 1, ws, truncated)
    return truncated


class SynthesisLayer(nn.Module):
  """Modulated conv (optionally 2× up), noise, bias, activation, clamp (`SynthesisLayer`).

      y = clamp(act(conv(x·s, W)·d + noise·noise_strength + b)·√2, ±conv_clamp)
  `x [N, R/up, R/up, I]` (compute dtype), `w [N, w_dim]` → `[N, R, R, O]` (compute dtype).
  """
  config: GeneratorConfig
  out_channels: int
  resolution: int
  up: int = 1
  dtype: Any = jnp.float32
  up_impl: str = "polyphase"           # a UP_IMPLS name, or per resolution "8:transpose,..."
  modulation: str = "activations"      # a MODULATIONS name, or per resolution

  @nn.compact
  def __call__(self, x, w, noise_mode="const", random_noise=None):
    """`random_noise [N, R, R, 1]` N(0, 1) is used when `noise_mode == 'random'`."""
    cfg, r = self.config, self.resolution
    n, _, _, in_channels = x.shape
    chex.assert_shape(x, (n, r // self.up, r // self.up, in_channels))
    styles = FullyConnected(in_channels, bias_init=1.0, name="affine")(w)
    k = cfg.kernel_size
    weight = self.param("weight", nn.initializers.normal(1.0),
                        (self.out_channels, in_channels, k, k))
    precision = HIGHEST if jnp.dtype(self.dtype) == jnp.float32 else None
    y = modulated_conv2d(
        x, weight, styles, up=self.up, resample_filter=cfg.resample_filter,
        up_impl=choice_for_resolution(self.up_impl, r, UP_IMPLS, "up_impl"),
        modulation=choice_for_resolution(self.modulation, r, MODULATIONS, "modulation"),
        precision=precision)
    if cfg.use_noise:
      noise_const = self.variable(
          "buffers", "noise_const", lambda: jax.random.normal(self.make_rng("params"), (r, r)))
      strength = self.param("noise_strength", nn.initializers.zeros, ())
      if noise_mode == "const":
        y = y + (noise_const.value * strength)[None, :, :, None]
      elif noise_mode == "random":
        chex.assert_shape(random_noise, (n, r, r, 1))
        y = y + random_noise * strength
    bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
    return activate(y + bias, cfg.activation, clamp=cfg.conv_clamp).astype(self.dtype)


class ToRGB(nn.Module):
  """1×1 modulated conv without demodulation (`ToRGBLayer`), float32 output.

      rgb = clamp(Σ_c x[..., c] · s[n, c] / √C · W[o, c] + b, ±conv_clamp)
  Per-sample `[N, C, img_channels]` weights are tiny here, so they are materialised: one
  batched matmul reads the activations once.
  """
  config: GeneratorConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, w):
    cfg = self.config
    channels = x.shape[-1]
    styles = FullyConnected(channels, bias_init=1.0, name="affine")(w) / math.sqrt(channels)
    weight = self.param("weight", nn.initializers.normal(1.0),
                        (cfg.img_channels, channels, 1, 1))
    per_sample = (styles[:, :, None] * weight[:, :, 0, 0].T[None]).astype(self.dtype)
    precision = HIGHEST if jnp.dtype(self.dtype) == jnp.float32 else None
    y = jnp.einsum("nhwc,nco->nhwo", x, per_sample, precision=precision,
                   preferred_element_type=jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (cfg.img_channels,))
    y = y + bias
    if cfg.conv_clamp is not None:
      y = jnp.clip(y, -cfg.conv_clamp, cfg.conv_clamp)
    return y


class SynthesisBlock(nn.Module):
  """One resolution of the 'skip' synthesis network (`SynthesisBlock`).

  `ws [N, 3, w_dim]` (`[N, 2, w_dim]` for the 4×4 block: conv1, torgb). Returns the features
  `[N, R, R, C]` and `img = upsample_2x(img) + torgb(x)` `[N, R, R, img_channels]` float32.
  """
  config: GeneratorConfig
  resolution: int
  dtype: Any = jnp.float32
  up_impl: str = "polyphase"
  modulation: str = "activations"

  @nn.compact
  def __call__(self, x, img, ws, noise_mode="const", random_noise=(None, None)):
    cfg, r = self.config, self.resolution
    channels = cfg.channels[r]
    layer = functools.partial(SynthesisLayer, cfg, channels, r, dtype=self.dtype,
                              up_impl=self.up_impl, modulation=self.modulation)
    if x is None:
      const = self.param("const", nn.initializers.normal(1.0), (channels, r, r))
      x = jnp.broadcast_to(jnp.transpose(const, (1, 2, 0))[None], (ws.shape[0], r, r, channels))
      x = layer(name="conv1")(x.astype(self.dtype), ws[:, 0], noise_mode, random_noise[0])
    else:
      x = layer(up=2, name="conv0")(x.astype(self.dtype), ws[:, 0], noise_mode,
                                    random_noise[0])
      x = layer(name="conv1")(x, ws[:, 1], noise_mode, random_noise[1])
    y = ToRGB(cfg, dtype=self.dtype, name="torgb")(x, ws[:, -1])
    img = y if img is None else upsample_2x(img, cfg.resample_filter) + y
    return x, img


class SynthesisNetwork(nn.Module):
  """ws `[N, num_ws, w_dim]` → images `[N, R, R, img_channels]` float32 (`SynthesisNetwork`).

  Block `b{res}` reads `ws[:, i : i + num_conv + 1]` and advances `i` by its `num_conv`, so a
  block's ToRGB shares its w with the next block's first conv, as in the official code.
  """
  config: GeneratorConfig
  dtype: Any = jnp.float32
  up_impl: str = "polyphase"
  modulation: str = "activations"

  @nn.compact
  def __call__(self, ws, noise_mode="const"):
    cfg = self.config
    require(noise_mode in NOISE_MODES,
            f"noise_mode must be one of {NOISE_MODES}, found {noise_mode!r}.")
    chex.assert_shape(ws, (None, cfg.num_ws, cfg.w_dim))
    ws = ws.astype(jnp.float32)
    noise = self._random_noise(ws.shape[0]) if noise_mode == "random" else {}
    x = img = None
    w_idx = 0
    for res in cfg.block_resolutions:
      num_conv = 1 if res == 4 else 2
      block = SynthesisBlock(cfg, res, dtype=self.dtype, up_impl=self.up_impl,
                             modulation=self.modulation, name=f"b{res}")
      x, img = block(x, img, ws[:, w_idx:w_idx + num_conv + 1], noise_mode,
                     (noise.get((res, 0)), noise.get((res, 1))))
      w_idx += num_conv
    return img

  def _random_noise(self, n):
    """N(0, 1) noise `[n, R, R, 1]` per conv layer, keyed `(res, i)`, from one draw (one
    `jax.random.normal` call site keeps XLA:CPU compile times short)."""
    if not self.config.use_noise:
      return {}
    layers = [(res, i) for res in self.config.block_resolutions
              for i in range(1 if res == 4 else 2)]
    pool = jax.random.normal(self.make_rng("noise"), (n, sum(r * r for r, _ in layers)))
    out, offset = {}, 0
    for res, i in layers:
      out[(res, i)] = pool[:, offset:offset + res * res].reshape(n, res, res, 1)
      offset += res * res
    return out


class Generator(nn.Module):
  """The StyleGAN2-ADA generator: `mapping` then `synthesis`.

  Methods (use with `apply(..., method=...)`; `noise_mode='random'` needs rngs={'noise': k}):
    `mapping(z [N, z_dim], c [N, c_dim] one-hot float, psi, cutoff, update_w_avg)`
        → ws `[N, num_ws, w_dim]`
    `synthesis(ws, noise_mode)` → images `[N, R, R, img_channels]` float32, about [-1, 1]
    `__call__(z, c, truncation_psi, truncation_cutoff, noise_mode, update_w_avg)` → images
  """
  config: GeneratorConfig
  dtype: Any = jnp.float32
  up_impl: str = "polyphase"          # see SynthesisLayer; `ops.validate_impls` checks both
  modulation: str = "activations"

  def setup(self):
    self.mapping_network = MappingNetwork(self.config, name="mapping")
    self.synthesis_network = SynthesisNetwork(self.config, dtype=self.dtype,
                                              up_impl=self.up_impl,
                                              modulation=self.modulation, name="synthesis")

  def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
    return self.mapping_network(z, c, truncation_psi, truncation_cutoff, update_w_avg)

  def synthesis(self, ws, noise_mode="const"):
    return self.synthesis_network(ws, noise_mode)

  def __call__(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
               update_w_avg=False):
    ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)
    return self.synthesis(ws, noise_mode)

