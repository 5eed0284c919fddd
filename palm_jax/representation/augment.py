"""SimSiam's CIFAR augmentations in pure JAX (the "PALM + data aug" variant).

torchvision pipeline of SimSiam's CIFAR experiments, applied per sample in this order:
  1. RandomResizedCrop(size=(H, W), scale=(0.2, 1.0), ratio=(3/4, 4/3)), bilinear;
  2. RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8): brightness, contrast,
     saturation and hue factors drawn as torchvision does and applied in a *random order*
     (a uniformly random permutation per image, as `ColorJitter.forward`);
  3. RandomGrayscale(p=0.2);
  4. RandomHorizontalFlip(p=0.5).
Colour operations follow torchvision's tensor implementation on floats in [0, 1]
(clamped after each operation; grey = 0.2989 R + 0.587 G + 0.114 B; hue through HSV).
The crop follows `RandomResizedCrop.get_params` (10 tries, then a centre crop) and
resamples like `F.interpolate(mode="bilinear", align_corners=False)`; crops are never
larger than the image, so antialiasing (which only acts when downsampling) is moot.

Images in: uint8 `[..., H, W, 3]` in [0, 255] or float in [-1, 1] (the codebase's
convention, see `palm_jax.models.resnet`). Images out: float32 in [-1, 1], same shape.
Everything is jittable; `augment_image` works on one image and is vmapped by `augment`.
"""
from __future__ import annotations

import math
from typing import Sequence

import chex
import jax
import jax.numpy as jnp

from palm_jax.models.resnet import images_to_unit

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def sample_crop(key: jax.Array, height: int, width: int,
                scale: Sequence[float] = (0.2, 1.0),
                ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                attempts: int = 10) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """torchvision's `RandomResizedCrop.get_params`: int32 scalars `(top, left, h, w)`.

  Each try draws `area ~ U(scale) · H·W` and `log(aspect) ~ U(log ratio)`, sets
  `w = round(sqrt(area·aspect))`, `h = round(sqrt(area/aspect))` and keeps the first try
  with `0 < w ≤ W` and `0 < h ≤ H`, at `top ~ U{0..H-h}`, `left ~ U{0..W-w}`; if none fits,
  the centre crop with the aspect ratio clamped into `ratio`.
  """
  # One draw for everything: each random-bits call site compiles its own hash rounds.
  u = jax.random.uniform(key, (2 * attempts + 2,))
  area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:attempts])
  log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[attempts:-2]
  aspect = jnp.exp(log_r)
  ws = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  hs = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  ok = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
  first = jnp.argmax(ok)  # index of the first valid try (0 when none is valid)
  # Fallback (static): the whole image, or its centre with the ratio clamped.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fw, fh = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fw, fh = int(round(height * max(ratio))), height
  else:
    fw, fh = width, height
  found = jnp.any(ok)
  h = jnp.where(found, hs[first], fh)
  w = jnp.where(found, ws[first], fw)
  # Uniform integers in {0, ..., H - h}: floor(u · (H − h + 1)), guarded against u → 1.
  top = jnp.where(found, jnp.minimum(jnp.floor(u[-2] * (height - h + 1)), height - h),
                  (height - fh) // 2)
  left = jnp.where(found, jnp.minimum(jnp.floor(u[-1] * (width - w + 1)), width - w),
                   (width - fw) // 2)
  return top.astype(jnp.int32), left.astype(jnp.int32), h, w


def _source_index(start, size, out_size: int):
  """Bilinear taps along one axis (PyTorch `align_corners=False`): `(i0, i1, frac)`.

  `src = (dst + 0.5) · size / out_size − 0.5`, clamped below at 0; `i0 = floor(src)`,
  `i1 = min(i0 + 1, size − 1)`, both offset by `start`; `frac = src − i0`.
  """
  size_f = jnp.asarray(size, jnp.float32)
  src = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * (size_f / out_size) - 0.5
  src = jnp.maximum(src, 0.0)
  i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), size - 1)
  i1 = jnp.minimum(i0 + 1, size - 1)
  return start + i0, start + i1, src - i0.astype(jnp.float32)


def resized_crop(image: jax.Array, top, left, height, width,
                 out_size: tuple[int, int] | None = None) -> jax.Array:
  """Crops `image[top:top+height, left:left+width]` and resizes it bilinearly.

  `image`: float `[H, W, C]`; crop box scalars may be traced; returns float32
  `[out_h, out_w, C]` (default: the input's size). A full-size crop is the identity.
  """
  chex.assert_rank(image, 3)
  out_h, out_w = out_size or image.shape[:2]
  image = image.astype(jnp.float32)
  y0, y1, fy = _source_index(top, height, out_h)
  x0, x1, fx = _source_index(left, width, out_w)
  rows = (image[y0] * (1.0 - fy)[:, None, None] + image[y1] * fy[:, None, None])
  return rows[:, x0] * (1.0 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def random_resized_crop(key: jax.Array, image: jax.Array,
                        scale: Sequence[float] = (0.2, 1.0),
                        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0)) -> jax.Array:
  """RandomResizedCrop to the input's own size: float `[H, W, C]` → float32 `[H, W, C]`."""
  h, w = image.shape[:2]
  top, left, ch, cw = sample_crop(key, h, w, scale, ratio)
  return resized_crop(image, top, left, ch, cw)


