"""APT's particle-based entropy reward (Liu & Abbeel 2021), as in URLB's `PBE`.

For features `h_i` of the sampled batch, the reward is the log of (one plus) the distance
to the k nearest neighbours among the target features — a particle estimate of the state
entropy whose gradient pushes the agent toward sparsely visited regions of feature space:

    d_ij = ||s_i - t_j||_2                  (plain, *not* squared, L2 distances; URLB)
    d_ij = d_ij / running_mean(d)           (optional, `knn_reward_normalized`; URLB's knn_rms)
    D_i  = mean_{j in kNN(i)} max(d_ij - clip, 0)    (average=True: each distance clipped)
    D_i  = max(d_ik - clip, 0)                       (average=False: the k-th smallest)
    r_i  = log(1 + D_i)

When `source is target` the point itself is one of its k neighbours (distance exactly 0),
as in URLB, so `k=1` gives reward 0.

The clip follows URLB's `utils.PBE.__call__` (rll-research/url_benchmark): with `knn_avg`
the `B·k` distances are reshaped to a column, normalised, clipped one by one
(`torch.maximum(reward - knn_clip, 0)`), then reshaped to `[B, k]` and averaged, and the
reward is `log(c + reward)` with `c = 1`. (An earlier palm_jax issue clipped the mean
instead; that differs whenever some but not all of the k distances lie below `clip`. The
default `clip = 0` is unaffected: distances are non-negative.)

Distances use the Gram form `||s||^2 + ||t||^2 - 2 s.t` (clamped at 0, then the square root
of only the k selected values) on float32 inputs centred on the target mean, with float32
accumulation at `HIGHEST` matmul precision; memory is `O(B·M)`, never `O(B·M·D)`. When
`source is target` the diagonal is set to exactly 0. The reward carries no gradient.
"""
from __future__ import annotations

import chex
import flax.struct
import jax
import jax.numpy as jnp

from palm_jax.runtime.errors import require


@flax.struct.dataclass
class RunningMean:
  """URLB's running mean of kNN distances (`utils.RMS.M`): float32 scalars.

  `count` starts at a small epsilon (URLB: 1e-4), so the first update sets `mean` to
  (almost exactly) the first batch's mean.
  """
  mean: jax.Array
  count: jax.Array


def init_running_mean(epsilon: float = 1e-4) -> RunningMean:
  """A fresh normaliser: `mean = 0`, `count = epsilon`."""
  return RunningMean(mean=jnp.zeros((), jnp.float32),
                     count=jnp.asarray(epsilon, jnp.float32))


def update_running_mean(state: RunningMean, values: jax.Array) -> RunningMean:
  """Folds all entries of `values` (any shape, `n` entries) into the running mean.

  `mean' = mean + (mean(values) − mean) · n / (count + n)`, `count' = count + n`
  (URLB's `RMS.__call__`; in float32 the weight of a new batch saturates near
  `n / count ≈ 1e-7`, after which the mean changes very slowly, as it does in URLB).
  """
  values = jax.lax.stop_gradient(values).astype(jnp.float32)
  n = jnp.asarray(values.size, jnp.float32)
  mean = state.mean + (jnp.mean(values) - state.mean) * n / (state.count + n)
  return RunningMean(mean=mean, count=state.count + n)


def knn_distances(source: jax.Array, target: jax.Array, *, k: int) -> jax.Array:
  """The `k` smallest L2 distances from each source row to the target rows, ascending.

  `source [B, D]`, `target [M, D]` → float32 `[B, k]`; column 0 is the nearest. The point
  itself counts when `source is target`. Raises a UserError unless `1 <= k <= M`.
  """
  same = source is target
  chex.assert_rank([source, target], 2)
  chex.assert_equal_shape_suffix([source, target], 1)
  batch, num_target = source.shape[0], target.shape[0]
  require(isinstance(k, int) and 1 <= k <= num_target,
          f"knn k={k} must be an integer between 1 and the number of target rows "
          f"({num_target}); lower k (config.apt.k) or sample a larger batch.")
  t = jax.lax.stop_gradient(target).astype(jnp.float32)
  # Centring on the target mean keeps the norms small, so the Gram-form cancellation
  # error stays small even for features with a large common component (post-ReLU).
  center = jnp.mean(t, axis=0)
  t = t - center
  s = t if same else jax.lax.stop_gradient(source).astype(jnp.float32) - center
  gram = jnp.einsum("bd,md->bm", s, t, precision=jax.lax.Precision.HIGHEST,
                    preferred_element_type=jnp.float32)
  sq_s = jnp.sum(s * s, axis=-1)
  sq_t = sq_s if same else jnp.sum(t * t, axis=-1)
  d2 = jnp.maximum(sq_s[:, None] + sq_t[None, :] - 2.0 * gram, 0.0)
  if same:
    d2 = jnp.where(jnp.eye(batch, dtype=bool), 0.0, d2)
  neg_d2, _ = jax.lax.top_k(-d2, k)  # the k largest of −d², i.e. the k smallest d²
  dist = jnp.sqrt(jnp.maximum(-neg_d2, 0.0))
  chex.assert_shape(dist, (batch, k))
  return dist


def _reduce_and_squash(dist: jax.Array, average: bool, clip: float) -> jax.Array:
  """`[B, k]` sorted distances → `log(1 + D)`, `D` the mean of the clipped distances
  `max(d − clip, 0)` (average) or the clipped k-th distance, as URLB's PBE."""
  clipped = jnp.maximum((dist if average else dist[:, -1:]) - clip, 0.0)
  return jnp.log1p(jnp.mean(clipped, axis=-1))


def knn_reward(source: jax.Array, target: jax.Array, *, k: int = 12, average: bool = True,
               clip: float = 0.0) -> jax.Array:
  """APT reward `r_i = log(1 + D_i)`: `source [B, D]`, `target [M, D]` → `[B]`.

  `D_i` is the mean over the k smallest L2 distances d from source row i to the target
  rows of `max(d − clip, 0)` (`average=True`), or that of the k-th smallest alone
  (`average=False`). float32, no gradient.
  """
  reward = _reduce_and_squash(knn_distances(source, target, k=k), average, clip)
  chex.assert_shape(reward, (source.shape[0],))
  return reward


def knn_reward_normalized(source: jax.Array, target: jax.Array, rms: RunningMean, *,
                          k: int = 12, average: bool = True,
                          clip: float = 0.0) -> tuple[jax.Array, RunningMean]:
  """`knn_reward` with distances divided by their running mean (URLB's `knn_rms=True`).

  The running mean is first updated with this batch's distances — all `B·k` of them when
  `average`, the `B` k-th distances otherwise, as URLB does — then `d ← d / mean'`
  (`mean'` floored at 1e-8 so fully collapsed features give 0, not NaN). Returns the
  reward `[B]` and the new normaliser; pure, so it can live in a `lax.scan` carry.
  """
  dist = knn_distances(source, target, k=k)
  rms = update_running_mean(rms, dist if average else dist[:, -1])
  dist = dist / jnp.maximum(rms.mean, 1e-8)
  reward = _reduce_and_squash(dist, average, clip)
  chex.assert_shape(reward, (source.shape[0],))
  return reward, rms
