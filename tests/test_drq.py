"""DrQ(ε): augmentation, target, loss, gradient and Adam step against NumPy; schedule; freeze."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.agents import drq
from palm_jax.models.atari_encoder import DuelingHead, MLPEncoder, QNetwork

B, H, W, C, A = 5, 6, 6, 2, 3
CFG = drq.DrQConfig(gamma=0.9, update_horizon=3, image_pad=1, learning_rate=1e-2,
                    adam_eps=1.5e-4, target_update_period=1)
NET = QNetwork(MLPEncoder((7,)), DuelingHead(A, hidden=4))


def _np_q(p, x):
  """The tiny QNetwork's forward pass in float64 NumPy. x [B, H, W, C] → [B, A]."""
  e, h = p["params"]["encoder"], p["params"]["head"]
  z = np.maximum(x.reshape(len(x), -1) @ e["Dense_0"]["kernel"] + e["Dense_0"]["bias"], 0)
  z = np.maximum(z @ h["Dense_0"]["kernel"] + h["Dense_0"]["bias"], 0)
  adv = z @ h["Dense_1"]["kernel"] + h["Dense_1"]["bias"]
  val = z @ h["Dense_2"]["kernel"] + h["Dense_2"]["bias"]
  return val + adv - adv.mean(-1, keepdims=True)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draws(key, b, pad):
  """The offsets and intensities `drq.augment` draws from `key` (one program, not many)."""
  k_int, k_crop = jax.random.split(key)
  kx, ky = jax.random.split(k_crop)
  return (jax.random.randint(kx, (b,), 0, 2 * pad), jax.random.randint(ky, (b,), 0, 2 * pad),
          jax.random.normal(k_int, (b, 1, 1, 1)))


def _np_augment(key, x, pad, scale):
  """Edge pad, crop at the offsets jax draws from `key`, scale by the drawn intensity."""
  dx, dy, r = (np.asarray(v, np.float64) for v in _draws(key, len(x), pad))
  dx, dy = dx.astype(int), dy.astype(int)
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  crop = np.stack([padded[i, dx[i]:dx[i] + x.shape[1], dy[i]:dy[i] + x.shape[2]]
                   for i in range(len(x))])
  return crop * (1 + scale * np.clip(r, -2, 2)), dx, dy


_split3 = jax.jit(lambda k: tuple(jax.random.split(k, 3)))


def _np_loss(p, tp, batch, key):
  x = batch.obs.astype(np.float64) / 255.0
  nx = batch.next_obs.astype(np.float64) / 255.0
  _, k_obs, k_next = _split3(key)
  x, _, _ = _np_augment(k_obs, x, CFG.image_pad, CFG.intensity_scale)
  nx, _, _ = _np_augment(k_next, nx, CFG.image_pad, CFG.intensity_scale)
  a_star = _np_q(p, nx).argmax(-1)
  q_next = _np_q(tp, nx)[np.arange(B), a_star]
  y = batch.reward + CFG.gamma ** CFG.update_horizon * (1 - batch.terminal) * q_next
  d = np.abs(y - _np_q(p, x)[np.arange(B), batch.action])
  return np.mean(np.where(d <= 1, 0.5 * d ** 2, d - 0.5)), y


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  batch = drq.Batch(obs=rng.integers(0, 256, (B, H, W, C)).astype(np.uint8),
                    action=rng.integers(0, A, B).astype(np.int32),
                    reward=rng.normal(size=B).astype(np.float32) * 3,
                    next_obs=rng.integers(0, 256, (B, H, W, C)).astype(np.uint8),
                    terminal=np.array([0, 1, 0, 0, 1], np.float32))
  opt = drq.make_optimizer(CFG)
  state = drq.init_state(NET, opt, batch.obs[:1], jax.random.PRNGKey(3))
  # A target that differs from the online net, so double DQN's two roles are told apart.
  target = jax.tree.map(lambda p: np.asarray(p) + 0.3 * np.sign(np.asarray(p) + 0.01),
                        state.params)
  state = state.replace(target_params=target)
  return batch, opt, state


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def test_augmentation_matches_numpy_and_shifts_within_the_pad():
  rng = np.random.default_rng(1)
  x = rng.random((64, 10, 10, 4)).astype(np.float32)
  key = jax.random.PRNGKey(7)
  ref, dx, dy = _np_augment(key, x.astype(np.float64), 4, 0.05)
  np.testing.assert_allclose(np.asarray(drq.augment(key, jnp.asarray(x))), ref, rtol=1e-5)
  # randint(0, 2·pad) — Dopamine's offsets: {0, …, 7}, 8 never drawn.
  assert set(dx) | set(dy) <= set(range(8)) and len(set(dx)) > 4


