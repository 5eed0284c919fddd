"""Bootstrap intervals over seeds: one condition's mean, and the difference of two.

A sweep has few seeds per condition (3 in the mini study), so the intervals are the
percentile bootstrap computed *exactly* where that is cheap: every resample of n seeds with
replacement is a multiset, whose probability is multinomial (n! / Π m_i!) / n^n, so the
distribution of the resampled mean is enumerated over the C(2n − 1, n) multisets (n ≤ 10;
beyond that `draws` seeded Monte-Carlo resamples). Differences resample each condition's
seeds independently (a stratified bootstrap, as rliable does for aggregate scores; seeds of
two conditions are not paired), so the difference's distribution is the convolution of the
two means' distributions.

Interval: the percentile interval [q(α/2), q(1 − α/2)] of that distribution, where q(p) is
the smallest value whose cumulative probability reaches p (no interpolation). With n = 3 a
mean's interval is [min, max] of the seeds (each extreme has probability 1/27 > 2.5 %):
small samples give wide intervals, but not wide enough: [min, max] of n seeds contains a
symmetric distribution's mean with probability 1 − 2 · 2^−n, 75 % for n = 3. So the bootstrap
is not the only test: `welch_interval` is Welch's t interval for the difference of two means
(unequal variances, Welch–Satterthwaite degrees of freedom; Welch 1947), which is exact for
normal seeds and is the wider of the two at n = 3. A difference is *called* only when each
condition has at least two seeds and both intervals exclude 0 (`called`).
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from scipy import stats

EXACT_MAX_N = 10


def mean_distribution(values: Sequence[float], *, draws: int = 20_000, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
  """(support, probabilities) of the mean of a bootstrap resample of `values`."""
  x = np.asarray(values, np.float64)
  n = x.size
  if n == 0:
    return np.zeros((0,)), np.zeros((0,))
  if n > EXACT_MAX_N:
    idx = np.random.default_rng(seed).integers(0, n, (draws, n))
    return x[idx].mean(1), np.full((draws,), 1.0 / draws)
  means, probs = [], []
  log_norm = math.lgamma(n + 1) - n * math.log(n)
  for combo in itertools.combinations_with_replacement(range(n), n):
    counts = np.bincount(combo, minlength=n)
    log_p = log_norm - sum(math.lgamma(c + 1) for c in counts)
    means.append(float(counts @ x) / n)
    probs.append(math.exp(log_p))
  return np.asarray(means), np.asarray(probs)


def quantile(support: np.ndarray, probs: np.ndarray, p: float) -> float:
  """The smallest value whose cumulative probability reaches p."""
  order = np.argsort(support, kind="stable")
  cdf = np.cumsum(probs[order])
  i = int(np.searchsorted(cdf, p - 1e-12, side="left"))
  return float(support[order][min(i, len(order) - 1)])


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean over seeds ((nan, nan) when empty)."""
  support, probs = mean_distribution(values)
  if support.size == 0:
    return math.nan, math.nan
  a = (1.0 - level) / 2
  return quantile(support, probs, a), quantile(support, probs, 1.0 - a)


def difference_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95
                        ) -> tuple[float, float, float]:
  """(mean(a) − mean(b), interval low, high) by the stratified bootstrap of the doc."""
  sa, pa = mean_distribution(a, seed=1)
  sb, pb = mean_distribution(b, seed=2)
  if sa.size == 0 or sb.size == 0:
    return math.nan, math.nan, math.nan
  support = (sa[:, None] - sb[None, :]).ravel()
  probs = (pa[:, None] * pb[None, :]).ravel()
  tail = (1.0 - level) / 2
  return (float(np.mean(a) - np.mean(b)), quantile(support, probs, tail),
          quantile(support, probs, 1.0 - tail))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95
                   ) -> tuple[float, float]:
  """Welch's t interval for mean(a) − mean(b); (nan, nan) with fewer than two seeds a side."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or b.size < 2:
    return math.nan, math.nan
  diff = float(a.mean() - b.mean())
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  se2 = va + vb
  if se2 == 0.0:
    return diff, diff
  df = se2 ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
  half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
  return diff - half, diff + half


def called(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> bool:
  """Whether mean(a) − mean(b) is called: two seeds or more a side, both intervals exclude 0."""
  if len(a) < 2 or len(b) < 2:
    return False
  _, low, high = difference_interval(a, b, level)
  w_low, w_high = welch_interval(a, b, level)
  return (low > 0 and w_low > 0) or (high < 0 and w_high < 0)
