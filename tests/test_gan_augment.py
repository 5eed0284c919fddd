"""ADA augmentation: invertibility of the integer transforms, NumPy references, empirical
probabilities, differentiability, and the adaptive-p rule."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.gan import augment as A
from palm_jax.runtime.errors import UserError

IMGS = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 3)), jnp.float32)


def _translation(tx, ty, n=1):
  """G_inv of a shift by (tx, ty) pixels: out[y, x] = in[y - ty, x - tx]."""
  m = np.tile(np.eye(3, dtype=np.float32), (n, 1, 1))
  m[:, 0, 2], m[:, 1, 2] = -tx, -ty
  return jnp.asarray(m)


def _reflect(i, size):
  period = 2 * (size - 1)
  i = np.mod(i, period)
  return np.where(i >= size, period - i, i)


def test_p_zero_is_identity():
  out = A.augment(IMGS, jnp.float32(0.0), jax.random.key(0), A.spec_from_name("bgcnc"))
  np.testing.assert_allclose(out, IMGS, atol=1e-6)
  with pytest.raises(UserError, match="augpipe='nope'"):
    A.spec_from_name("nope")


def test_flip_twice_is_identity():
  spec = A.AugmentSpec(xflip=1)
  key = jax.random.key(1)
  once = A.augment(IMGS, jnp.float32(1.0), key, spec)
  np.testing.assert_array_equal(A.augment(once, jnp.float32(1.0), key, spec), IMGS)
  flipped = np.all(np.asarray(once) == np.asarray(IMGS)[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(np.asarray(once) == np.asarray(IMGS), axis=(1, 2, 3))
  assert np.all(flipped | kept) and flipped.any() and kept.any()


def test_integer_translation_matches_numpy_and_inverts():
  x = np.asarray(IMGS[:1])
  shifted = A.apply_geometry(IMGS[:1], _translation(2, -3), exact=True)
  yy, xx = np.mgrid[:8, :8]
  want = x[0][_reflect(yy + 3, 8), _reflect(xx - 2, 8)]
  np.testing.assert_array_equal(shifted[0], want)
  back = A.apply_geometry(shifted, _translation(-2, 3), exact=True)
  np.testing.assert_array_equal(back[0, 3:, :6], x[0, 3:, :6])   # all but the lost border
  # Bilinear resampling agrees with the exact gather at integer shifts.
  bil = A.apply_geometry(IMGS[:1], _translation(2, -3), exact=False)
  np.testing.assert_allclose(bil, shifted, atol=1e-6)


def test_rotate90_four_times_is_identity_and_matches_numpy():
  g = np.tile(np.eye(3, dtype=np.float32), (1, 1, 1))
  g[0, :2, :2] = [[0, -1], [1, 0]]       # G_inv of a 90-degree turn
  x = IMGS[:1]
  once = A.apply_geometry(x, jnp.asarray(g), exact=True)
  assert any(np.array_equal(once[0], np.rot90(np.asarray(x[0]), k)) for k in (1, 3))
  y = x
  for _ in range(4):
    y = A.apply_geometry(y, jnp.asarray(g), exact=True)
  np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("name,p,changed_prob", [("xflip", 0.4, 0.2), ("brightness", 0.3, 0.3),
                                                 ("xint", 0.5, None)])
def test_empirical_probability(name, p, changed_prob):
  n = 4000
  imgs = jnp.broadcast_to(jnp.arange(8.0)[None, None, :, None] / 8, (n, 8, 8, 3))
  spec = dataclasses.replace(A.AugmentSpec(), **{name: 1.0})
  out = np.asarray(A.augment(imgs, jnp.float32(p), jax.random.key(2), spec))
  changed = np.any(np.abs(out - np.asarray(imgs)) > 1e-6, axis=(1, 2, 3)).mean()
  if changed_prob is None:   # xint: p * P(round(U(-1,1) * 0.125 * 8) != 0) = p * 0.5
    changed_prob = p * (1 - 0.5 / (0.125 * 8))
  assert abs(changed - changed_prob) < 4 * np.sqrt(changed_prob * (1 - changed_prob) / n)


def test_color_transforms_match_definitions():
  key = jax.random.key(3)
  x = IMGS
  # Hue rotation turns about the grey axis: the per-pixel channel mean is unchanged.
  hue = A.augment(x, jnp.float32(1.0), key, A.AugmentSpec(hue=1))
  np.testing.assert_allclose(hue.mean(-1), x.mean(-1), atol=1e-5)
  assert float(jnp.abs(hue - x).max()) > 0.1
  # apply_color is C[:3,:3] @ rgb + C[:3, 3], per image.
  c = A.color_matrix(key, 16, jnp.float32(1.0), A.spec_from_name("color"))
  want = np.einsum("nij,nhwj->nhwi", np.asarray(c)[:, :3, :3], np.asarray(x)) \
      + np.asarray(c)[:, None, None, :3, 3]
  np.testing.assert_allclose(A.apply_color(x, c), want, atol=1e-5)
  # Luma flip is a Householder reflection: applying it twice is the identity.
  c = A.color_matrix(key, 16, jnp.float32(1.0), A.AugmentSpec(lumaflip=1))
  np.testing.assert_allclose(c @ c, np.broadcast_to(np.eye(4), (16, 4, 4)), atol=1e-6)


def test_differentiable_to_second_order():
  spec = A.spec_from_name("bgc")
  w = jax.random.normal(jax.random.key(4), IMGS.shape)
  f = lambda x: jnp.sum(A.augment(x, jnp.float32(0.8), jax.random.key(5), spec) * w)  # noqa
  g = jax.grad(f)(IMGS)
  assert g.shape == IMGS.shape and np.all(np.isfinite(g))
  r1 = jax.grad(lambda s: jnp.sum(jax.grad(lambda x: s * f(x) ** 2)(IMGS) ** 2))(1.0)
  assert np.isfinite(r1)
  # A blit-only pipeline permutes pixels: the gradient is w moved back, same total.
  blit = A.spec_from_name("blit")
  gb = jax.grad(lambda x: jnp.sum(A.augment(x, jnp.float32(0.0), jax.random.key(6), blit) * w))
  np.testing.assert_allclose(gb(IMGS), w, atol=1e-6)


def test_ada_adjust_rule():
  kw = dict(target=0.6, batch_size=64, interval=4, ada_kimg=500)
  step = 64 * 4 / 500e3
  np.testing.assert_allclose(A.ada_adjust(jnp.float32(0.1), jnp.float32(0.9), **kw),
                             0.1 + step, rtol=1e-6)
  np.testing.assert_allclose(A.ada_adjust(jnp.float32(0.1), jnp.float32(0.2), **kw),
                             0.1 - step, rtol=1e-6)
  assert float(A.ada_adjust(jnp.float32(0.0), jnp.float32(-1.0), **kw)) == 0.0
