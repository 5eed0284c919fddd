"""Classification accuracy score: the convnet learns a learnable task; the job end to end."""
import json
import os
import pathlib
import runpy

import jax
import numpy as np
import pytest

from palm_jax.evaluation import cas
from palm_jax.main import run_job
from palm_jax.models import stylegan2
from palm_jax.runtime.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _striped(rng, n, size=16):
  """Class 0: horizontal stripes, class 1: vertical, in random colours and phases — the
  same mean colour per class, so only shapes tell them apart."""
  labels = rng.integers(0, 2, n)
  phase = rng.integers(0, 4, n)
  line = (np.arange(size)[None, :] + phase[:, None]) % 4 < 2             # [n, size]
  grid = np.where(labels[:, None, None] == 0, line[:, :, None], line[:, None, :])
  colour = rng.integers(60, 256, (n, 1, 1, 3))
  return (grid[..., None] * colour).astype(np.uint8), labels


def test_cnn_sees_shapes_the_pixel_classifier_cannot():
  rng = np.random.default_rng(0)
  train, test = _striped(rng, 400), _striped(rng, 200)
  table = cas.scores({"same": train}, train, test, num_classes=2, cnn_steps=150,
                     linear_max_iter=100)
  assert table["cnn"]["real"] >= 0.95           # the convnet learns the orientation
  assert table["linear"]["real"] <= 0.8         # a linear pixel model can hardly see it
  # Samples that are the real distribution: CAS and reverse equal the real yardstick's level.
  assert table["cnn"]["same"]["cas"] >= 0.95 and table["cnn"]["same"]["reverse"] >= 0.95
  with pytest.raises(UserError, match="classifiers has 'svm'"):
    cas.scores({}, train, test, num_classes=2, classifiers=("svm",))


def test_cas_job_on_a_random_generator(tmp_path):
  gen = stylegan2.init_generator(jax.random.key(0), z_dim=8, c_dim=10, w_dim=8,
                                 img_resolution=32, img_channels=3,
                                 mapping_kwargs=dict(num_layers=1),
                                 synthesis_kwargs=dict(channel_base=64, channel_max=8))
  path = str(tmp_path / "g" / "generator.npz")
  os.makedirs(os.path.dirname(path))
  stylegan2.save_generator_npz(path, gen)
  rng = np.random.default_rng(1)
  for split, n in (("train", 200), ("test", 100)):
    np.savez(tmp_path / f"{split}.npz", images=rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
             labels=np.arange(n) % 10)
  config = runpy.run_path(str(ROOT / "configs" / "cas.py"))["get_config"]("smoke")
  config.generators = path
  config.data.train = f"npz:{tmp_path / 'train.npz'}"
  config.data.test = f"npz:{tmp_path / 'test.npz'}"
  run_job(config, str(tmp_path / "run"))
  result = json.loads((tmp_path / "run" / "eval" / "cas.json").read_text())
  assert set(result["scores"]) == {"linear", "cnn"}
  for by in result["scores"].values():
    assert 0.0 <= by["real"] <= 1.0 and set(by["0_g"]) == {"cas", "reverse"}
  assert (tmp_path / "run" / "eval" / "cas_samples_0_g.png").stat().st_size > 500
  config.generators = str(tmp_path / "nope.npz")
  with pytest.raises(UserError):
    run_job(config, str(tmp_path / "run"))
