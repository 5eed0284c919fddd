"""Repeated stratified k-fold evaluation of frozen features: every labelled image is tested.

A train/test split of a small labelled set wastes most of it on training and measures the
probe on few images: on the 1,017-image CIFAR-10 test subset one top-1 has a binomial
standard error of ~1.5 points (sqrt(p (1 − p) / n) at p ≈ 0.3). Pooling every labelled
image (the 5,170 + 1,017 subset images: 6,187) and testing each one once per repeat halves
that, to ~0.6 points, so differences of about one point between encoders become visible.

Protocol (features are extracted once, by the caller):
  * `repeats` × `folds` stratified folds: per repeat, each class's rows are shuffled
    (seeded) and dealt round-robin to the folds, so every fold has each class's share to
    within one image and every row is tested exactly once per repeat.
  * per outer fold, the linear probe of `linear_probe.fit_on_rows` is fit on the other
    folds only: standardisation statistics from those rows, and the weight decay chosen by
    an inner k-fold cross-validation *inside* them (nested CV: the tested fold never
    influences its own probe). The weighted kNN classifier (`knn_classifier.py`) uses the
    same training rows as its bank.
  * a repeat's top-1 is the share of all rows predicted correctly; the result is the mean
    over repeats.

Reported uncertainty (`*_se`): the binomial standard error of a top-1 measured on N
independent test images, sqrt(p (1 − p) / N): the test-set sampling noise, which repeats
cannot remove (a repeat only re-partitions the same images). `*_repeat_std` is the
spread over repeats (the partition noise, which repeats do average away). Folds of one
repeat are not independent tests, so the standard deviation of per-fold accuracies over
sqrt(#folds) would understate the noise (Nadeau & Bengio 2003, "Inference for the
generalization error"); it is reported only as per-fold values.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import chex
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from palm_jax.evaluation import knn_classifier, linear_probe
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require


def stratified_fold_ids(labels: np.ndarray, folds: int, repeats: int, seed: int
                        ) -> np.ndarray:
  """int32 `[repeats, N]`: the fold (0..folds-1) that tests each row, per repeat.

  Per repeat and class, the class's rows in a seeded random order are dealt to the folds
  round-robin starting at a random fold, so class counts per fold differ by at most one.
  """
  labels = np.asarray(labels)
  out = np.empty((repeats, labels.shape[0]), np.int32)
  for r in range(repeats):
    rng = np.random.default_rng([seed, r])
    offset = 0
    for c in np.unique(labels):
      rows = np.flatnonzero(labels == c)
      rng.shuffle(rows)
      out[r, rows] = (offset + np.arange(rows.size)) % folds
      offset = (offset + rows.size) % folds  # the next class starts where this one ended
  return out


@dataclasses.dataclass(frozen=True)
class CVResult:
  """Repeated stratified k-fold top-1 of the probe and the kNN classifier."""
  probe_top1: float              # mean over repeats of the share of rows right
  probe_top1_se: float           # binomial standard error on N test images
  probe_top1_repeat_std: float   # spread over repeats (nan for one repeat)
  probe_fold_top1: list          # [repeats][folds]
  weight_decays: list            # the λ chosen per outer fold [repeats][folds]
  knn_top1: dict                 # {k: mean over repeats}
  knn_top1_se: dict              # {k: binomial standard error}
  num_images: int
  folds: int
  repeats: int

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self),
            "knn_top1": {str(k): v for k, v in self.knn_top1.items()},
            "knn_top1_se": {str(k): v for k, v in self.knn_top1_se.items()}}


def binomial_se(p: float, n: int) -> float:
  """sqrt(p (1 − p) / n): the standard error of an accuracy measured on n images."""
  return float(np.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1)))


def cross_validate(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                   folds: int = 5, repeats: int = 3, seed: int = 0,
                   knn_ks: Sequence[int] = knn_classifier.DEFAULT_KS,
                   knn_temperature: float = knn_classifier.DEFAULT_TEMPERATURE,
                   weight_decays=linear_probe.DEFAULT_WEIGHT_DECAYS, inner_folds: int = 5,
                   max_iter: int = 1000, tol: float = 1e-5, mesh: Mesh | None = None
                   ) -> CVResult:
  """The protocol of the module doc on `features [N, D]`, int `labels [N]`."""
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.int32)
  n = features.shape[0]
  chex.assert_shape(labels, (n,))
  require(folds >= 2 and repeats >= 1,
          f"cross-validation needs folds >= 2 and repeats >= 1, got folds={folds}, "
          f"repeats={repeats}; e.g. 5 folds and 3 repeats.")
  smallest = int(np.bincount(labels, minlength=num_classes).min())
  require(smallest >= folds, f"the smallest class has {smallest} labelled images, fewer than "
                             f"the {folds} cross-validation folds; use fewer folds.")
  linear_probe.check_probe_inputs(labels, num_classes, weight_decays, 0.1)
  mesh = mesh or sharding.make_mesh()
  ids = stratified_fold_ids(labels, folds, repeats, seed)
  probe_right = np.zeros((repeats, n), bool)
  knn_right = {int(k): np.zeros((repeats, n), bool) for k in knn_ks}
  fold_top1 = [[0.0] * folds for _ in range(repeats)]
  chosen = [[0.0] * folds for _ in range(repeats)]
  for r in range(repeats):
    for f in range(folds):
      test = ids[r] == f
      probe, fit = linear_probe.fit_on_rows(
          features, labels, ~test, num_classes, weight_decays=weight_decays,
          holdout_fraction=0.1, folds=inner_folds, max_iter=max_iter, tol=tol,
          seed=seed * 1_000 + r * folds + f, mesh=mesh)
      pred = np.asarray(jnp.argmax(linear_probe.probe_logits(
          probe, jnp.asarray(features[test])), -1))
      probe_right[r, test] = pred == labels[test]
      fold_top1[r][f] = round(float(probe_right[r, test].mean()), 6)
      chosen[r][f] = fit.weight_decay
      preds = knn_classifier.knn_predict(
          features, labels, features[test], num_classes=num_classes, ks=knn_ks,
          temperature=knn_temperature, bank_mask=~test, mesh=mesh)
      for k, p in preds.items():
        knn_right[k][r, test] = p == labels[test]
  per_repeat = probe_right.mean(1)
  top1 = float(per_repeat.mean())
  knn = {k: float(v.mean()) for k, v in knn_right.items()}
  return CVResult(
      probe_top1=top1, probe_top1_se=binomial_se(top1, n),
      probe_top1_repeat_std=float(per_repeat.std(ddof=1)) if repeats > 1 else float("nan"),
      probe_fold_top1=fold_top1, weight_decays=chosen, knn_top1=knn,
      knn_top1_se={k: binomial_se(v, n) for k, v in knn.items()}, num_images=n,
      folds=folds, repeats=repeats)
