"""Weighted k-nearest-neighbour classification of frozen features: the standard SSL monitor.

The classifier of Wu et al. 2018 (InstDisc, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"), as solo-learn's `WeightedKNNClassifier` and
DINO's `eval_knn.py` use it: features are L2-normalised, a query q takes the k bank rows
b_1..b_k of largest cosine similarity s_j = q · b_j, and each votes for its label with
weight exp(s_j / T):

    score_c(q) = Σ_{j=1..k} exp(s_j / T) · [y_j = c],     ŷ(q) = argmax_c score_c(q)

with T = 0.07 and k = 20 (solo-learn's default) and k = 200 (InstDisc's). No
hyperparameter is fit, so it needs no validation split: cheap, and a second opinion beside
the linear probe.

The search is exact: query chunks are sharded over the mesh's `data` axis, the bank is
replicated, one `lax.top_k` with the largest k serves every k (its neighbours are sorted, so
k = 20 reads the first 20 of the 200). `bank_mask` leaves bank rows out of the search
without changing shapes (cross-validation folds reuse one compilation).
"""
from __future__ import annotations

import functools
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

DEFAULT_KS = (20, 200)
DEFAULT_TEMPERATURE = 0.07


def _normalise(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("ks", "num_classes"))
def knn_predict_chunk(bank: jax.Array, bank_labels: jax.Array, bank_mask: jax.Array,
                      queries: jax.Array, temperature: jax.Array, *, ks: tuple[int, ...],
                      num_classes: int) -> jax.Array:
  """Predicted labels int32 `[len(ks), B]` for normalised `queries [B, D]`.

  bank: normalised `[M, D]`; bank_labels: int `[M]`; bank_mask: bool `[M]` (False = not
  a neighbour). Ties between classes go to the smaller class id (argmax).
  """
  chex.assert_rank([bank, bank_labels, bank_mask, queries], [2, 1, 1, 2])
  sims = queries @ bank.T
  sims = jnp.where(bank_mask[None, :], sims, -jnp.inf)
  top_sims, top_idx = jax.lax.top_k(sims, max(ks))             # sorted, largest first
  # exp((s_j − s_1) / T): the same vote up to a per-query factor (argmax unchanged), with
  # no overflow at small T; masked rows have s = −inf and weight 0.
  weights = jnp.exp((top_sims - top_sims[:, :1]) / temperature)
  onehot = jax.nn.one_hot(bank_labels[top_idx], num_classes)   # [B, kmax, C]
  votes = weights[..., None] * onehot
  return jnp.stack([jnp.argmax(votes[:, :k].sum(1), -1) for k in ks]).astype(jnp.int32)


def knn_predict(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, *,
                num_classes: int, ks: Sequence[int] = DEFAULT_KS,
                temperature: float = DEFAULT_TEMPERATURE, bank_mask: np.ndarray | None = None,
                chunk: int = 1024, mesh: Mesh | None = None) -> dict[int, np.ndarray]:
  """`{k: predicted labels [N]}` for `queries [N, D]` against `bank [M, D]` (raw features).

  bank_mask: bool `[M]`, the rows that may be neighbours (default: all). Every k must be at
  most the number of usable bank rows.
  """
  ks = tuple(int(k) for k in ks)
  m = int(bank.shape[0])
  mask = np.ones((m,), bool) if bank_mask is None else np.asarray(bank_mask, bool)
  usable = int(mask.sum())
  require(all(1 <= k <= usable for k in ks),
          f"kNN k={list(ks)} must lie between 1 and the {usable} labelled bank images; use "
          "smaller k.")
  require(temperature > 0, f"kNN temperature={temperature} must be positive (e.g. 0.07).")
  mesh = mesh or sharding.make_mesh()
  chunk = -(-chunk // mesh.size) * mesh.size
  placed = sharding.host_to_global(
      (_normalise(bank), np.asarray(bank_labels, np.int32), mask, np.float32(temperature)),
      mesh, sharded=False)
  queries = _normalise(queries)
  rows, out = sharding.local_slice(chunk, mesh), []
  for start in range(0, queries.shape[0], chunk):
    batch = queries[start:start + chunk]
    batch = np.pad(batch, ((0, chunk - batch.shape[0]), (0, 0)))
    out.append(knn_predict_chunk(*placed[:3], sharding.host_to_global(batch[rows], mesh),
                                 placed[3], ks=ks, num_classes=num_classes))
  n = queries.shape[0]
  preds = (np.concatenate(sharding.to_host(out), axis=1)[:, :n] if out
           else np.zeros((len(ks), 0), np.int32))
  return {k: preds[i] for i, k in enumerate(ks)}


def knn_top1(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray,
             query_labels: np.ndarray, *, num_classes: int, ks: Sequence[int] = DEFAULT_KS,
             temperature: float = DEFAULT_TEMPERATURE, mesh: Mesh | None = None
             ) -> dict[int, float]:
  """`{k: top-1 accuracy}` of the weighted kNN classifier on a train (bank) / test split."""
  preds = knn_predict(bank, bank_labels, queries, num_classes=num_classes, ks=ks,
                      temperature=temperature, mesh=mesh)
  labels = np.asarray(query_labels)
  return {k: float(np.mean(p == labels)) for k, p in preds.items()}