def rgb_to_gray(image: jax.Array) -> jax.Array:
  """`[..., 3] → [...]`: `0.2989 R + 0.587 G + 0.114 B` (torchvision's weights)."""
  return image @ jnp.asarray(GRAY_WEIGHTS, image.dtype)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
  """RGB in [0, 1] `[..., 3]` → HSV in [0, 1] `[..., 3]` (hue as a fraction of a turn).

  The hue's sextant is chosen by `argmax` over channels (first maximum wins: R, then G,
  then B, as torchvision) rather than by float equality `max == r`, which XLA may break by
  recomputing a channel in another fusion; the formula is continuous across ties.
  """
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  maxc, minc = jnp.max(image, axis=-1), jnp.min(image, axis=-1)
  chroma = maxc - minc
  colourful = chroma > 0
  div = jnp.where(colourful, chroma, 1.0)
  which = jnp.argmax(image, axis=-1)
  h = jnp.where(which == 0, (g - b) / div,
                jnp.where(which == 1, 2.0 + (b - r) / div, 4.0 + (r - g) / div))
  h = jnp.mod(jnp.where(colourful, h, 0.0) / 6.0 + 1.0, 1.0)
  s = jnp.where(colourful, chroma / jnp.where(colourful, maxc, 1.0), 0.0)
  return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
  """HSV in [0, 1] `[..., 3]` → RGB in [0, 1] `[..., 3]` (the sextant formula)."""
  h, s, v = image[..., 0], image[..., 1], image[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  i = jnp.mod(i.astype(jnp.int32), 6)
  p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
  q = jnp.clip(v * (1.0 - s * f), 0.0, 1.0)
  t = jnp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
  table = jnp.stack([
      jnp.stack([v, q, p, p, t, v], axis=-1),
      jnp.stack([t, v, v, q, p, p], axis=-1),
      jnp.stack([p, p, t, v, v, q], axis=-1)], axis=-2)  # [..., 3, 6]
  return jnp.take_along_axis(table, i[..., None, None], axis=-1)[..., 0]


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """`clip(factor · x, 0, 1)`; `image` float `[H, W, 3]` in [0, 1]."""
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """`clip(factor · x + (1 − factor) · mean(grey(x)), 0, 1)` (mean over the whole image)."""
  mean = jnp.mean(rgb_to_gray(image))
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """`clip(factor · x + (1 − factor) · grey(x), 0, 1)` per pixel."""
  grey = rgb_to_gray(image)[..., None]
  return jnp.clip(factor * image + (1.0 - factor) * grey, 0.0, 1.0)


def adjust_hue(image: jax.Array, shift) -> jax.Array:
  """Rotates hue by `shift` turns (in [-0.5, 0.5]): HSV `h ← (h + shift) mod 1`."""
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
  return hsv_to_rgb(hsv)


def color_jitter(key: jax.Array, image: jax.Array, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1) -> jax.Array:
  """torchvision's ColorJitter on one float `[H, W, 3]` image in [0, 1].

  Factors `b, c, s ~ U[max(0, 1 − x), 1 + x]`, hue shift `~ U[−hue, hue]`, the four
  operations applied in a uniformly random order.
  """
  u = jax.random.uniform(key, (8,))  # one draw (see `sample_crop`)
  lerp = lambda t, lo, hi: lo + (hi - lo) * t  # noqa: E731
  b = lerp(u[0], max(0.0, 1.0 - brightness), 1.0 + brightness)
  c = lerp(u[1], max(0.0, 1.0 - contrast), 1.0 + contrast)
  s = lerp(u[2], max(0.0, 1.0 - saturation), 1.0 + saturation)
  h = lerp(u[3], -hue, hue)
  branches = (lambda x: adjust_brightness(x, b), lambda x: adjust_contrast(x, c),
              lambda x: adjust_saturation(x, s), lambda x: adjust_hue(x, h))
  order = jnp.argsort(u[4:])  # a uniformly random permutation of the four operations
  # A loop (not 4 unrolled switches) keeps the compiled program 4x smaller.
  return jax.lax.fori_loop(0, 4, lambda i, x: jax.lax.switch(order[i], branches, x), image)


def augment_image(key: jax.Array, image: jax.Array, *,
                  scale: Sequence[float] = (0.2, 1.0),
                  ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                  jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
                  p_jitter: float = 0.8, p_gray: float = 0.2,
                  p_flip: float = 0.5) -> jax.Array:
  """One random view of one image: `[H, W, 3]` uint8 or float [-1, 1] → float32 [-1, 1].

  crop → (p_jitter) colour jitter → (p_gray) greyscale → (p_flip) horizontal flip.
  """
  chex.assert_rank(image, 3)
  k_crop, k_jit, k_coin = jax.random.split(key, 3)
  coin = jax.random.uniform(k_coin, (3,))  # the three Bernoulli decisions
  x = random_resized_crop(k_crop, images_to_unit(image), scale, ratio)
  if p_jitter > 0:
    x = jnp.where(coin[0] < p_jitter, color_jitter(k_jit, x, *jitter), x)
  if p_gray > 0:
    x = jnp.where(coin[1] < p_gray, jnp.broadcast_to(rgb_to_gray(x)[..., None], x.shape), x)
  if p_flip > 0:
    x = jnp.where(coin[2] < p_flip, x[:, ::-1], x)
  return x * 2.0 - 1.0


def augment(key: jax.Array, images: jax.Array, **kwargs) -> jax.Array:
  """Independent random views of a batch: `[B, H, W, 3]` → float32 `[B, H, W, 3]` in [-1, 1].

  Sample `i` uses the `i`-th key of `jax.random.split(key, B)`, so the result is a pure
  function of `(key, images)`. Keyword arguments as `augment_image`.
  """
  chex.assert_rank(images, 4)
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment_image(k, x, **kwargs))(keys, images)


def augment_pair(key: jax.Array, images: jax.Array, **kwargs) -> tuple[jax.Array, jax.Array]:
  """Two independent views `(x1, x2)` of each image, each float32 `[B, H, W, 3]` in [-1, 1]."""
  views = jax.vmap(lambda k: augment(k, images, **kwargs))(jax.random.split(key))
  return views[0], views[1]
