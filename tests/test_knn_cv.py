"""Weighted kNN classifier and the repeated stratified k-fold evaluation, against NumPy."""
import numpy as np
import pytest

from palm_jax.evaluation import cv_probe, feature_spectrum, knn_classifier
from palm_jax.evaluation import linear_probe as lp
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import UserError


def _blobs(seed, n, num_classes=4, dim=12, spread=1.0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, dim)) * spread
  labels = rng.integers(0, num_classes, n)
  return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def _knn_reference(bank, bank_labels, queries, k, temperature, num_classes, mask=None):
  """InstDisc / solo-learn's weighted vote, written out row by row in NumPy."""
  norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  bank, queries = norm(bank.astype(np.float64)), norm(queries.astype(np.float64))
  rows = np.arange(len(bank)) if mask is None else np.flatnonzero(mask)
  out = []
  for q in queries:
    sims = bank[rows] @ q
    top = np.argsort(-sims, kind="stable")[:k]
    votes = np.zeros(num_classes)
    for j in top:
      votes[bank_labels[rows[j]]] += np.exp(sims[j] / temperature)
    out.append(int(np.argmax(votes)))
  return np.array(out)


def test_knn_matches_numpy_reference_with_and_without_a_mask():
  bank, bank_y = _blobs(0, 300)
  queries, query_y = _blobs(1, 70)
  mask = np.random.default_rng(2).random(300) < 0.6
  for m in (None, mask):
    preds = knn_classifier.knn_predict(bank, bank_y, queries, num_classes=4, ks=(5, 40),
                                       temperature=0.07, bank_mask=m, chunk=32)
    for k in (5, 40):
      np.testing.assert_array_equal(preds[k],
                                    _knn_reference(bank, bank_y, queries, k, 0.07, 4, m))
  top1 = knn_classifier.knn_top1(bank, bank_y, queries, query_y, num_classes=4, ks=(5,))
  assert top1[5] == pytest.approx(np.mean(_knn_reference(bank, bank_y, queries, 5, 0.07, 4)
                                          == query_y))
  # A large temperature makes the vote a plain majority; a tiny one, 1-NN.
  one_nn = knn_classifier.knn_predict(bank, bank_y, queries, num_classes=4, ks=(40,),
                                      temperature=1e-4)[40]
  np.testing.assert_array_equal(one_nn, _knn_reference(bank, bank_y, queries, 1, 1.0, 4))
  with pytest.raises(UserError, match="k=.*between 1 and the 10"):
    knn_classifier.knn_predict(bank[:10], bank_y[:10], queries, num_classes=4, ks=(20,))


def test_stratified_folds_test_every_row_once_with_balanced_classes():
  labels = np.random.default_rng(0).integers(0, 7, 403)
  ids = cv_probe.stratified_fold_ids(labels, 5, 3, seed=4)
  assert ids.shape == (3, 403) and ids.min() == 0 and ids.max() == 4
  for r in range(3):
    for c in range(7):
      counts = np.bincount(ids[r, labels == c], minlength=5)
      assert counts.max() - counts.min() <= 1
    sizes = np.bincount(ids[r], minlength=5)
    assert sizes.max() - sizes.min() <= 1
  assert not np.array_equal(ids[0], ids[1])              # repeats re-partition
  np.testing.assert_array_equal(ids, cv_probe.stratified_fold_ids(labels, 5, 3, seed=4))


def test_fit_on_rows_equals_a_fit_on_those_rows_alone():
  x, y = _blobs(3, 300, spread=0.7)
  rows = np.random.default_rng(5).random(300) < 0.7
  kw = dict(weight_decays=(1e-4, 1e-2, 10.0), holdout_fraction=0.1, folds=3, max_iter=300,
            tol=1e-6, seed=7)
  alone, fit_alone = lp.fit_linear_probe(x[rows], y[rows], 4, **kw)
  placed, fit_placed = lp.fit_on_rows(x, y, rows, 4, mesh=sharding.make_mesh(), **kw)
  assert fit_placed.weight_decay == fit_alone.weight_decay
  np.testing.assert_allclose(fit_placed.holdout_top1, fit_alone.holdout_top1, atol=1e-6)
  np.testing.assert_allclose(np.asarray(lp.probe_logits(placed, x)),
                             np.asarray(lp.probe_logits(alone, x)), atol=2e-3)


