"""OOD scores (higher = more in-distribution) and their evaluation against OOD sets.

Two scores, both computed from the frozen encoder's features h = f(x):
  msp   the maximum softmax probability of the linear probe trained on the in-distribution
        training split: s(x) = max_c softmax(W ĥ + b)_c   (Hendrycks & Gimpel 2017; the
        PALM paper's "Standard" baseline).
  knn   minus the distance to the k-th nearest in-distribution training feature in
        L2-normalised feature space (Sun et al. 2022):
          z = h / ‖h‖,   s(x) = −‖z − z_(k)‖ = −sqrt(2 − 2 cos_(k)),
        where cos_(k) is the k-th largest cosine similarity to the training bank.
The kNN search is exact: query chunks are sharded over the mesh's `data` axis, the bank is
replicated, and `jax.lax.top_k` keeps the k largest similarities of each row.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from palm_jax.evaluation import auroc as auroc_lib
from palm_jax.evaluation.linear_probe import LinearProbe, probe_logits
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

SCORES = ("msp", "knn")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """`x / max(‖x‖, eps)` along the last axis."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@jax.jit
def msp_score(probe: LinearProbe, features: jax.Array) -> jax.Array:
  """`[N, D]` features → `[N]` maximum softmax probability of the probe."""
  chex.assert_rank(features, 2)
  return jnp.max(jax.nn.softmax(probe_logits(probe, features), axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames="k")
def knn_score_chunk(bank: jax.Array, queries: jax.Array, *, k: int) -> jax.Array:
  """`s = −sqrt(max(2 − 2 cos_(k), 0))` for L2-normalised `queries [B, D]`, `bank [M, D]`.

  Returns `[B]`; cos_(k) is the k-th largest of `queries @ bank.T` along each row.
  """
  chex.assert_rank([bank, queries], 2)
  sims = queries @ bank.T
  kth = jax.lax.top_k(sims, k)[0][:, k - 1]
  return -jnp.sqrt(jnp.maximum(2.0 - 2.0 * kth, 0.0))


class KnnScorer:
  """`scorer(features [N, D]) → [N]` kNN scores against a fixed training bank `[M, D]`."""

  def __init__(self, train_features: np.ndarray, *, k: int, chunk: int = 1024,
               mesh: Mesh | None = None):
    m = int(train_features.shape[0])
    require(1 <= k <= m, f"config.knn_k={k} must be between 1 and the number of "
                         f"in-distribution training images ({m}).")
    self.mesh = mesh or sharding.make_mesh()
    self.k = k
    self.chunk = -(-chunk // self.mesh.size) * self.mesh.size
    bank = np.asarray(l2_normalize(jnp.asarray(train_features, jnp.float32)))
    self._bank = sharding.host_to_global(bank, self.mesh, sharded=False)

  def __call__(self, features: np.ndarray) -> np.ndarray:
    queries = np.asarray(l2_normalize(jnp.asarray(features, jnp.float32)))
    n, out = queries.shape[0], []
    rows = sharding.local_slice(self.chunk, self.mesh)
    for start in range(0, n, self.chunk):
      batch = queries[start:start + self.chunk]
      batch = np.pad(batch, ((0, self.chunk - batch.shape[0]), (0, 0)))
      out.append(knn_score_chunk(self._bank, sharding.host_to_global(batch[rows], self.mesh),
                                 k=self.k))
    return np.concatenate(sharding.to_host(out))[:n] if out else np.zeros((0,), np.float32)


def score_all(probe: LinearProbe, knn: KnnScorer, features: np.ndarray) -> dict[str, np.ndarray]:
  """`{"msp": [N], "knn": [N]}` for `[N, D]` features."""
  return {"msp": np.asarray(msp_score(probe, jnp.asarray(features, jnp.float32))),
          "knn": knn(features)}


def evaluate_scores(scores_in: dict[str, np.ndarray], scores_out: dict[str, np.ndarray]
                    ) -> dict[str, dict]:
  """Per score: `{"auroc", "fpr95", "fpr": [..], "tpr": [..]}` (in-distribution positive)."""
  result = {}
  for name in scores_in:
    s_in, s_out = jnp.asarray(scores_in[name]), jnp.asarray(scores_out[name])
    fpr, tpr = auroc_lib.roc_curve(s_in, s_out)
    result[name] = {"auroc": float(auroc_lib.auroc(s_in, s_out)),
                    "fpr95": float(auroc_lib.fpr_at_tpr(s_in, s_out, 0.95)),
                    "fpr": np.asarray(fpr), "tpr": np.asarray(tpr)}
  return result
