"""APT kNN reward against a NumPy brute force (URLB's formulation)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.rewards import apt
from palm_jax.runtime.errors import UserError
from palm_jax.runtime.sharding import make_mesh


def np_knn_dists(source, target, k):
  """Brute force in float64: all pairwise L2 distances, sorted, first k."""
  s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
  d = np.sqrt(((s[:, None, :] - t[None, :, :]) ** 2).sum(-1))
  return np.sort(d, axis=1)[:, :k]


def np_reward(dists, average, clip):
  """The reward part of URLB's `utils.PBE.__call__` (rll-research/url_benchmark), ported
  to NumPy: `[B, k]` sorted distances; each distance clipped before the average."""
  b1, k = dists.shape
  if not average:
    reward = dists[:, -1].reshape(-1, 1)
    reward = np.maximum(reward - clip, 0.0) if clip >= 0.0 else reward
  else:
    reward = dists.reshape(-1, 1)
    reward = np.maximum(reward - clip, 0.0) if clip >= 0.0 else reward
    reward = reward.reshape((b1, k)).mean(axis=1, keepdims=True)
  return np.log(1.0 + reward)[:, 0]


def test_clip_applies_to_each_distance_as_urlb(data):
  """A clip inside the range of the k distances: per-distance and mean-clipping differ."""
  source, target = data
  d = np_knn_dists(source, target, 12)
  clip = float(np.median(d))
  got = apt.knn_reward(source, target, k=12, average=True, clip=clip)
  np.testing.assert_allclose(got, np_reward(d, True, clip), rtol=2e-5, atol=2e-5)
  clip_of_mean = np.log1p(np.maximum(d.mean(1) - clip, 0.0))  # the old (wrong) rule
  assert np.max(np.abs(np.asarray(got) - clip_of_mean)) > 1e-2


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  # A large common offset (like post-ReLU features) checks the Gram form's precision.
  source = rng.normal(size=(40, 16)).astype(np.float32) + 3.0
  target = rng.normal(size=(56, 16)).astype(np.float32) + 3.0
  return jnp.asarray(source), jnp.asarray(target)


@pytest.mark.parametrize("k,average,clip",
                         list(itertools.product([1, 3, 12], [True, False], [0.0, 2.5])))
def test_knn_reward_matches_numpy(data, k, average, clip):
  source, target = data
  # source ≠ target.
  got = apt.knn_reward(source, target, k=k, average=average, clip=clip)
  want = np_reward(np_knn_dists(source, target, k), average, clip)
  assert got.shape == (40,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # source is target: the point itself is its own nearest neighbour.
  got = apt.knn_reward(source, source, k=k, average=average, clip=clip)
  want = np_reward(np_knn_dists(source, source, k), average, clip)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_self_distance_is_exactly_zero_and_k_is_validated(data):
  source, target = data
  np.testing.assert_array_equal(apt.knn_reward(source, source, k=1), np.zeros(40))
  dists = apt.knn_distances(source, source, k=4)
  np.testing.assert_array_equal(dists[:, 0], 0.0)
  assert np.all(np.diff(np.asarray(dists), axis=1) >= 0)  # ascending
  with pytest.raises(UserError, match="k=57"):
    apt.knn_reward(source, target, k=57)
  with pytest.raises(UserError, match="k=0"):
    apt.knn_reward(source, target, k=0)
  # bfloat16 features are accepted and computed in float32.
  r = apt.knn_reward(source.astype(jnp.bfloat16), target.astype(jnp.bfloat16), k=3)
  assert r.dtype == jnp.float32 and np.all(np.isfinite(r))


def test_no_gradient_flows_through_the_reward(data):
  source, target = data
  grad = jax.grad(lambda s: apt.knn_reward(s, target, k=3).sum())(source)
  np.testing.assert_array_equal(grad, 0.0)


def test_jit_with_sharded_batch_matches_unsharded(data):
  source, _ = data
  mesh = make_mesh()
  assert mesh.size == 8
  sharded = jax.device_put(source, NamedSharding(mesh, P("data")))
  fn = jax.jit(lambda h: apt.knn_reward(h, h, k=12))
  np.testing.assert_allclose(fn(sharded), fn(source), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(fn(source), apt.knn_reward(source, source, k=12), rtol=1e-6)


class NumpyRMS:
  """URLB's utils.RMS, mean part, in float64."""

  def __init__(self, epsilon=1e-4):
    self.m, self.n = 0.0, epsilon

  def __call__(self, x):
    x = np.asarray(x, np.float64).reshape(-1)
    bs = x.size
    self.m = self.m + (x.mean() - self.m) * bs / (self.n + bs)
    self.n += bs
    return self.m


@pytest.mark.parametrize("average", [True, False])
def test_running_mean_normalisation_matches_urlb(average):
  rng = np.random.default_rng(1)
  ref = NumpyRMS()
  rms = apt.init_running_mean()
  step = jax.jit(lambda h, r: apt.knn_reward_normalized(h, h, r, k=5, average=average,
                                                        clip=0.1))
  for i in range(4):
    h = rng.normal(size=(24, 8)).astype(np.float32) * (1.0 + i)
    reward, rms = step(jnp.asarray(h), rms)
    d = np_knn_dists(h, h, 5)
    mean = ref(d if average else d[:, -1])
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(reward, np_reward(d / mean, average, 0.1), rtol=1e-4,
                               atol=1e-5)
  assert float(rms.count) == pytest.approx(1e-4 + 4 * (24 * 5 if average else 24))
  # Works as a lax.scan carry.
  hs = jnp.asarray(rng.normal(size=(3, 24, 8)).astype(np.float32))
  final, rewards = jax.lax.scan(
      lambda r, h: apt.knn_reward_normalized(h, h, r, k=5)[::-1], apt.init_running_mean(), hs)
  assert rewards.shape == (3, 24) and final.count > 3 * 24
