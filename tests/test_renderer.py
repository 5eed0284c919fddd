"""The renderer protocol with non-StyleGAN generators: the procedural shapes against a
scalar NumPy re-derivation, a Flax decoder, StyleGAN2 through the protocol, LatentEnv over
a renderer, and the smoke PALM run on the procedural generator."""
import colorsys
import math
import os
import runpy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.envs import latent_env, renderer
from palm_jax.jobs import palm as palm_job
from palm_jax.models import procedural, stylegan2
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ref_pixel_sdf(shape, qx, qy, r):
  """Scalar signed distances, written from Quilez's GLSL (iquilezles.org distfunctions2d)."""
  if shape == 0:
    return math.hypot(qx, qy) - r
  if shape == 1:
    dx, dy = abs(qx) - r, abs(qy) - r
    return math.hypot(max(dx, 0), max(dy, 0)) + min(max(dx, dy), 0)
  if shape == 2:  # sdEquilateralTriangle with y flipped (image y points down)
    k = math.sqrt(3)
    x, y = abs(qx) - r, -qy + r / k
    if x + k * y > 0:
      x, y = (x - k * y) / 2, (-k * x - y) / 2
    x -= min(max(x, -2 * r), 0)
    return -math.hypot(x, y) * (1 if y > 0 else -1 if y < 0 else 0)
  return abs(math.hypot(qx, qy) - r) - 0.3 * r


def _ref_image(z, c, num_classes, res):
  u = [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z]
  cx, cy, r, th = u[0] - 0.5, u[1] - 0.5, 0.15 + 0.3 * u[2], 2 * math.pi * u[3]
  b, g, phi, s = 0.5 + 0.5 * u[4], 0.1 + 0.4 * u[5], 2 * math.pi * u[6], 0.3 * u[7]
  col = np.array(colorsys.hsv_to_rgb(c / num_classes, 0.8, 1.0))
  img = np.zeros((res, res, 3))
  for i in range(res):
    for j in range(res):
      px, py = (j + 0.5) * 2 / res - 1, (i + 0.5) * 2 / res - 1
      dx, dy = px - cx, py - cy
      qx, qy = math.cos(th) * dx + math.sin(th) * dy, -math.sin(th) * dx + math.cos(th) * dy
      cover = min(max(0.5 - _ref_pixel_sdf(c % 4, qx, qy, r) * res / 2, 0.0), 1.0)
      bg = g + s * (px * math.cos(phi) + py * math.sin(phi))
      img[i, j] = np.clip((1 - cover) * bg + cover * b * col, 0, 1)
  return img * 2 - 1


