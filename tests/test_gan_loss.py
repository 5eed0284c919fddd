"""Every StyleGAN2 loss term against NumPy on tiny networks; R1 on known functions."""
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.gan import loss as L

RNG = np.random.default_rng(0)
N, H, W, C, ZD, CD = 6, 4, 4, 3, 5, 3
WG = RNG.normal(size=(ZD + CD, H * W * C)).astype(np.float32) * 0.3
W1 = RNG.normal(size=(H * W * C, 7)).astype(np.float32) * 0.2
W2 = RNG.normal(size=(7,)).astype(np.float32)
WC = RNG.normal(size=(CD,)).astype(np.float32)


def softplus(x):
  return np.log1p(np.exp(x))


def np_g(z, c):
  return np.tanh(np.concatenate([z, c], 1) @ WG).reshape(-1, H, W, C)


def np_d(img, c):
  return np.tanh(img.reshape(len(img), -1) @ W1) @ W2 + c @ WC


def run_g(params, z, c, key):
  del key
  return jnp.tanh(jnp.concatenate([z, c], 1) @ params["wg"]).reshape(-1, H, W, C), "extras"


def run_d(params, img, c, key):
  del key
  return jnp.tanh(img.reshape(img.shape[0], -1) @ params["w1"]) @ params["w2"] + c @ WC


G_PARAMS = {"wg": jnp.asarray(WG)}
D_PARAMS = {"w1": jnp.asarray(W1), "w2": jnp.asarray(W2)}
Z = RNG.normal(size=(N, ZD)).astype(np.float32)
CC = np.eye(CD, dtype=np.float32)[RNG.integers(0, CD, N)]
REAL = RNG.uniform(-1, 1, size=(N, H, W, C)).astype(np.float32)


def test_generator_loss_matches_numpy():
  loss, (stats, extras) = L.g_main_loss(G_PARAMS, D_PARAMS, run_g, run_d, jnp.asarray(Z),
                                        jnp.asarray(CC), jax.random.key(0))
  logits = np_d(np_g(Z, CC), CC)
  np.testing.assert_allclose(loss, softplus(-logits).mean(), rtol=1e-5)
  np.testing.assert_allclose(stats["scores_fake"], logits.mean(), rtol=1e-5, atol=1e-6)
  assert extras == "extras"
  np.testing.assert_allclose(L.g_nonsaturating(jnp.asarray(logits)),
                             -np.log(1 / (1 + np.exp(-logits))).mean(), rtol=1e-5)


def test_discriminator_loss_matches_numpy():
  fake = np_g(Z, CC)
  loss, stats = L.d_main_loss(D_PARAMS, run_d, jnp.asarray(REAL), jnp.asarray(CC),
                              jnp.asarray(fake), jnp.asarray(CC), jax.random.key(0))
  lr, lf = np_d(REAL, CC), np_d(fake, CC)
  np.testing.assert_allclose(loss, softplus(lf).mean() + softplus(-lr).mean(), rtol=1e-5)
  np.testing.assert_array_equal(stats["signs_real"], np.sign(lr))
  # No gradient flows into the (constant) fakes.
  g = jax.grad(lambda f: L.d_main_loss(D_PARAMS, run_d, jnp.asarray(REAL), jnp.asarray(CC), f,
                                       jnp.asarray(CC), jax.random.key(0))[0])(jnp.asarray(fake))
  assert float(jnp.abs(g).max()) == 0.0


def test_r1_on_known_functions():
  x = jnp.asarray(REAL)
  a = RNG.normal(size=(H, W, C)).astype(np.float32)
  # D(x) = <a, x>: the gradient is a for every sample, the penalty ||a||^2.
  pen, _ = L.r1_penalty(lambda v: jnp.sum(v * a, axis=(1, 2, 3)), x)
  np.testing.assert_allclose(pen, np.full(N, (a ** 2).sum()), rtol=1e-5)
  # D(x) = ||x||^2 / 2: the gradient is x, the penalty ||x_i||^2.
  pen, _ = L.r1_penalty(lambda v: 0.5 * jnp.sum(v ** 2, axis=(1, 2, 3)), x)
  np.testing.assert_allclose(pen, (REAL ** 2).sum(axis=(1, 2, 3)), rtol=1e-5)


def test_r1_loss_on_tiny_net_matches_numpy():
  loss, stats = L.d_r1_loss(D_PARAMS, run_d, jnp.asarray(REAL), jnp.asarray(CC),
                            jax.random.key(0), gamma=0.5, interval=16)
  h = np.tanh(REAL.reshape(N, -1) @ W1)
  grads = ((1 - h ** 2) * W2) @ W1.T                     # d D / d x, [N, HWC]
  penalty = (grads ** 2).sum(1)
  np.testing.assert_allclose(stats["r1_penalty"], penalty.mean(), rtol=1e-4)
  np.testing.assert_allclose(loss, 16 * 0.5 / 2 * penalty.mean(), rtol=1e-4)
  # The penalty is differentiable in D's parameters (double backprop).
  g = jax.grad(lambda p: L.d_r1_loss(p, run_d, jnp.asarray(REAL), jnp.asarray(CC),
                                     jax.random.key(0), gamma=0.5, interval=16)[0])(D_PARAMS)
  assert all(np.all(np.isfinite(v)) and np.abs(v).max() > 0 for v in jax.tree.leaves(g))


def test_path_length_matches_numpy():
  num_ws, w_dim = 4, 5
  A = RNG.normal(size=(num_ws, w_dim, H * W * C)).astype(np.float32)
  ws = RNG.normal(size=(N, num_ws, w_dim)).astype(np.float32)
  def synth(params, w, key):
    del key
    return jnp.einsum("nlw,lwp->np", w, params["a"]).reshape(-1, H, W, C)
  def map_g(params, z, c, key):
    del params, c, key
    return z, "buffers"
  key = jax.random.key(3)
  loss, (stats, extras) = L.g_pl_loss({"a": jnp.asarray(A)}, map_g, synth, jnp.asarray(ws),
                                      None, jnp.asarray(2.0), key, decay=0.01, weight=2.0,
                                      interval=4)
  assert extras == "buffers"
  _, _, kn = jax.random.split(key, 3)
  y = np.asarray(jax.random.normal(kn, (N, H, W, C))) / np.sqrt(H * W)
  jt_y = np.einsum("np,lwp->nlw", y.reshape(N, -1), A)
  lengths = np.sqrt((jt_y ** 2).sum(2).mean(1))
  new_mean = 2.0 + 0.01 * (lengths.mean() - 2.0)
  np.testing.assert_allclose(stats["pl_mean"], new_mean, rtol=1e-5)
  np.testing.assert_allclose(loss, 4 * 2.0 * ((lengths - new_mean) ** 2).mean(), rtol=1e-4)


def test_style_mixing():
  ws = jnp.zeros((N, 6, 2))
  ws2 = jnp.ones((N, 6, 2))
  assert float(L.style_mix(jax.random.key(0), ws, ws2, 0.0).sum()) == 0.0
  cutoffs = set()
  for i in range(20):
    mixed = np.asarray(L.style_mix(jax.random.key(i), ws, ws2, 1.0))
    layer = mixed[0, :, 0]
    cutoff = int(np.argmax(layer))
    assert 1 <= cutoff <= 5 and np.all(layer[cutoff:] == 1) and np.all(layer[:cutoff] == 0)
    assert np.all(mixed == mixed[:1])        # one cutoff for the whole batch
    cutoffs.add(cutoff)
  assert len(cutoffs) > 2
