"""Linear probe: separable features → ~100%; the optimum matches scikit-learn's."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from palm_jax.evaluation import linear_probe as lp
from palm_jax.runtime.errors import UserError

GRID = (1e-4, 1e-2, 10.0)


def _blobs(seed, n, num_classes=4, dim=12, spread=4.0, noise_seed=None):
  """Gaussian blobs around `num_classes` centres (fixed by `seed`): `([n, dim], [n])`."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, dim)) * spread
  noise = np.random.default_rng(noise_seed) if noise_seed is not None else rng
  labels = noise.integers(0, num_classes, n)
  return (centres[labels] + noise.normal(size=(n, dim))).astype(np.float32), labels


def test_separable_features_reach_100_percent_and_lambda_is_chosen_on_holdout():
  x, y = _blobs(0, 300)
  x_test, y_test = _blobs(0, 100, noise_seed=9)  # Same centres, fresh samples.
  grid = GRID
  probe, fit = lp.fit_linear_probe(x, y, 4, weight_decays=grid, holdout_fraction=0.2,
                                   max_iter=100, seed=1)
  assert lp.top1_accuracy(probe, x, y) >= 0.99
  assert lp.top1_accuracy(probe, x_test, y_test) >= 0.99
  assert fit.holdout_top1.shape == (3,)
  assert fit.holdout_top1[2] < fit.holdout_top1.max()  # λ = 10 underfits: not chosen.
  # The pick is the best held-out top-1 (ties → the strongest weight decay).
  best = np.flatnonzero(fit.holdout_top1 >= fit.holdout_top1.max() - 1e-7)[-1]
  assert fit.weight_decay == pytest.approx(grid[best], rel=1e-6)
  assert probe.weights.shape == (12, 4) and probe.bias.shape == (4,)


def test_optimum_matches_sklearn_logistic_regression():
  # Overlapping blobs (a unique, finite optimum); same shapes as the test above, so the
  # solver compiled there is reused.
  x, y = _blobs(1, 300, spread=0.5)
  probe, fit = lp.fit_linear_probe(x, y, 4, weight_decays=GRID, holdout_fraction=0.2,
                                   max_iter=300, tol=1e-6, seed=1)
  lam = fit.weight_decay
  standardised = (x - x.mean(0)) / (x.std(0) + 1e-6)
  # sklearn minimises ½‖W‖² + C Σ CE  ⇔  mean CE + λ/2 ‖W‖² with C = 1 / (λ n).
  ref = LogisticRegression(C=1.0 / (lam * len(x)), tol=1e-10, max_iter=10_000)
  ref.fit(standardised, y)
  logits = np.asarray(lp.probe_logits(probe, x))
  ours = np.exp(logits - logits.max(1, keepdims=True))
  ours /= ours.sum(1, keepdims=True)
  np.testing.assert_allclose(ours, ref.predict_proba(standardised), atol=2e-3)
  assert fit.grad_norm < 1e-4


def test_probe_errors():
  x, y = _blobs(2, 10)
  with pytest.raises(UserError, match="num_classes=3"):
    lp.fit_linear_probe(x, y, 3)
  with pytest.raises(UserError, match="holdout_fraction"):
    lp.fit_linear_probe(x, y, 4, holdout_fraction=1.0)
  with pytest.raises(UserError, match="non-negative"):
    lp.fit_linear_probe(x, y, 4, weight_decays=(-1.0,))


def test_kfold_choice_is_deterministic_and_picks_the_right_lambda():
  # Clean blobs: any real fit beats the huge λ = 100, which shrinks W to ~0 (chance).
  x, y = _blobs(3, 200, dim=8)
  grid = (1e-3, 100.0)
  _, fit = lp.fit_linear_probe(x, y, 4, weight_decays=grid, folds=4, max_iter=100, seed=0)
  _, again = lp.fit_linear_probe(x, y, 4, weight_decays=grid, folds=4, max_iter=100, seed=0)
  assert fit.weight_decay == again.weight_decay == pytest.approx(1e-3)
  np.testing.assert_array_equal(fit.holdout_top1, again.holdout_top1)
  assert fit.holdout_top1[0] > 0.95 > fit.holdout_top1[1]
  # Pure-noise features, 70/30 labels: a weak λ overfits 8 noise dimensions on 50 rows
  # per fold; the strong one predicts the majority class (CV top-1 = 0.7). k-fold picks it.
  rng = np.random.default_rng(4)
  noise = rng.normal(size=(200, 8)).astype(np.float32)
  labels = (np.arange(200) % 10 < 3).astype(np.int32)
  _, fit = lp.fit_linear_probe(noise, labels, 4, weight_decays=grid, folds=4, max_iter=100,
                               seed=0)
  assert fit.weight_decay == pytest.approx(100.0)
  assert fit.holdout_top1[1] == pytest.approx(0.7, abs=1e-6)
  assert fit.holdout_top1[0] < 0.7
  # Every row is held out exactly once across the folds.
  masks = lp.fold_masks(200, 4, 0.1, seed=0)
  np.testing.assert_array_equal(masks.sum(0), np.ones(200))
