"""configs/cifar100.py's path on a fresh machine: no generator given, so the PALM job
trains one into WORKDIR/gan/ first, then explores it; a rerun reuses it."""
import json
import os
import runpy

import pytest

from palm_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_palm_trains_generator_first_then_reuses_it(tmp_path):
  config = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  config.generator = ""
  config.gan = runpy.run_path(os.path.join(ROOT, "configs", "gan_smoke.py"))["get_config"]()
  config.gan.data = "synthetic:64"
  config.gan.total_kimg = 0.064          # 4 batches of 16: a few seconds
  config.gan.log_every_kimg = 0.032
  config.gan.sample_every_kimg = 0.064
  config.gan.checkpoint_every_kimg = 0.064
  config.total_env_steps = 64 * 8
  config.eval.train = ""
  train.train(config, str(tmp_path))
  exported = tmp_path / "gan" / "generator.npz"
  assert exported.exists()
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert rows[-1]["step"] == 64 * 8
  mtime = exported.stat().st_mtime
  config.total_env_steps = 64 * 16       # continue: the finished GAN is not retrained
  train.train(config, str(tmp_path))
  assert exported.stat().st_mtime == mtime
