"""Has the representation collapsed? Two label-free numbers of an encoder's features.

  normalised_std  SimSiam's collapse monitor (Chen & He 2021, Sec. 4.1 and Fig. 2): the
                  standard deviation over images of each channel of the ℓ2-normalised
                  feature, averaged over channels, times √d. Features spread like an
                  isotropic Gaussian give ≈ 1; a collapsed encoder (one output for every
                  image) gives 0.
  effective_rank  Roy & Vetterli (2007): exp of the entropy of the normalised singular values
                  σ_i / Σσ of the centred feature matrix; between 1 (one direction carries
                  everything) and d (all directions equal). RankMe (Garrido et al. 2023) uses
                  it as a label-free predictor of downstream accuracy.

Both are computed in float64 with NumPy on the host: the matrix is [images, d] with d in the
hundreds, an SVD of a few milliseconds.
"""
from __future__ import annotations

import math

import numpy as np


def spectrum_stats(features: np.ndarray) -> dict:
  """{"normalised_std", "effective_rank", "dim"} of `features [N, d]` (see the module doc)."""
  x = np.asarray(features, np.float64)
  n, d = x.shape
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  unit = x / np.maximum(norms, 1e-12)
  normalised_std = float(unit.std(axis=0).mean() * math.sqrt(d)) if n > 1 else 0.0
  sigma = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
  # Singular values at rounding level of the features (NumPy's matrix_rank tolerance, taken
  # against the uncentred matrix) are zeros: identical rows centre to ~1e-16, not 0.
  sigma = sigma[sigma > max(n, d) * np.finfo(np.float64).eps * np.linalg.norm(x)]
  if sigma.size == 0:  # every image has the same feature: nothing spreads
    return {"normalised_std": normalised_std, "effective_rank": 0.0, "dim": int(d)}
  p = sigma / sigma.sum()
  return {"normalised_std": normalised_std,
          "effective_rank": float(math.exp(-float(np.sum(p * np.log(p))))), "dim": int(d)}
