"""AUROC, ROC curve and FPR@95 against scikit-learn and known answers."""
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics

from palm_jax.evaluation import auroc as A


def _sk(scores_in, scores_out):
  y = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
  return y, np.r_[scores_in, scores_out]


@pytest.mark.parametrize("seed, n_in, n_out, levels", [
    (0, 200, 150, 5), (1, 97, 301, 3), (2, 500, 500, 1000), (3, 1, 7, 2)])
def test_auroc_matches_sklearn_with_ties(seed, n_in, n_out, levels):
  rng = np.random.default_rng(seed)
  s_in = rng.integers(0, levels, n_in).astype(np.float32) + 0.3
  s_out = rng.integers(0, levels, n_out).astype(np.float32)
  s_out[: n_out // 3] += 0.3  # Many exact ties between the two sets.
  y, s = _sk(s_in, s_out)
  expected = metrics.roc_auc_score(y, s)
  got = float(A.auroc(jnp.asarray(s_in), jnp.asarray(s_out)))
  assert got == pytest.approx(expected, abs=1e-6)
  fpr, tpr = A.roc_curve(jnp.asarray(s_in), jnp.asarray(s_out))
  assert float(A.trapezoid_area(fpr, tpr)) == pytest.approx(expected, abs=1e-5)


def test_roc_curve_points_match_sklearn():
  rng = np.random.default_rng(5)
  s_in, s_out = rng.normal(1, 1, 60).round(1), rng.normal(0, 1, 80).round(1)
  fpr, tpr = map(np.asarray, A.roc_curve(jnp.asarray(s_in), jnp.asarray(s_out)))
  assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
  assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
  sk_fpr, sk_tpr, _ = metrics.roc_curve(*_sk(s_in, s_out), drop_intermediate=False)
  ours = {(round(float(a), 6), round(float(b), 6)) for a, b in zip(fpr, tpr)}
  theirs = {(round(float(a), 6), round(float(b), 6)) for a, b in zip(sk_fpr, sk_tpr)}
  assert ours == theirs


def test_known_answers():
  x = jnp.asarray(np.random.default_rng(0).normal(size=300), jnp.float32)
  # float32 means: within an ulp or two of the exact answers.
  assert float(A.auroc(x, x)) == pytest.approx(0.5, abs=1e-6)  # Identical sets.
  assert float(A.auroc(x + 100.0, x)) == pytest.approx(1.0, abs=1e-6)  # Disjoint.
  assert float(A.auroc(x, x + 100.0)) == 0.0
  assert float(A.auroc(jnp.ones(4), jnp.ones(9))) == 0.5       # All tied.
  assert np.isnan(float(A.auroc(x.at[3].set(jnp.nan), x)))


def test_fpr_at_95_tpr_matches_numpy_reference():
  rng = np.random.default_rng(1)
  s_in, s_out = rng.normal(1, 1, 401).astype(np.float32), rng.normal(0, 1, 333)
  s_out = s_out.astype(np.float32)
  got = float(A.fpr_at_tpr(jnp.asarray(s_in), jnp.asarray(s_out), 0.95))
  # Reference: the largest threshold among the in-scores with TPR >= 0.95.
  best = max(t for t in s_in if np.mean(s_in >= t) >= 0.95)
  assert got == pytest.approx(np.mean(s_out >= best), abs=1e-7)
  assert float(A.fpr_at_tpr(jnp.asarray(s_in + 100), jnp.asarray(s_out), 0.95)) == 0.0