def test_cross_validate_against_a_hand_computation():
  x, y = _blobs(6, 240, spread=0.6)
  kw = dict(weight_decays=(1e-3, 1.0), inner_folds=3, max_iter=300, tol=1e-6)
  result = cv_probe.cross_validate(x, y, 4, folds=4, repeats=2, seed=1, knn_ks=(3, 15), **kw)
  ids = cv_probe.stratified_fold_ids(y, 4, 2, seed=1)
  right = np.zeros((2, 240))
  knn_right = {3: np.zeros((2, 240)), 15: np.zeros((2, 240))}
  for r in range(2):
    for f in range(4):
      test = ids[r] == f
      # The nested rule by hand: a probe fit on the other folds only (λ chosen inside them).
      probe, fit = lp.fit_linear_probe(x[~test], y[~test], 4, folds=3,
                                       seed=1 * 1_000 + r * 4 + f, holdout_fraction=0.1,
                                       weight_decays=kw["weight_decays"], max_iter=300,
                                       tol=1e-6)
      assert result.weight_decays[r][f] == fit.weight_decay
      right[r, test] = np.argmax(np.asarray(lp.probe_logits(probe, x[test])), -1) == y[test]
      for k in (3, 15):
        knn_right[k][r, test] = _knn_reference(x[~test], y[~test], x[test], k, 0.07, 4) == \
            y[test]
  assert result.probe_top1 == pytest.approx(right.mean(), abs=1.5 / 240)  # ≤ 1 row's flip
  p = result.probe_top1
  assert result.probe_top1_se == pytest.approx(np.sqrt(p * (1 - p) / 240))
  assert result.probe_top1_repeat_std == pytest.approx(
      np.std([right[0].mean(), right[1].mean()], ddof=1), abs=1.5 / 240)
  for k in (3, 15):
    assert result.knn_top1[k] == pytest.approx(knn_right[k].mean())
  assert result.num_images == 240 and result.to_json()["knn_top1"]["3"] == result.knn_top1[3]
  with pytest.raises(UserError, match="smallest class"):
    cv_probe.cross_validate(x[:8], y[:8], 4, folds=5)


def test_feature_spectrum_against_hand_values():
  # Centred columns scaled 3 : 1 → singular values √18, √2, so p = (0.75, 0.25) and the
  # effective rank is exp(−0.75 ln 0.75 − 0.25 ln 0.25) = 1.7548.
  x = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  got = feature_spectrum.spectrum_stats(x)
  want = np.exp(-0.75 * np.log(0.75) - 0.25 * np.log(0.25))
  assert got["effective_rank"] == pytest.approx(want) and want == pytest.approx(1.7548, abs=1e-4)
  # ℓ2-normalised rows: (±1, 0) and (0, ±1); each column's std over the 4 rows is √0.5.
  assert got["normalised_std"] == pytest.approx(np.sqrt(0.5) * np.sqrt(2))
  # Isotropic Gaussian: ≈ 1 and ≈ d; one feature for every image: collapsed, 0 and 0.
  rng = np.random.default_rng(0)
  iso = feature_spectrum.spectrum_stats(rng.normal(size=(20_000, 16)))
  assert iso["normalised_std"] == pytest.approx(1.0, abs=0.02) and iso["dim"] == 16
  assert iso["effective_rank"] == pytest.approx(16.0, abs=0.2)
  same = feature_spectrum.spectrum_stats(np.tile(rng.normal(size=(1, 16)), (50, 1)))
  assert same["normalised_std"] == pytest.approx(0.0, abs=1e-9)
  assert same["effective_rank"] == 0.0
  # Rank one: every image on one line through the mean.
  line = np.outer(rng.normal(size=200), rng.normal(size=16)) + 5.0
  assert feature_spectrum.spectrum_stats(line)["effective_rank"] == pytest.approx(1.0, abs=1e-6)
