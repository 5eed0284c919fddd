"""SimSiam's CIFAR augmentations in JAX: shapes, ranges, probabilities, exact sub-steps."""
import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.representation import augment as aug

# Identity crop, no colour jitter: each output is the image, flipped and/or greyed.
FLIP_GRAY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), p_jitter=0.0, p_gray=0.2, p_flip=0.5)


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8))


def test_shapes_ranges_and_determinism(images):
  pair = jax.jit(aug.augment_pair)
  x1, x2 = pair(jax.random.key(0), images)
  for x in (x1, x2):
    assert x.shape == images.shape and x.dtype == jnp.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
  assert np.abs(np.asarray(x1) - np.asarray(x2)).max() > 0.1  # independent views
  y1, y2 = pair(jax.random.key(0), images)
  np.testing.assert_array_equal(x1, y1)  # a pure function of the key
  np.testing.assert_array_equal(x2, y2)
  z1, _ = pair(jax.random.key(1), images)
  assert np.abs(np.asarray(x1) - np.asarray(z1)).max() > 0.1


def test_full_crop_is_identity(images):
  x = images[0].astype(jnp.float32)
  np.testing.assert_array_equal(aug.resized_crop(x, 0, 0, 16, 16), x)
  sample = jax.jit(lambda k: aug.sample_crop(k, 16, 16, (1.0, 1.0), (1.0, 1.0)))
  top, left, h, w = sample(jax.random.key(3))
  assert (int(top), int(left), int(h), int(w)) == (0, 0, 16, 16)


def np_bilinear(img, top, left, h, w, out):
  """PyTorch's bilinear (align_corners=False) on the crop, written per output pixel."""
  crop = img[top:top + h, left:left + w].astype(np.float64)
  res = np.zeros((out, out, img.shape[2]))
  for oy in range(out):
    for ox in range(out):
      sy = max((oy + 0.5) * h / out - 0.5, 0.0)
      sx = max((ox + 0.5) * w / out - 0.5, 0.0)
      y0, x0 = int(sy), int(sx)
      y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
      ly, lx = sy - y0, sx - x0
      res[oy, ox] = ((1 - ly) * ((1 - lx) * crop[y0, x0] + lx * crop[y0, x1])
                     + ly * ((1 - lx) * crop[y1, x0] + lx * crop[y1, x1]))
  return res


def test_resized_crop_matches_bilinear_reference(images):
  img = np.asarray(images[1])
  for top, left, h, w in [(2, 3, 7, 11), (0, 5, 16, 9), (9, 0, 5, 5)]:
    got = aug.resized_crop(jnp.asarray(img, jnp.float32), top, left, h, w)
    np.testing.assert_allclose(got, np_bilinear(img, top, left, h, w, 16), rtol=1e-5,
                               atol=1e-3)


