"""ADA: adaptive discriminator augmentation (Karras et al. 2020, `training/augment.py`).

Every image the discriminator sees (real or generated) goes through the same random
pipeline; each transform is applied to a sample with probability `multiplier * p`, and
`p` is tuned during training so that `E[sign(D(real))]` stays near a target (0.6):

    p <- max(0, p + sign(mean_sign_real - target) * batch * interval / (ada_kimg * 1000))

Transforms (NVIDIA's names and default strengths):
  blit   xflip, rotate90, xint (integer translation up to 0.125 of the size)
  geom   scale, rotate, aniso, xfrac (bilinear resampling; see below)
  color  brightness, contrast, lumaflip, hue, saturation (a 4x4 colour matrix per image)
  extra  noise, cutout
The geometric transforms compose one inverse homogeneous 2-D matrix per image acting on
centred pixel coordinates; the image is then resampled with reflection at the borders.
With only `blit` transforms the coordinates are integers and resampling is an exact
gather; with `geom` it is bilinear, without NVIDIA's 2x sym6 oversampling (a simplification
that matters little at 32x32). Everything is a gather or a linear map of the images, so it
is differentiable to any order (R1 takes a gradient through it).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import require

PIPELINES = {
    "blit": dict(xflip=1, rotate90=1, xint=1),
    "geom": dict(scale=1, rotate=1, aniso=1, xfrac=1),
    "color": dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    "bg": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    "bc": dict(xflip=1, rotate90=1, xint=1, brightness=1, contrast=1, lumaflip=1, hue=1,
               saturation=1),
    "bgc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    "bgcnc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                  brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, noise=1,
                  cutout=1),
}


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """Probability multipliers (0 = off) and strengths; defaults are NVIDIA's."""
  xflip: float = 0.0
  rotate90: float = 0.0
  xint: float = 0.0
  scale: float = 0.0
  rotate: float = 0.0
  aniso: float = 0.0
  xfrac: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  lumaflip: float = 0.0
  hue: float = 0.0
  saturation: float = 0.0
  noise: float = 0.0
  cutout: float = 0.0
  xint_max: float = 0.125
  scale_std: float = 0.2
  rotate_max: float = 1.0
  aniso_std: float = 0.2
  xfrac_std: float = 0.125
  brightness_std: float = 0.2
  contrast_std: float = 0.5
  hue_max: float = 1.0
  saturation_std: float = 1.0
  noise_std: float = 0.1
  cutout_size: float = 0.5

  @property
  def geometric(self) -> bool:
    return any((self.scale, self.rotate, self.aniso, self.xfrac))


def spec_from_name(name: str) -> AugmentSpec:
  """`'bgc'` etc. -> AugmentSpec (UserError for an unknown name)."""
  require(name in PIPELINES, f"config.augpipe={name!r} is not a known pipeline; use one of "
                             f"{sorted(PIPELINES)}.")
  return AugmentSpec(**PIPELINES[name])


def _mat(rows) -> jax.Array:
  """Stacks a nested list of [N] arrays / scalars into [N, R, C] matrices."""
  n = next(x.shape[0] for row in rows for x in row if isinstance(x, jax.Array))
  return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(x, jnp.float32), (n,))
                               for x in row], -1) for row in rows], -2)


def _translate2d(tx, ty):
  return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _scale2d(sx, sy):
  return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate2d(theta):
  return _mat([[jnp.cos(theta), -jnp.sin(theta), 0], [jnp.sin(theta), jnp.cos(theta), 0],
               [0, 0, 1]])


def _gate(key, n, prob, value, identity):
  """`value` where U(0,1) < prob (per sample), else `identity`."""
  keep = jax.random.uniform(key, (n,) + (1,) * (value.ndim - 1)) < prob
  return jnp.where(keep, value, identity)