def test_procedural_matches_scalar_numpy_rederivation():
  res, k = 8, 6
  z = np.array(jax.random.normal(jax.random.PRNGKey(3), (6, 8)))
  z[:, 2] = 1.5                                  # large shapes: every SDF branch is hit
  c = np.arange(6)                               # all four shapes, two colours twice
  handle = procedural.load("procedural:shapes", dict(resolution=res, num_classes=k))
  got = np.asarray(jax.jit(handle.renderer.render)(handle.variables, jnp.asarray(z),
                                                   jnp.asarray(c)))
  want = np.stack([_ref_image(z[n], int(c[n]), k, res) for n in range(6)])
  assert got.shape == (6, res, res, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_procedural_factors_are_what_they_say():
  """A disc's centroid is the (x, y) factor; its area grows with the size factor."""
  res = 32
  z = np.zeros((2, 8), np.float32)
  z[:, 0], z[:, 1] = 0.8416, -0.5244             # Phi = 0.8, 0.3: centre (0.3, -0.2)
  z[:, 2] = [-1.0, 1.0]                          # small, large
  z[:, 7] = -8.0                                 # flat background (slope 0)
  handle = procedural.load("procedural:shapes", dict(resolution=res, num_classes=4))
  img = np.asarray(jax.jit(handle.renderer.render)(handle.variables, jnp.asarray(z),
                                                   jnp.zeros((2,), jnp.int32)))
  bg = img[:, :1, :1, :]
  w = np.abs(img - bg).sum(-1)
  w = w / w.sum(axis=(1, 2), keepdims=True)
  coords = (np.arange(res) + 0.5) * 2 / res - 1
  cx, cy = (w.sum(1) * coords).sum(-1), (w.sum(2) * coords).sum(-1)
  np.testing.assert_allclose(cx, 0.3, atol=0.02)
  np.testing.assert_allclose(cy, -0.2, atol=0.02)
  area = (np.abs(img - bg).sum(-1) > 0.05).sum(axis=(1, 2))
  assert area[1] > 2 * area[0]


class _Decoder(nn.Module):
  """A plain Flax class-conditional decoder: (z, c) -> 4x4 RGB in [-1, 1]."""

  @nn.compact
  def __call__(self, z, c):
    h = jnp.concatenate([z, jax.nn.one_hot(c, 3)], axis=-1)
    return jnp.tanh(nn.Dense(4 * 4 * 3)(h)).reshape(-1, 4, 4, 3)


def test_flax_module_renderer_drives_latent_env_with_unchanged_dynamics():
  module = _Decoder()
  variables = jax.jit(module.init)(jax.random.PRNGKey(0), jnp.zeros((1, 5)),
                                   jnp.zeros((1,), jnp.int32))
  r = renderer.FunctionRenderer(module.apply, latent_dim=5, num_classes=3,
                                image_shape=(4, 4, 3))
  renderer.check_renderer(r, variables)
  env = latent_env.LatentEnv.from_renderer(r)
  params = latent_env.EnvParams(alpha=0.3, beta=0.8, episode_length=3)
  key = jax.random.PRNGKey(2)

  @jax.jit
  def run(variables, params):
    obs, state = env.reset(jax.random.PRNGKey(1), variables, params, 4)
    obs2, state2, first = env.step(key, state, jnp.full((4, 5), 0.5), variables, params)
    eps = jax.random.normal(jax.random.split(key, 3)[1], (4, 5))
    img = module.apply(variables, state2.latent, state2.label)
    return obs, state, obs2, state2, first, eps, img
  obs, state, obs2, state2, first, eps, img = run(variables, params)
  eps = np.asarray(eps)
  want = 0.8 * np.asarray(state.latent) + 0.2 * (0.3 * 0.5 + 0.7 * eps)
  np.testing.assert_allclose(np.asarray(state2.latent), want, rtol=1e-6, atol=1e-6)
  img = np.asarray(img)
  want_u8 = np.clip(np.round(img * 127.5 + 128), 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(obs2), want_u8)
  assert obs.dtype == jnp.uint8 and not np.asarray(first).any()


def test_check_renderer_names_the_broken_promise():
  r = renderer.FunctionRenderer(lambda p, z, c: jnp.zeros((z.shape[0], 4, 4, 3)),
                                latent_dim=2, num_classes=0, image_shape=(8, 8, 3))
  with pytest.raises(UserError, match="image_shape"):
    renderer.check_renderer(r, {})
  with pytest.raises(UserError, match="not a Renderer"):
    renderer.check_renderer(object(), {})
  handle = procedural.load("procedural:shapes", dict(resolution=8, num_classes=2))
  with pytest.raises(UserError, match="latent_space"):
    latent_env.make_latent_env(handle, latent_space="w")
  with pytest.raises(UserError, match="procedural"):
    procedural.load("procedural:clouds")


def test_stylegan2_through_the_protocol_equals_latent_env_rendering():
  gen = stylegan2.init_generator(
      jax.random.PRNGKey(0), z_dim=4, c_dim=3, w_dim=4, img_resolution=4, img_channels=3,
      mapping_kwargs=dict(num_layers=1),
      synthesis_kwargs=dict(channel_base=64, channel_max=4, conv_clamp=256))
  r = renderer.StyleGAN2Renderer.from_handle(gen)
  renderer.check_renderer(r, gen.variables)
  z = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
  labels = jnp.arange(3)
  env = latent_env.make_latent_env(gen)
  want, got = jax.jit(lambda v: (
      env.render(v, z, labels, latent_env.EnvParams(), jax.random.PRNGKey(0)),
      renderer.to_uint8(r.render(v, z, labels))))(gen.variables)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_smoke_palm_runs_on_the_procedural_generator(tmp_path):
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke_procedural.py"))["get_config"]()
  c.eval.train = ""
  c.total_env_steps = 64 * 8                    # 4 warm-up iterations, then 4 with updates
  c.log.chunk_iterations = 4
  c.log.rollout_every_chunks = 0
  c.checkpoint.every_chunks = 2
  result = palm_job.run(c, str(tmp_path))[0]
  m = result.metrics
  assert m["updated"] == 1.0 and np.isfinite(m["simsiam/loss"]) and m["reward/mean"] > 0
  assert np.isfinite(m["sac/critic_loss"])
  assert os.listdir(tmp_path / "checkpoints")