def np_crop_sizes(rng, n, size=32, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop.get_params (sizes only), re-written in NumPy."""
  out = []
  for _ in range(n):
    for _ in range(10):
      area = size * size * rng.uniform(*scale)
      aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
      w, h = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
      if 0 < w <= size and 0 < h <= size:
        break
    else:
      w = h = size
    out.append((h, w))
  return np.array(out)


def test_crop_parameters_follow_torchvision_distribution():
  n = 2000
  keys = jax.random.split(jax.random.key(0), n)
  top, left, h, w = map(np.asarray, jax.jit(jax.vmap(lambda k: aug.sample_crop(k, 32, 32)))(
      keys))
  assert np.all((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32))
  area = h * w / 1024.0
  assert area.min() >= 0.2 * 0.8 and area.max() <= 1.0  # rounding widens by a pixel
  ref = np_crop_sizes(np.random.default_rng(0), n)
  ref_area = ref[:, 0] * ref[:, 1] / 1024.0
  # Retries favour small crops, so the mean area is below E[U(0.2, 1)] = 0.6.
  assert area.mean() == pytest.approx(ref_area.mean(), abs=4 * ref_area.std() / np.sqrt(n))
  log_ratio, ref_log_ratio = np.log(w / h), np.log(ref[:, 1] / ref[:, 0])
  assert log_ratio.mean() == pytest.approx(ref_log_ratio.mean(), abs=0.02)
  assert log_ratio.std() == pytest.approx(ref_log_ratio.std(), rel=0.1)
  # Offsets are uniform over the valid range: mean relative position 1/2.
  slack = 32 - h
  rel = top[slack > 0] / slack[slack > 0]
  assert rel.mean() == pytest.approx(0.5, abs=0.05)


def test_flip_and_grayscale_probabilities():
  n = 4000
  rng = np.random.default_rng(2)
  imgs = rng.integers(0, 256, size=(n, 2, 2, 3), dtype=np.uint8)
  fn = jax.jit(lambda k, x: aug.augment(k, x, **FLIP_GRAY))
  out = np.asarray(fn(jax.random.key(4), jnp.asarray(imgs)))
  x = imgs / 127.5 - 1.0
  gray = np.all(np.isclose(out, out[..., :1], atol=1e-6), axis=(1, 2, 3))
  x_gray = np.repeat((x + 1) / 2 @ np.array(aug.GRAY_WEIGHTS), 3, -1).reshape(x.shape) * 2 - 1
  base = np.where(gray[:, None, None, None], x_gray, x)
  flipped = np.all(np.isclose(out, base[:, :, ::-1], atol=1e-5), axis=(1, 2, 3))
  kept = np.all(np.isclose(out, base, atol=1e-5), axis=(1, 2, 3))
  assert np.all(flipped | kept)  # the crop of scale 1, ratio 1 changed nothing
  assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / n)
  assert abs(gray.mean() - 0.2) < 4 * np.sqrt(0.16 / n)
  assert abs(np.mean(flipped & gray) - 0.1) < 4 * np.sqrt(0.09 / n)  # independent coins


def test_color_ops_match_references():
  rng = np.random.default_rng(3)
  img = rng.uniform(size=(5, 5, 3)).astype(np.float32)
  img[0, 0] = [0.5, 0.5, 0.5]  # grey pixel: hue undefined, saturation 0
  hsv = np.asarray(aug.rgb_to_hsv(jnp.asarray(img)))
  want = np.array([colorsys.rgb_to_hsv(*p) for p in img.reshape(-1, 3)]).reshape(img.shape)
  np.testing.assert_allclose(hsv, want, atol=1e-5)
  np.testing.assert_allclose(aug.hsv_to_rgb(jnp.asarray(hsv)), img, atol=1e-5)
  shifted = np.asarray(aug.adjust_hue(jnp.asarray(img), 0.1))
  want = np.array([colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v)
                   for h, s, v in want.reshape(-1, 3)]).reshape(img.shape)
  np.testing.assert_allclose(shifted, want, atol=1e-5)
  gray = img @ np.array(aug.GRAY_WEIGHTS)
  np.testing.assert_allclose(aug.adjust_brightness(jnp.asarray(img), 1.3),
                             np.clip(1.3 * img, 0, 1), atol=1e-6)
  np.testing.assert_allclose(aug.adjust_contrast(jnp.asarray(img), 0.7),
                             np.clip(0.7 * img + 0.3 * gray.mean(), 0, 1), atol=1e-6)
  np.testing.assert_allclose(aug.adjust_saturation(jnp.asarray(img), 1.4),
                             np.clip(1.4 * img - 0.4 * gray[..., None], 0, 1), atol=1e-6)
  # Factor 1 / shift 0 is the identity for the jitter as a whole.
  same = aug.color_jitter(jax.random.key(0), jnp.asarray(img), 0.0, 0.0, 0.0, 0.0)
  np.testing.assert_allclose(same, img, atol=1e-5)