def geometric_matrix(key: jax.Array, n: int, height: int, width: int, p: jax.Array,
                     spec: AugmentSpec) -> jax.Array:
  """Random inverse transforms `G_inv` [N, 3, 3]: output centred pixel coordinates
  (x - (W-1)/2, y - (H-1)/2, 1) -> input ones, composed in NVIDIA's order."""
  keys = iter(jax.random.split(key, 16))
  u = lambda shape=(n,): jax.random.uniform(next(keys), shape)  # noqa: E731
  g = jnp.broadcast_to(jnp.eye(3), (n, 3, 3))
  if spec.xflip:
    i = _gate(next(keys), n, spec.xflip * p, jnp.floor(u() * 2), 0.0)
    g = g @ _scale2d(1 - 2 * i, 1.0)
  if spec.rotate90:
    i = _gate(next(keys), n, spec.rotate90 * p, jnp.floor(u() * 4), 0.0)
    g = g @ _rotate2d(np.pi / 2 * i)
  if spec.xint:
    t = (u((n, 2)) * 2 - 1) * spec.xint_max
    t = _gate(next(keys), n, spec.xint * p, t, 0.0)
    g = g @ _translate2d(-jnp.round(t[:, 0] * width), -jnp.round(t[:, 1] * height))
  if spec.scale:
    s = jnp.exp2(jax.random.normal(next(keys), (n,)) * spec.scale_std)
    s = _gate(next(keys), n, spec.scale * p, s, 1.0)
    g = g @ _scale2d(1 / s, 1 / s)
  p_rot = 1 - jnp.sqrt(jnp.clip(1 - spec.rotate * p, 0, 1))  # P(pre or post) = rotate * p
  if spec.rotate:
    theta = _gate(next(keys), n, p_rot, (u() * 2 - 1) * np.pi * spec.rotate_max, 0.0)
    g = g @ _rotate2d(theta)
  if spec.aniso:
    s = jnp.exp2(jax.random.normal(next(keys), (n,)) * spec.aniso_std)
    s = _gate(next(keys), n, spec.aniso * p, s, 1.0)
    g = g @ _scale2d(1 / s, s)
  if spec.rotate:
    theta = _gate(next(keys), n, p_rot, (u() * 2 - 1) * np.pi * spec.rotate_max, 0.0)
    g = g @ _rotate2d(theta)
  if spec.xfrac:
    t = jax.random.normal(next(keys), (n, 2)) * spec.xfrac_std
    t = _gate(next(keys), n, spec.xfrac * p, t, 0.0)
    g = g @ _translate2d(-t[:, 0] * width, -t[:, 1] * height)
  return g


def _reflect(i: jax.Array, size: int) -> jax.Array:
  """Index reflection without edge repetition ('reflect' padding), any distance out."""
  if size == 1:
    return jnp.zeros_like(i)
  period = 2 * (size - 1)
  i = jnp.mod(i, period)
  return jnp.where(i >= size, period - i, i)


def apply_geometry(images: jax.Array, g_inv: jax.Array, *, exact: bool) -> jax.Array:
  """Resamples `images` [N, H, W, C]: out[y, x] = in[G_inv @ (x, y, 1)] in centred pixel
  coordinates, reflecting at the borders. `exact=True` rounds the source coordinates
  (integer transforms: flips, 90-degree turns, integer shifts); otherwise bilinear."""
  n, h, w, _ = images.shape
  cx, cy = (w - 1) / 2, (h - 1) / 2
  ys, xs = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
  pts = jnp.stack([xs, ys, jnp.ones_like(xs)], 0).reshape(3, -1)       # [3, H*W]
  src = g_inv[:, :2] @ pts                                              # [N, 2, H*W]
  sx, sy = src[:, 0] + cx, src[:, 1] + cy
  batch = jnp.arange(n)[:, None]
  if exact:
    ix = _reflect(jnp.round(sx).astype(jnp.int32), w)
    iy = _reflect(jnp.round(sy).astype(jnp.int32), h)
    return images[batch, iy, ix].reshape(images.shape)
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  def at(yy, xx):
    return images[batch, _reflect(yy, h), _reflect(xx, w)]
  out = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
         + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
  return out.reshape(images.shape).astype(images.dtype)


