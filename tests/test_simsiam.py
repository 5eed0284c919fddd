"""SimSiam: loss and gradients vs NumPy, schedule, update, sharding, encode."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.models.resnet import images_to_float
from palm_jax.representation import simsiam as ss
from palm_jax.runtime.errors import UserError
from palm_jax.runtime.sharding import make_mesh

TINY = dict(stage_sizes=(1, 1), width=8, proj_hidden_dim=32, proj_dim=32, pred_hidden_dim=8,
            batch_size=16, base_lr=0.5, total_steps=100)


def np_neg_cos(p, z):
  p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
  return -np.mean(np.sum(p * z, 1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1)))


def np_neg_cos_grad_p(p, z):
  """d/dp of −mean_i cos(p_i, z_i): −(ẑ − (p̂·ẑ) p̂) / (B ||p||)."""
  p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
  pn = np.linalg.norm(p, axis=1, keepdims=True)
  ph, zh = p / pn, z / np.linalg.norm(z, axis=1, keepdims=True)
  return -(zh - np.sum(ph * zh, 1, keepdims=True) * ph) / (pn * p.shape[0])


def test_loss_and_stop_gradient_match_numpy():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = (jnp.asarray(rng.normal(size=(6, 5)), jnp.float32) for _ in range(4))
  np.testing.assert_allclose(ss.negative_cosine(p1, z2), np_neg_cos(p1, z2), rtol=1e-5)
  loss = ss.simsiam_loss(p1, p2, z1, z2)
  np.testing.assert_allclose(loss, 0.5 * np_neg_cos(p1, z2) + 0.5 * np_neg_cos(p2, z1),
                             rtol=1e-5)
  g_p1, g_p2, g_z1, g_z2 = jax.grad(ss.simsiam_loss, argnums=(0, 1, 2, 3))(p1, p2, z1, z2)
  np.testing.assert_allclose(g_p1, 0.5 * np_neg_cos_grad_p(p1, z2), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_p2, 0.5 * np_neg_cos_grad_p(p2, z1), rtol=1e-4, atol=1e-7)
  np.testing.assert_array_equal(g_z1, 0.0)  # stop-gradient: nothing flows into z
  np.testing.assert_array_equal(g_z2, 0.0)
  # Identical directions give the minimum −1; bf16 inputs are computed in float32.
  assert float(ss.simsiam_loss(p1, p1, 3 * p1, 2 * p1)) == pytest.approx(-1.0, abs=1e-6)
  assert ss.negative_cosine(p1.astype(jnp.bfloat16), z1).dtype == jnp.float32


def test_collapse_std_matches_numpy():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(4096, 64))
  zn = z / np.linalg.norm(z, axis=1, keepdims=True)
  got = ss.collapse_std(jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(got, zn.std(0).mean(), rtol=1e-4)
  assert float(got) == pytest.approx(1 / np.sqrt(64), rel=0.05)  # healthy: ≈ 1/√d
  assert float(ss.collapse_std(jnp.ones((8, 64)))) == pytest.approx(0.0, abs=1e-6)


def test_schedule_and_fix_pred_lr():
  cfg = ss.as_simsiam_config(dict(batch_size=512, total_steps=1000))
  sched = ss.make_schedule(cfg, 1000)
  lr0 = 0.03 * 512 / 256
  for t, want in [(0, lr0), (250, lr0 * 0.5 * (1 + np.cos(np.pi / 4))), (500, lr0 / 2),
                  (1000, 0.0), (2000, 0.0)]:
    assert float(sched(t)) == pytest.approx(want, abs=1e-7)
  # One step by hand: g ← g + wd·θ, m ← g (first step), θ ← θ − lr·m.
  params = {"encoder": jnp.ones(3), "predictor": jnp.ones(2)}
  grads = {"encoder": jnp.full(3, 0.5), "predictor": jnp.full(2, 0.5)}
  for fix in (False, True):
    tx = ss.make_optimizer(dataclasses.replace(cfg, fix_pred_lr=fix), 1)
    state = tx.init(params)
    upd, state = tx.update(grads, state, params)
    np.testing.assert_allclose(upd["encoder"], -lr0 * (0.5 + 5e-4), rtol=1e-6)
    np.testing.assert_allclose(upd["predictor"], -lr0 * (0.5 + 5e-4), rtol=1e-6)
    upd, _ = tx.update(grads, state, params)  # step 1 of 1: cosine lr is 0
    np.testing.assert_allclose(upd["encoder"], 0.0)
    want = -lr0 * (0.9 + 1.0) * (0.5 + 5e-4) if fix else 0.0  # momentum m = 0.9 m + g
    np.testing.assert_allclose(upd["predictor"], want, rtol=1e-6)


def test_config_errors_are_user_errors():
  with pytest.raises(UserError, match="unknown SimSiam config field"):
    ss.as_simsiam_config(dict(widht=8))
  with pytest.raises(UserError, match="dtype"):
    ss.as_simsiam_config(dict(dtype="int8"))
  with pytest.raises(UserError, match="total_steps"):
    ss.make_optimizer(ss.SimSiamConfig(), 0)
  import ml_collections
  cfg = ss.as_simsiam_config(ml_collections.ConfigDict(dict(stage_sizes=[1, 1], width=8)))
  assert cfg.stage_sizes == (1, 1) and cfg.feature_dim == 16


@pytest.fixture(scope="module")
def setup():
  # An "rbg" key: XLA:CPU compiles threefry-based parameter init ~5x slower.
  state = ss.init_simsiam(jax.random.key(0, impl="rbg"), TINY, (16, 16, 3))
  rng = np.random.default_rng(2)
  x1 = jnp.asarray(rng.integers(0, 256, size=(16, 16, 16, 3), dtype=np.uint8))
  x2 = jnp.roll(x1, 2, axis=2)  # a "temporal" neighbour: shifted by two pixels
  return state, x1, x2


def _scan_updates(state, x1, x2, key):
  """Three updates on the same pair batch inside `lax.scan`."""
  def body(s, k):
    return ss.simsiam_update(s, x1, x2, k)
  return jax.lax.scan(body, state, jax.random.split(key, 3))


def test_update_decreases_loss_and_sharded_matches_unsharded(setup):
  state, x1, x2 = setup
  run = jax.jit(_scan_updates)
  key = jax.random.key(1)
  new, metrics = run(state, x1, x2, key)
  loss = np.asarray(metrics["loss"])
  assert np.all(np.diff(loss) < 0), loss  # each step lowers the loss on this batch
  assert int(new.step) == 3
  np.testing.assert_allclose(metrics["lr"], [ss.make_schedule(TINY, 100)(t) for t in range(3)],
                             rtol=1e-6)
  assert np.all((metrics["z_std"] > 0) & (metrics["z_std"] <= 1))
  # Batch sharded over 8 devices, state replicated: same numbers (global BN statistics).
  mesh = make_mesh()
  assert mesh.size == 8
  rep, dat = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  s_state = jax.device_put(state, rep)
  s_new, s_metrics = run(s_state, jax.device_put(x1, dat), jax.device_put(x2, dat), key)
  np.testing.assert_allclose(s_metrics["loss"], metrics["loss"], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s_new.params), jax.tree.leaves(new.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(s_new.batch_stats), jax.tree.leaves(new.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert s_new.params["encoder"]["stem_conv"]["kernel"].sharding.is_fully_replicated


def test_augment_option_traces_with_same_outputs(setup):
  state, x1, x2 = setup
  aug_state = state.replace(config=ss.as_simsiam_config({**TINY, "augment": True}))
  out = jax.eval_shape(ss.simsiam_update, aug_state, x1, x2, jax.random.key(0))
  ref = jax.eval_shape(ss.simsiam_update, state, x1, x2, jax.random.key(0))
  _, _, (f1, f2) = jax.eval_shape(
      lambda s: ss.simsiam_update(s, x1, x2, jax.random.key(0), return_features=True), state)
  assert f1.shape == f2.shape == (16, 16) and f1.dtype == jnp.float32
  shapes = lambda tree: [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]  # noqa: E731
  assert shapes(out) == shapes(ref) and set(out[1]) == {"loss", "z_std", "lr"}
  jaxpr = str(jax.make_jaxpr(ss.simsiam_update)(aug_state, x1, x2, jax.random.key(0)))
  assert "random_bits" in jaxpr  # the views were augmented


def test_batch_size_mismatch_is_a_user_error(setup):
  state, x1, x2 = setup
  with pytest.raises(UserError, match="batch_size=16"):
    ss.simsiam_update(state, x1[:8], x2[:8], jax.random.key(0))


def test_encode_from_state_variables_and_encoder_only(setup):
  state, x1, _ = setup

  @jax.jit
  def all_ways(state, x1):
    full = {"params": state.params, "batch_stats": state.batch_stats}
    enc_only = ss.encoder_variables(state)  # what the checkpoint keeps for evaluation
    grad = jax.grad(lambda p: ss.encode({"params": p, "batch_stats": state.batch_stats},
                                        x1).sum())(state.params)
    return (ss.encode(state, x1), ss.encode(full, x1),
            ss.encode(enc_only, images_to_float(x1)), grad)

  feats, from_full, from_encoder, grad = all_ways(state, x1)
  assert feats.shape == (16, 16) and feats.dtype == jnp.float32
  np.testing.assert_allclose(from_full, feats, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(from_encoder, feats, rtol=1e-5, atol=1e-6)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grad))  # detached
  with pytest.raises(UserError, match="variables dict"):
    ss.encode({"params": state.params}, x1)
