"""The StyleGAN2-ADA discriminator against plain NumPy: layers, minibatch-std, the whole
'orig' network at 8x8 (conditional projection included), shapes, bf16."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.models import discriminator as dm
from palm_jax.runtime.errors import UserError

F2 = np.outer(dm.FIR_1D, dm.FIR_1D)


def np_conv(x, w, stride=1, pad=0):
  """NHWC x HWIO cross-correlation, zero padding."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k = w.shape[0]
  h = (x.shape[1] - k) // stride + 1
  wo = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], h, wo, w.shape[-1]))
  for i in range(k):
    for j in range(k):
      patch = x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      out += patch @ w[i, j]
  return out


def np_blur(x, pad):
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  c = x.shape[-1]
  return np_conv(x, np.einsum("ij,cd->ijcd", F2, np.eye(c)))


def np_lrelu(x, gain=1.0, clamp=None):
  y = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2) * gain
  return y if clamp is None else np.clip(y, -clamp * gain, clamp * gain)


def np_mbstd(x, group):
  """NVIDIA's MinibatchStdLayer (F = 1) in NumPy, NHWC."""
  n, h, w, c = x.shape
  g = min(group, n)
  y = x.reshape(g, n // g, h, w, c)
  sd = np.sqrt(((y - y.mean(0)) ** 2).mean(0) + 1e-8)     # [n/g, h, w, c]
  s = sd.mean(axis=(1, 2, 3))                              # [n/g]
  s = np.tile(s, g)                                        # sample i -> group i mod n/g
  return np.concatenate([x, np.broadcast_to(s[:, None, None, None], (n, h, w, 1))], -1)


def test_fir_blur_and_bias_act_match_numpy():
  x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(dm.fir_blur(jnp.asarray(x), 2), np_blur(x, 2), atol=1e-5)
  b = np.array([0.1, -0.2, 0.3], np.float32)
  got = dm.bias_act(jnp.asarray(x), jnp.asarray(b), "lrelu", gain=0.5, clamp=0.4)
  np.testing.assert_allclose(got, np_lrelu(x + b, 0.5, 0.4), atol=1e-6)
  np.testing.assert_allclose(dm.bias_act(jnp.asarray(x), None, "linear", gain=2.0), 2 * x)


@pytest.mark.parametrize("group", [2, 4, 8])
def test_minibatch_std_matches_numpy(group):
  x = np.random.default_rng(1).normal(size=(8, 4, 4, 5)).astype(np.float32)
  np.testing.assert_allclose(dm.minibatch_std(jnp.asarray(x), group), np_mbstd(x, group),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(UserError, match="group size 3"):
    dm.minibatch_std(jnp.asarray(x), 3)


def _np_dense(x, p, act, lr=1.0):
  y = x @ (p["weight"] * lr / np.sqrt(x.shape[1])) + p["bias"] * lr
  return np_lrelu(y) if act else y


def np_discriminator(p, img, c, clamp, group, cmap_dim, map_layers):
  """The 8x8 'orig' conditional discriminator, written out in NumPy."""
  def conv(x, q, act=True, down=False):
    w = q["weight"] / np.sqrt(np.prod(q["weight"].shape[:3]))
    if down:
      y = np_conv(np_blur(x, 2), w, stride=2)
    else:
      y = np_conv(x, w, pad=w.shape[0] // 2)
    return np_lrelu(y + q["bias"], clamp=clamp)
  x = conv(img, p["b8_fromrgb"])
  x = conv(x, p["b8_conv0"])
  x = conv(x, p["b8_conv1"], down=True)
  x = np_mbstd(x, group)
  x = conv(x, p["b4_conv"])
  x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
  x = _np_dense(x, p["b4_fc"], True)
  x = _np_dense(x, p["b4_out"], False)
  m = p["mapping"]
  y = _np_dense(c, m["embed"], False)
  y = y / np.sqrt((y ** 2).mean(1, keepdims=True) + 1e-8)
  for i in range(map_layers):
    y = _np_dense(y, m[f"fc{i}"], True, lr=0.01)
  return (x * y).sum(1) / np.sqrt(cmap_dim)


def test_orig_conditional_discriminator_matches_numpy():
  D = dm.Discriminator(c_dim=5, img_resolution=8, architecture="orig", channel_base=64,
                       channel_max=8, conv_clamp=0.5, mbstd_group_size=2, mapping_layers=2)
  rng = np.random.default_rng(2)
  img = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
  c = np.eye(5, dtype=np.float32)[[0, 3, 1, 4]]
  params = D.init(jax.random.key(0), jnp.asarray(img), jnp.asarray(c))["params"]
  # Random biases (zero at init) so that every bias path is checked too.
  params = jax.tree_util.tree_map_with_path(
      lambda path, v: v + 0.3 * rng.normal(size=v.shape).astype(np.float32)
      if path[-1].key == "bias" else v, params)
  p = jax.tree.map(np.asarray, params)
  got = D.apply({"params": params}, jnp.asarray(img), jnp.asarray(c))
  want = np_discriminator(p, img, c, clamp=0.5, group=2, cmap_dim=8, map_layers=2)
  assert got.shape == (4,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch,c_dim", [("orig", 0), ("resnet", 3)])
def test_shapes_and_bf16(arch, c_dim):
  D = dm.Discriminator(c_dim=c_dim, img_resolution=16, architecture=arch, channel_base=128,
                       channel_max=16, num_fp16_res=2, conv_clamp=256, mbstd_group_size=4,
                       mapping_layers=1)
  img = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  c = jax.nn.one_hot(jnp.arange(4) % max(c_dim, 1), c_dim)
  variables = D.init(jax.random.key(1), img, c)
  names = set(variables["params"])
  assert {"b16_fromrgb", "b16_conv0", "b16_conv1", "b8_conv1", "b4_conv", "b4_out"} <= names
  assert ("b16_skip" in names) == (arch == "resnet") and ("mapping" in names) == (c_dim > 0)
  assert variables["params"]["b4_out"]["weight"].shape == (16, 16 if c_dim else 1)
  out32 = D.apply(variables, img, c)
  out16 = D.clone(dtype=jnp.bfloat16).apply(variables, img, c)
  assert out32.shape == out16.shape == (4,) and out16.dtype == jnp.float32
  scale = float(jnp.abs(out32).max()) + 1e-3
  assert float(jnp.abs(out16 - out32).max()) < 0.1 * scale
  with pytest.raises(UserError, match="power of two"):
    dm.Discriminator(c_dim=0, img_resolution=12).init(
        jax.random.key(0), jnp.zeros((4, 12, 12, 3)))