def color_matrix(key: jax.Array, n: int, p: jax.Array, spec: AugmentSpec) -> jax.Array:
  """Random colour transforms `C` [N, 4, 4] acting on homogeneous (r, g, b, 1)."""
  keys = iter(jax.random.split(key, 10))
  eye = jnp.broadcast_to(jnp.eye(4), (n, 4, 4))
  c = eye
  v = jnp.asarray([1, 1, 1, 0], jnp.float32) / np.sqrt(3)               # luma axis
  vv = jnp.outer(v, v)
  if spec.brightness:
    b = jax.random.normal(next(keys), (n,)) * spec.brightness_std
    b = _gate(next(keys), n, spec.brightness * p, b, 0.0)
    c = _mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]]) @ c
  if spec.contrast:
    s = jnp.exp2(jax.random.normal(next(keys), (n,)) * spec.contrast_std)
    s = _gate(next(keys), n, spec.contrast * p, s, 1.0)
    c = _mat([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]]) @ c
  if spec.lumaflip:
    i = jnp.floor(jax.random.uniform(next(keys), (n, 1, 1)) * 2)
    i = _gate(next(keys), n, spec.lumaflip * p, i, 0.0)
    c = (eye - 2 * vv * i) @ c                                          # Householder
  if spec.hue:
    theta = (jax.random.uniform(next(keys), (n,)) * 2 - 1) * np.pi * spec.hue_max
    theta = _gate(next(keys), n, spec.hue * p, theta, 0.0)
    s, co = jnp.sin(theta), jnp.cos(theta)
    cc, k = 1 - co, 1 / np.sqrt(3)                                      # rotate about v
    a, b = k * k * cc + co, k * k * cc
    c = _mat([[a, b - k * s, b + k * s, 0], [b + k * s, a, b - k * s, 0],
              [b - k * s, b + k * s, a, 0], [0, 0, 0, 1]]) @ c
  if spec.saturation:
    s = jnp.exp2(jax.random.normal(next(keys), (n, 1, 1)) * spec.saturation_std)
    s = _gate(next(keys), n, spec.saturation * p, s, 1.0)
    c = (vv + (jnp.eye(4) - vv) * s) @ c
  return c


def apply_color(images: jax.Array, c: jax.Array) -> jax.Array:
  """`out = C[:3, :3] @ rgb + C[:3, 3]` per image; for 1 channel, NVIDIA's grey rule."""
  ch = images.shape[-1]
  if ch == 3:
    out = jnp.einsum("nij,nhwj->nhwi", c[:, :3, :3], images) + c[:, None, None, :3, 3]
  elif ch == 1:
    m = c[:, :3].mean(axis=1)                                           # [N, 4]
    out = images * m[:, None, None, :3].sum(-1, keepdims=True) + m[:, None, None, 3:]
  else:
    raise ValueError(f"colour augmentation needs 1 or 3 channels, got {ch}")
  return out.astype(images.dtype)


def augment(images: jax.Array, p: jax.Array, key: jax.Array, spec: AugmentSpec) -> jax.Array:
  """The ADA pipeline on `images` [N, H, W, C] (float, about [-1, 1]) at strength `p`."""
  n, h, w, ch = images.shape
  k_geom, k_color, k_noise, k_cut = jax.random.split(key, 4)
  if any((spec.xflip, spec.rotate90, spec.xint)) or spec.geometric:
    require(h == w or not spec.rotate90 and not spec.rotate,
            f"rotations need square images, got {h}x{w}; set config.augpipe to one without "
            "rotations (e.g. 'color').")
    g = geometric_matrix(k_geom, n, h, w, p, spec)
    images = apply_geometry(images, g, exact=not spec.geometric)
  if any((spec.brightness, spec.contrast, spec.lumaflip)) or (
      ch > 1 and (spec.hue or spec.saturation)):
    images = apply_color(images, color_matrix(k_color, n, p, spec))
  if spec.noise:
    k1, k2, k3 = jax.random.split(k_noise, 3)
    sigma = jnp.abs(jax.random.normal(k1, (n, 1, 1, 1))) * spec.noise_std
    sigma = _gate(k2, n, spec.noise * p, sigma, 0.0)
    images = images + jax.random.normal(k3, images.shape, images.dtype) * sigma
  if spec.cutout:
    k1, k2 = jax.random.split(k_cut)
    size = _gate(k1, n, spec.cutout * p, jnp.full((n, 2), spec.cutout_size), 0.0)
    center = jax.random.uniform(k2, (n, 2))
    mx = jnp.abs((jnp.arange(w) + 0.5) / w - center[:, :1]) >= size[:, :1] / 2   # [N, W]
    my = jnp.abs((jnp.arange(h) + 0.5) / h - center[:, 1:]) >= size[:, 1:] / 2   # [N, H]
    mask = jnp.logical_or(mx[:, None, :], my[:, :, None])[..., None]
    images = images * mask.astype(images.dtype)
  return images


def ada_adjust(p: jax.Array, mean_sign_real: jax.Array, *, target: float, batch_size: int,
               interval: int, ada_kimg: float) -> jax.Array:
  """One ADA step: `max(0, p + sign(mean_sign_real - target) * batch*interval/(kimg*1000))`."""
  step = batch_size * interval / (ada_kimg * 1000.0)
  return jnp.maximum(p + jnp.sign(mean_sign_real - target) * step, 0.0)
