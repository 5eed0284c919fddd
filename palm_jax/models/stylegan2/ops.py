"""The numerical building blocks of the StyleGAN2-ADA generator (NHWC, pure functions).

FIR filtering and 2x up-sampling, the modulated convolution in its fast form (scale the
activations by the styles, one shared-weight convolution, scale the outputs by the
demodulation coefficients), the up-sampling convolution folded with its blur, and the
activation with gain and clamp. `network.py` builds the modules on them.
"""
from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import UserError, require

UP_IMPLS = ("polyphase", "transpose")
# "activations": scale the inputs by the styles, one shared-weight conv, scale the outputs by
# the demodulation coefficients (official `fused_modconv=False`). "weights": fold styles and
# demodulation into per-sample weights `[N, O, I, k, k]` and run one grouped conv with N
# groups (official `fused_modconv=True`, what NVIDIA uses at inference).
MODULATIONS = ("activations", "weights")
ACTIVATION_GAIN = {"linear": 1.0, "relu": math.sqrt(2.0), "lrelu": math.sqrt(2.0)}
HIGHEST = jax.lax.Precision.HIGHEST
_NHWC = ("NHWC", "HWIO", "NHWC")


# ----------------------------------------------------------------------------- FIR maths ---

def fir_filter_2d(taps) -> np.ndarray:
  """Official `setup_filter`: `outer(f, f) / sum(f)²` (float64, `[F, F]`)."""
  f = np.asarray(taps, np.float64)
  return np.outer(f, f) / f.sum() ** 2