def test_loss_target_gradient_and_adam_step_match_numpy(setup):
  batch, opt, state = setup
  p, tp = _f64(state.params), _f64(state.target_params)
  ref_loss, ref_y = _np_loss(p, tp, batch, state.key)

  @jax.jit
  def jax_side(params, target_params, key):
    _, k_obs, k_next = jax.random.split(key, 3)
    x = drq.augment(k_obs, drq.preprocess(batch.obs), CFG.image_pad, CFG.intensity_scale)
    nx = drq.augment(k_next, drq.preprocess(batch.next_obs), CFG.image_pad,
                     CFG.intensity_scale)
    y = drq.td_target(NET, params, target_params, nx, batch.reward, batch.terminal, CFG)
    loss = drq.loss_fn(params, NET, x, batch.action, y, CFG)[0]
    grads = jax.grad(lambda q: drq.loss_fn(q, NET, x, batch.action, y, CFG)[0])(params)
    return y, loss, grads

  y, loss, grads = jax_side(state.params, state.target_params, state.key)
  k_obs = _split3(state.key)[1]
  np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-4)

  # Gradient against central differences of the NumPy loss (target held fixed).
  leaves, treedef = jax.tree.flatten(p)
  gleaves = [np.asarray(g) for g in jax.tree.leaves(grads)]  # (no per-index jax gathers)
  rng = np.random.default_rng(2)
  xa, _, _ = _np_augment(k_obs, batch.obs / 255.0, CFG.image_pad, CFG.intensity_scale)
  y64 = np.asarray(y, np.float64)
  for li in range(len(leaves)):
    for _ in range(2):
      idx = tuple(rng.integers(0, s) for s in leaves[li].shape)
      num = []
      for sign in (1, -1):
        moved = [v.copy() for v in leaves]
        moved[li][idx] += sign * 1e-5
        pm = jax.tree.unflatten(treedef, moved)
        d = np.abs(y64 - _np_q(pm, xa)[np.arange(B), batch.action])
        num.append(np.mean(np.where(d <= 1, 0.5 * d ** 2, d - 0.5)))
      np.testing.assert_allclose(float(gleaves[li][idx]), (num[0] - num[1]) / 2e-5,
                                 rtol=2e-2, atol=2e-5)

  # First Adam step: m̂ = g, v̂ = g², so Δθ = −lr · g / (|g| + eps).
  update = drq.make_update(NET, opt, CFG)
  new, metrics = update(jax.tree.map(jnp.copy, state), batch)
  np.testing.assert_allclose(float(metrics["loss"]), ref_loss, rtol=1e-4)
  for old, g, nw in zip(leaves, gleaves, jax.tree.leaves(new.params)):
    g = np.asarray(g, np.float64)
    np.testing.assert_allclose(np.asarray(nw), old - CFG.learning_rate * g /
                               (np.abs(g) + CFG.adam_eps), rtol=1e-4, atol=1e-6)
  # target_update_period = 1: the target is the new online net.
  for a, b in zip(jax.tree.leaves(new.target_params), jax.tree.leaves(new.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(new.updates) == 1


def test_target_period_and_frozen_encoder(setup):
  batch, _, state = setup
  cfg = dataclasses.replace(CFG, target_update_period=2)
  frozen = QNetwork(MLPEncoder((7,)), DuelingHead(A, hidden=4), stop_encoder_grad=True)
  opt = drq.make_optimizer(cfg)
  st = drq.init_state(frozen, opt, batch.obs[:1], jax.random.PRNGKey(3),
                      params=jax.tree.map(jnp.copy, state.params))
  update = drq.make_update(frozen, opt, cfg)
  st1, _ = update(st, batch)
  p0 = state.params["params"]
  np.testing.assert_array_equal(np.asarray(st1.params["params"]["encoder"]["Dense_0"]["kernel"]),
                                np.asarray(p0["encoder"]["Dense_0"]["kernel"]))
  assert not np.allclose(np.asarray(st1.params["params"]["head"]["Dense_1"]["kernel"]),
                         np.asarray(p0["head"]["Dense_1"]["kernel"]))
  # Period 2: after update 1 the target is still the initial net; after update 2 it syncs.
  np.testing.assert_array_equal(np.asarray(st1.target_params["params"]["head"]["Dense_1"]["kernel"]),
                                np.asarray(p0["head"]["Dense_1"]["kernel"]))
  st2, _ = update(st1, batch)
  np.testing.assert_array_equal(np.asarray(st2.target_params["params"]["head"]["Dense_1"]["kernel"]),
                                np.asarray(st2.params["params"]["head"]["Dense_1"]["kernel"]))


def test_epsilon_schedule_and_greedy_action():
  cfg = drq.DrQConfig()
  eps = [float(drq.linearly_decaying_epsilon(t, cfg)) for t in (0, 1600, 4100, 6600, 9999)]
  np.testing.assert_allclose(eps, [1.0, 1.0, 0.505, 0.01, 0.01], rtol=1e-6)
  rng = np.random.default_rng(4)
  obs = rng.integers(0, 256, (16, H, W, C)).astype(np.uint8)
  params = NET.init(jax.random.PRNGKey(0), drq.preprocess(obs[:1]))
  act = drq.make_act(NET, A)
  greedy = np.asarray(act(params, obs, jax.random.PRNGKey(1), 0.0))
  np.testing.assert_array_equal(greedy, _np_q(_f64(params), obs / 255.0).argmax(-1))
  random = np.asarray(act(params, np.repeat(obs[:1], 400, 0), jax.random.PRNGKey(2), 1.0))
  assert set(random) == set(range(A))
