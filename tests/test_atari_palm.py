"""PALM on an unconditional game generator: the frame-stacked latent env against NumPy, and
a tiny Atari PALM run whose encoder drops into DrQ(ε)'s network."""
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.envs import atari, frame_stack_env
from palm_jax.envs.latent_env import EnvParams, LatentEnv
from palm_jax.envs.renderer import FunctionRenderer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bilinear(img: np.ndarray, size: int) -> np.ndarray:
  """NumPy bilinear resize `[N, R, R] -> [N, size, size]`: half-pixel centres, clamped edges
  (the upsampling case of jax.image.resize 'linear')."""
  r = img.shape[1]
  x = (np.arange(size) + 0.5) * r / size - 0.5
  lo = np.floor(x).astype(int)
  frac = x - lo
  i0, i1 = np.clip(lo, 0, r - 1), np.clip(lo + 1, 0, r - 1)
  w = np.zeros((size, r))
  np.add.at(w, (np.arange(size), i0), 1 - frac)
  np.add.at(w, (np.arange(size), i1), frac)
  return np.einsum("ia,nab,jb->nij", w, img.astype(np.float64), w)


def _renderer_env():
  """An unconditional 1-channel world over a cheap renderer (a fixed random map of z)."""
  w = jax.random.normal(jax.random.PRNGKey(3), (8, 16 * 16))
  renderer = FunctionRenderer(
      lambda p, z, c: jnp.tanh(z @ p).reshape(z.shape[0], 16, 16, 1), latent_dim=8,
      num_classes=0, image_shape=(16, 16, 1))
  return LatentEnv.from_renderer(renderer), w


def test_to_frame_luma_and_resize_match_numpy():
  rgb = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
  want = _bilinear(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]), 84)
  got = np.asarray(frame_stack_env.to_frame(jnp.asarray(rgb)))
  assert got.dtype == np.uint8 and got.shape == (3, 84, 84)
  np.testing.assert_allclose(got, np.clip(np.round(want), 0, 255), atol=1)
  same = np.random.default_rng(1).integers(0, 256, (2, 84, 84, 1)).astype(np.uint8)
  np.testing.assert_array_equal(frame_stack_env.to_frame(jnp.asarray(same)), same[..., 0])


def test_stacked_env_reset_and_step_match_numpy():
  inner, gen_vars = _renderer_env()
  env = frame_stack_env.FrameStackEnv(inner)
  assert env.num_classes == 1 and env.c_dim == 0 and env.obs_shape == (84, 84, 4)
  params = EnvParams(episode_length=3)
  n, steps = 4, 6
  keys = jax.random.split(jax.random.PRNGKey(0), steps + 1)
  actions = jax.random.uniform(jax.random.PRNGKey(1), (steps, n, inner.action_dim),
                               minval=-1, maxval=1)
  reset, step = jax.jit(env.reset, static_argnums=3), jax.jit(env.step)
  inner_reset, inner_step = jax.jit(inner.reset, static_argnums=3), jax.jit(inner.step)

  def frame(images):  # uint8 [N, 16, 16, 1] -> the NumPy Atari frame [N, 84, 84]
    return np.clip(np.round(_bilinear(np.asarray(images, np.float64)[..., 0], 84)), 0, 255)

  ref = atari.FrameStack(n)           # NumPy: Dopamine's zero-filled reset, newest last
  obs, state = reset(keys[0], gen_vars, params, n)
  images, inner_state = inner_reset(keys[0], gen_vars, params, n)
  ref.update(frame(images), np.ones(n, bool))
  assert obs.dtype == jnp.uint8 and obs.shape == (n, 84, 84, 4)
  np.testing.assert_allclose(np.asarray(obs), ref.state, atol=1)
  assert (np.asarray(obs)[..., :3] == 0).all()
  firsts = []
  for t in range(steps):
    obs, state, first = step(keys[t + 1], state, actions[t], gen_vars, params)
    images, inner_state, inner_first = inner_step(keys[t + 1], inner_state, actions[t],
                                                  gen_vars, params)
    ref.update(frame(images), np.asarray(inner_first))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(inner_first))
    np.testing.assert_allclose(np.asarray(obs), ref.state, atol=1)
    np.testing.assert_array_equal(np.asarray(state.stack), np.asarray(obs))
    np.testing.assert_array_equal(np.asarray(state.label), 0)   # one "class"
    firsts.append(np.asarray(first))
  assert np.stack(firsts).any() and not np.stack(firsts).all()  # auto-resets were exercised


def test_tiny_atari_palm_run_encoder_loads_into_drq(tmp_path):
  """configs/atari/palm.py:pong,tiny trains, and restore_encoder gives DrQ's torso."""
  from palm_jax.jobs import atari100k
  from palm_jax.jobs import palm as palm_job
  from palm_jax.models.atari_encoder import atari_q_network
  from palm_jax.runtime import checkpoint
  c = runpy.run_path(os.path.join(ROOT, "configs", "atari", "palm.py"))["get_config"](
      "pong,tiny")
  c.total_env_steps = 16 * 6          # one chunk: 4 warm-up iterations, then 2 with updates
  c.log.rollout_every_chunks = 0      # one program fewer to compile (rollouts: see README)
  result = palm_job.run(c, str(tmp_path))[0]
  assert result.metrics["updated"] > 0 and np.isfinite(result.metrics["simsiam/loss"])
  assert np.isfinite(result.metrics["sac/critic_loss"])
  step, variables, meta = checkpoint.restore_encoder(str(tmp_path))
  assert step == 96 and meta["encoder"]["encoder"] == "atari"
  network = atari_q_network(num_actions=6)
  params = network.init(jax.random.PRNGKey(0), np.zeros((1, 84, 84, 4), np.float32))
  loaded = atari100k.load_palm_encoder(params, str(tmp_path), (step, variables, meta))
  trained = simsiam_encoder(result.state)
  for a, b in zip(jax.tree.leaves(loaded["params"]["encoder"]), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(a, b)
  # The same features in PALM (uint8 stacks) and DrQ (frames / 255) conventions.
  x = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 4)).astype(np.uint8)
  from palm_jax.models.atari_encoder import AtariEncoder
  from palm_jax.representation import simsiam
  palm_feats = simsiam.encode(variables, x)   # architecture inferred from Conv_0..2
  drq_feats = AtariEncoder().apply({"params": loaded["params"]["encoder"]},
                                   x.astype(np.float32) / 255.0)
  np.testing.assert_allclose(palm_feats, drq_feats, rtol=1e-5, atol=1e-5)


def simsiam_encoder(state):
  return jax.tree.map(np.asarray, state.simsiam.params["encoder"])