@functools.lru_cache(maxsize=None)
def _polyphase_taps(kernel_size: int, taps: tuple[float, ...]):
  """Constants folding `upfirdn2d(convT_stride2(x, W), f, gain 4)` into phase convolutions.

  With official padding, output pixel `q` of the transposed conv + FIR is
  `y[q] = Σ_i K[q - 2i] x[i]`, `K[d] = Σ_{kk - j + p0 = d} W[kk] g[j]`, with `g` the flipped
  filter times the gain and `p0 = k//2 + (F+1)//2 - (k-1)`. Writing `q = 2m + r` gives, per
  phase `r`, a correlation at input resolution: `y[2m+r] = Σ_u K[r - 2u] x[m + u]`.

  Returns `(C [k, k, T, T, 2, 2], lo, hi)` with `kernel[a, b, r, s] = Σ W[ky, kx] C[ky, kx,
  a, b, r, s]` for tap `(a, b)` ↔ input offset `(a - lo, b - lo)`, phase `(r, s)`; the
  phase convolution pads `lo` before and `hi` after. `kernel_size=1` gives `upsample2d`.
  """
  k, f = kernel_size, len(taps)
  g = fir_filter_2d(taps)[::-1, ::-1] * 4.0
  p0 = k // 2 + (f + 1) // 2 - (k - 1)
  ds = range(p0 - (f - 1), k + p0)                   # all offsets d = kk - j + p0
  lo = max(d // 2 for d in ds)                        # u = -floor(d / 2) spans [-lo, hi]
  hi = -min(d // 2 for d in ds)
  c = np.zeros((k, k, lo + hi + 1, lo + hi + 1, 2, 2))
  for ky in range(k):
    for jy in range(f):
      dy = ky - jy + p0
      for kx in range(k):
        for jx in range(f):
          dx = kx - jx + p0
          c[ky, kx, lo - dy // 2, lo - dx // 2, dy % 2, dx % 2] += g[jy, jx]
  return c, lo, hi


def _depth_to_space(y: jax.Array, channels: int) -> jax.Array:
  """`[N, H, W, (2, 2, C)]` phases → `[N, 2H, 2W, C]` with `out[2m+r, 2n+s] = y[m, n, r, s]`."""
  n, h, w, _ = y.shape
  y = y.reshape(n, h, w, 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * w, channels)


def upsample_2x(x: jax.Array, resample_filter=(1, 3, 3, 1)) -> jax.Array:
  """Official `upfirdn2d.upsample2d(x, f)` for NHWC `x [N, H, W, C]` → `[N, 2H, 2W, C]`.

  Polyphase form (see `_polyphase_taps` with k = 1): each output phase is a weighted sum of
  shifted input slices, elementwise work only. Meant for the few-channel RGB skip path.
  """
  c, lo, hi = _polyphase_taps(1, tuple(float(t) for t in resample_filter))
  n, h, w, ch = x.shape
  xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  phases = []
  for r in range(2):
    for s in range(2):
      acc = None
      for a, b in zip(*np.nonzero(c[0, 0, :, :, r, s])):
        term = xp[:, a:a + h, b:b + w, :] * float(c[0, 0, a, b, r, s])
        acc = term if acc is None else acc + term
      phases.append(acc)
  return _depth_to_space(jnp.concatenate(phases, axis=-1), ch)


def choice_for_resolution(spec: str, resolution: int, choices, name: str) -> str:
  """`spec` is one of `choices` for every resolution, or `"R:choice,R:choice,..."` per
  resolution (resolutions not listed take the first of `choices`); returns the one for
  `resolution`. Example: `choice_for_resolution("8:transpose,16:polyphase", 8, UP_IMPLS,
  "up_impl") == "transpose"`.
  """
  if spec in choices:
    return spec
  table = parse_per_resolution(spec, choices, name)
  return table.get(int(resolution), choices[0])


def parse_per_resolution(spec: str, choices, name: str) -> dict[int, str]:
  """`"8:transpose,16:polyphase"` → `{8: "transpose", 16: "polyphase"}`; `UserError` if bad."""
  table = {}
  for item in str(spec).split(","):
    res, _, choice = item.strip().partition(":")
    if not (res.strip().isdigit() and choice.strip() in choices):
      raise UserError(f"{name}={spec!r} is not understood; use one of {list(choices)} or "
                      f"per resolution like '8:{choices[-1]},16:{choices[0]}'.")
    table[int(res)] = choice.strip()
  return table


def _conv(x, kernel_hwio, padding, precision, lhs_dilation=(1, 1)):
  return jax.lax.conv_general_dilated(
      x, kernel_hwio, window_strides=(1, 1), padding=padding, lhs_dilation=lhs_dilation,
      dimension_numbers=_NHWC, precision=precision)


def up_conv_polyphase(x, weight, resample_filter=(1, 3, 3, 1), precision=None):
  """Official `conv2d_resample(x, W, f, up=2, padding=k//2)` as one phase convolution.

  `x [N, H, W, I]`, `weight [O, I, k, k]` (unflipped, as the official up path uses it)
  → `[N, 2H, 2W, O]` in `x.dtype`. The `T×T` kernel with `4·O` outputs (`T = 3` for the
  3×3/[1,3,3,1] case) is built from `W` once per call (weights only, cheap).
  """
  o, i, k, _ = weight.shape
  c, lo, hi = _polyphase_taps(k, tuple(float(t) for t in resample_filter))
  t = c.shape[2]
  kernel = jnp.einsum("oiyx,yxabrs->abirso", weight.astype(jnp.float32),
                      jnp.asarray(c, jnp.float32), precision=HIGHEST)
  kernel = kernel.reshape(t, t, i, 4 * o).astype(x.dtype)
  y = _conv(x, kernel, [(lo, hi), (lo, hi)], precision)
  return _depth_to_space(y, o)


def up_conv_transpose(x, weight, resample_filter=(1, 3, 3, 1), precision=None):
  """Same result as `up_conv_polyphase`, computed as the official code does: stride-2
  transposed conv (an input-dilated conv) then a separable FIR blur done with shifted slices.
  """
  o, i, k, _ = weight.shape
  taps = np.asarray(resample_filter, np.float64)
  g = (taps / taps.sum() * 2.0)[::-1]                 # flipped, gain 2 per axis
  f = len(taps)
  kernel = jnp.transpose(weight[:, :, ::-1, ::-1], (2, 3, 1, 0)).astype(x.dtype)
  # The blur runs in the compute dtype (bf16 on accelerators): it is a 4-tap average of
  # values already rounded to that dtype, so fp32 would only double its memory traffic
  # (the bf16 parity bar against the fp32 reference holds; tests/test_stylegan2.py).
  y = _conv(x, kernel, [(k - 1, k - 1)] * 2, precision, lhs_dilation=(2, 2))  # [N, 2H+k-2, ..]
  p0 = k // 2 + (f + 1) // 2 - (k - 1)
  p1 = k // 2 + (f - 2) // 2 - (k - 2)
  y = jax.lax.pad(y, jnp.zeros((), y.dtype), ((0, 0, 0), (p0, p1, 0), (p0, p1, 0), (0, 0, 0)))
  out_h, out_w = 2 * x.shape[1], 2 * x.shape[2]
  y = sum(float(g[j]) * y[:, j:j + out_h] for j in range(f))
  y = sum(float(g[j]) * y[:, :, j:j + out_w] for j in range(f))
  return y.astype(x.dtype)


def demodulation_coefficients(weight: jax.Array, styles: jax.Array) -> jax.Array:
  """`d[n, o] = rsqrt(Σ_{i,k} (W[o, i, k] s[n, i])² + 1e-8) = rsqrt(s² @ ΣW²ᵀ + 1e-8)`.

  `weight [O, I, k, k]`, `styles [N, I]` → `[N, O]` float32. Equals the official
  coefficients of the style-scaled weight (SynthesisLayer applies no extra weight gain).
  """
  wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(2, 3))      # [O, I]
  return jax.lax.rsqrt(jnp.dot(jnp.square(styles), wsq.T, precision=HIGHEST) + 1e-8)


def _shared_weight_conv(x, weight, up, resample_filter, up_impl, precision):
  """`conv(x, W)` for one weight `[O, I, k, k]`: same padding, or the 2× up-sampling conv."""
  k = weight.shape[-1]
  if up == 1:
    kernel = jnp.transpose(weight, (2, 3, 1, 0)).astype(x.dtype)
    return _conv(x, kernel, [(k // 2, k // 2)] * 2, precision)
  if up == 2:
    require(up_impl in UP_IMPLS, f"up_impl must be one of {UP_IMPLS}, found {up_impl!r}.")
    fn = up_conv_polyphase if up_impl == "polyphase" else up_conv_transpose
    return fn(x, weight, resample_filter, precision)
  raise UserError(f"modulated_conv2d supports up=1 or up=2, found up={up}.")


def modulated_conv2d(x, weight, styles, *, demodulate=True, up=1, resample_filter=(1, 3, 3, 1),
                     up_impl="polyphase", modulation="activations", precision=None):
  """Official `modulated_conv2d`, in one of two equivalent forms (`MODULATIONS`).

      y[n, ·, ·, o] = d[n, o] · Σ_i conv(x[n, ·, ·, i] · s[n, i], W[o, i])
                    = Σ_i conv(x[n, ·, ·, i], W[o, i] · s[n, i] · d[n, o])
  with `d` from `demodulation_coefficients` (1 if not `demodulate`); for `up == 2` the conv
  is the official transposed conv + FIR (`up_conv_polyphase` / `up_conv_transpose`).
  `modulation="activations"` computes the first line (one shared-weight conv);
  `"weights"` the second: per-sample weights, a conv vmapped over the batch (XLA lowers it
  to one grouped conv with N groups, as the official fused path's `groups=batch_size`).

  `x [N, H, W, I]` in the compute dtype, `weight [O, I, k, k]`, `styles [N, I]` float32
  → `[N, up·H, up·W, O]` float32 (the cast fuses into the caller's epilogue).
  """
  n, h, w, i = x.shape
  o, _, k, _ = weight.shape
  chex.assert_shape(weight, (o, i, k, k))
  chex.assert_shape(styles, (n, i))
  require(modulation in MODULATIONS,
          f"modulation must be one of {MODULATIONS}, found {modulation!r}.")
  if x.dtype == jnp.float16 and demodulate:
    # Official pre-normalisation against float16 overflow; demodulation cancels the scales.
    weight = weight * (1 / math.sqrt(i * k * k)
                       / jnp.max(jnp.abs(weight), axis=(1, 2, 3), keepdims=True))
    styles = styles / jnp.max(jnp.abs(styles), axis=1, keepdims=True)
  dcoefs = demodulation_coefficients(weight, styles) if demodulate else None
  if modulation == "weights":
    per_sample = weight.astype(jnp.float32)[None] * styles[:, None, :, None, None]
    if demodulate:
      per_sample = per_sample * dcoefs[:, :, None, None, None]          # [N, O, I, k, k]
    one = lambda xn, wn: _shared_weight_conv(xn[None], wn, up, resample_filter, up_impl,
                                             precision)[0]
    return jax.vmap(one)(x, per_sample).astype(jnp.float32)
  xs = x * styles.astype(x.dtype)[:, None, None, :]
  y = _shared_weight_conv(xs, weight, up, resample_filter, up_impl, precision)
  y = y.astype(jnp.float32)
  if demodulate:
    y = y * dcoefs[:, None, None, :]
  return y


def activate(x, activation: str, gain: float = 1.0, clamp: float | None = None):
  """Official `bias_act` after the bias: `clamp(act(x) · gain_act · gain, ±clamp·gain)`."""
  if activation == "lrelu":
    x = jnp.where(x >= 0, x, 0.2 * x)
  elif activation == "relu":
    x = jax.nn.relu(x)
  total_gain = ACTIVATION_GAIN[activation] * gain
  if total_gain != 1.0:
    x = x * total_gain
  if clamp is not None:
    x = jnp.clip(x, -clamp * gain, clamp * gain)
  return x


def normalize_2nd_moment(x, eps=1e-8):
  """`x · rsqrt(mean(x², axis=1) + eps)` for `x [N, D]`."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + eps)


def validate_impls(up_impl: str, modulation: str, field: str = "") -> None:
  """`UserError` (before any tracing) when an implementation choice is not understood."""
  for name, spec, choices in (("up_impl", up_impl, UP_IMPLS),
                              ("modulation", modulation, MODULATIONS)):
    choice_for_resolution(spec, 0, choices, f"{field}{name}")
