"""AUROC, ROC curves and FPR@95%TPR for OOD detection; in-distribution is the positive class.

A detector scores every image (higher = more in-distribution). With positives P (the
in-distribution test set, n_in scores) and negatives Q (an OOD set, n_out scores):

  AUROC = P(s_p > s_q) + ½ P(s_p = s_q)
        = 1/n_in Σ_p [ #{q : s_q < s_p} + ½ #{q : s_q = s_p} ] / n_out

the Mann–Whitney U statistic with ties counted half, which is exactly scikit-learn's
`roc_auc_score(y, s)` with `y = 1` for in-distribution. Both counts come from binary
searches into the sorted negatives, so the cost is O((n_in + n_out) log n_out) and the
per-positive terms lie in [0, 1] (float32 sums stay exact enough for 10⁵ images).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _check(scores_in: jax.Array, scores_out: jax.Array) -> None:
  chex.assert_rank([scores_in, scores_out], 1)


@jax.jit
def auroc(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
  """Area under the ROC curve, ties counted half.

  Args:
    scores_in: `[n_in]` scores of in-distribution (positive) examples.
    scores_out: `[n_out]` scores of out-of-distribution (negative) examples.
  Returns:
    A float32 scalar in [0, 1]; NaN if any score is NaN.
  """
  _check(scores_in, scores_out)
  scores_in = scores_in.astype(jnp.float32)
  neg = jnp.sort(scores_out.astype(jnp.float32))
  below = jnp.searchsorted(neg, scores_in, side="left")      # #{q : s_q < s_p}
  below_or_tied = jnp.searchsorted(neg, scores_in, side="right")  # #{q : s_q <= s_p}
  per_positive = (below + below_or_tied).astype(jnp.float32) / (2.0 * neg.shape[0])
  value = jnp.mean(per_positive)
  has_nan = jnp.isnan(scores_in).any() | jnp.isnan(neg).any()
  return jnp.where(has_nan, jnp.nan, value)


@jax.jit
def roc_curve(scores_in: jax.Array, scores_out: jax.Array) -> tuple[jax.Array, jax.Array]:
  """ROC points `(fpr, tpr)`, each `[n_in + n_out + 1]`, from (0, 0) to (1, 1).

  Point k thresholds at the k-th largest score t_k (predict "in" when s >= t_k):
    tpr_k = #{p : s_p >= t_k} / n_in,   fpr_k = #{q : s_q >= t_k} / n_out.
  Tied scores give repeated points, so the trapezoidal area under the points equals `auroc`.
  """
  _check(scores_in, scores_out)
  pos = jnp.sort(scores_in.astype(jnp.float32))
  neg = jnp.sort(scores_out.astype(jnp.float32))
  thresholds = jnp.sort(jnp.concatenate([pos, neg]))[::-1]
  tpr = (pos.shape[0] - jnp.searchsorted(pos, thresholds, side="left")) / pos.shape[0]
  fpr = (neg.shape[0] - jnp.searchsorted(neg, thresholds, side="left")) / neg.shape[0]
  zero = jnp.zeros((1,), jnp.float32)
  return (jnp.concatenate([zero, fpr.astype(jnp.float32)]),
          jnp.concatenate([zero, tpr.astype(jnp.float32)]))


@jax.jit
def fpr_at_tpr(scores_in: jax.Array, scores_out: jax.Array, tpr: float = 0.95) -> jax.Array:
  """False-positive rate at the largest threshold keeping at least `tpr` of the positives.

  t = the ⌈tpr·n_in⌉-th largest in-distribution score; returns #{q : s_q >= t} / n_out
  (the "FPR95" of the OOD literature with tpr=0.95; lower is better).
  """
  _check(scores_in, scores_out)
  pos = jnp.sort(scores_in.astype(jnp.float32))
  n = pos.shape[0]
  keep = jnp.ceil(tpr * n).astype(jnp.int32)
  threshold = pos[jnp.clip(n - keep, 0, n - 1)]
  return jnp.mean((scores_out >= threshold).astype(jnp.float32))


def trapezoid_area(fpr: jax.Array, tpr: jax.Array) -> jax.Array:
  """Σ_k (fpr_{k+1} − fpr_k)(tpr_{k+1} + tpr_k)/2 over the points of `roc_curve`."""
  return jnp.sum(jnp.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)
