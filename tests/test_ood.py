"""OOD scores against NumPy references, known AUROCs, and the ROC picture."""
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.evaluation import ood, roc_plot
from palm_jax.evaluation.linear_probe import LinearProbe
from palm_jax.runtime.errors import UserError


def _probe(rng, dim=6, num_classes=3):
  return LinearProbe(mean=jnp.asarray(rng.normal(size=dim), jnp.float32),
                     inv_std=jnp.asarray(rng.uniform(0.5, 2, dim), jnp.float32),
                     weights=jnp.asarray(rng.normal(size=(dim, num_classes)), jnp.float32),
                     bias=jnp.asarray(rng.normal(size=num_classes), jnp.float32),
                     weight_decay=jnp.asarray(0.0))


def test_msp_matches_numpy():
  rng = np.random.default_rng(0)
  probe, x = _probe(rng), rng.normal(size=(20, 6)).astype(np.float32)
  logits = ((x - np.asarray(probe.mean)) * np.asarray(probe.inv_std)) @ np.asarray(
      probe.weights) + np.asarray(probe.bias)
  p = np.exp(logits - logits.max(1, keepdims=True))
  expected = (p / p.sum(1, keepdims=True)).max(1)
  np.testing.assert_allclose(ood.msp_score(probe, jnp.asarray(x)), expected, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_matches_brute_force_and_pads_over_devices(k):
  rng = np.random.default_rng(k)
  bank, queries = rng.normal(size=(37, 5)), rng.normal(size=(21, 5))  # 21: not a multiple of 8.
  scorer = ood.KnnScorer(bank.astype(np.float32), k=k, chunk=8)
  got = scorer(queries.astype(np.float32))
  b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
  q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  dists = np.linalg.norm(q[:, None] - b[None], axis=-1)
  expected = -np.sort(dists, axis=1)[:, k - 1]
  assert got.shape == (21,)
  np.testing.assert_allclose(got, expected, atol=2e-4)


def test_known_aurocs_identical_and_disjoint_sets():
  rng = np.random.default_rng(3)
  train = rng.normal(size=(64, 8)).astype(np.float32) + 4.0  # A cone around (4, ..., 4).
  probe = _probe(rng, dim=8, num_classes=2)
  knn = ood.KnnScorer(train, k=3, chunk=16)
  test = rng.normal(size=(40, 8)).astype(np.float32) + 4.0
  scores_in = ood.score_all(probe, knn, test)
  same = ood.evaluate_scores(scores_in, ood.score_all(probe, knn, test.copy()))
  for s in ood.SCORES:
    assert same[s]["auroc"] == pytest.approx(0.5, abs=1e-6)
  far = -test  # Opposite direction: cosine ≈ −1, as far as normalised features can be.
  disjoint = ood.evaluate_scores(scores_in, ood.score_all(probe, knn, far))
  assert disjoint["knn"]["auroc"] == pytest.approx(1.0, abs=1e-6)
  assert disjoint["knn"]["fpr95"] == 0.0
  assert disjoint["knn"]["fpr"].shape == (81,) and disjoint["knn"]["tpr"][-1] == 1.0


def test_knn_k_must_fit_the_bank():
  with pytest.raises(UserError, match="knn_k=9"):
    ood.KnnScorer(np.ones((4, 2), np.float32), k=9)


def test_roc_png_has_a_panel_per_score_and_coloured_curves(tmp_path):
  fpr = np.linspace(0, 1, 50)
  panels = {s: {"svhn": {"fpr": fpr, "tpr": np.sqrt(fpr), "auroc": 0.66},
                "interp": {"fpr": fpr, "tpr": fpr, "auroc": 0.5}} for s in ood.SCORES}
  img = roc_plot.draw_roc_panels(panels)
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
  assert img.shape[1] == 2 * roc_plot._PANEL  # Two panels side by side.
  for colour in roc_plot.COLOURS[:2]:  # Both curves (and legend swatches) are drawn.
    assert (img == np.asarray(colour, np.uint8)).all(-1).sum() > 50
  path = roc_plot.save_roc_png(str(tmp_path / "roc.png"), panels)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  assert Image.open(path).size == (img.shape[1], img.shape[0])
