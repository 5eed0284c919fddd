"""configs/cifar100.py's path on a fresh machine: no generator given, so the PALM job
trains one into WORKDIR/gan/ first, then explores it; a rerun reuses it."""
import json
import os
import runpy

import pytest

from palm_jax.jobs import palm as palm_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_palm_trains_generator_first_then_reuses_it(tmp_path):
  config = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  config.generator = ""
  config.gan = runpy.run_path(os.path.join(ROOT, "configs", "gan_smoke.py"))["get_config"]()
  config.gan.data = "synthetic:64"
  # The GAN builds the smoke config's generator architecture, so the PALM programs that
  # follow are the smoke run's (shared through the persistent compilation cache).
  g = config.generator_kwargs
  config.gan.num_classes = g.c_dim
  config.gan.z_dim, config.gan.w_dim = g.z_dim, g.w_dim
  config.gan.map_layers = g.mapping_kwargs.num_layers
  config.gan.channel_base = g.synthesis_kwargs.channel_base
  config.gan.channel_max = g.synthesis_kwargs.channel_max
  config.gan.conv_clamp = g.synthesis_kwargs.conv_clamp
  # What is tested is the wiring (train a GAN, then explore it, then reuse it), not the GAN:
  # 2 batches of 16 without ADA (its pipeline is the costliest program to compile on CPU).
  config.gan.aug = "noaug"
  config.gan.total_kimg = 0.032
  config.gan.log_every_kimg = 0.016
  config.gan.sample_every_kimg = 0.032
  config.gan.checkpoint_every_kimg = 0.032
  config.total_env_steps = 64 * 8
  config.eval.train = ""
  palm_job.run(config, str(tmp_path))[0]
  exported = tmp_path / "gan" / "generator.npz"
  assert exported.exists()
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert rows[-1]["step"] == 64 * 8
  mtime = exported.stat().st_mtime
  config.total_env_steps = 64 * 16       # continue: the finished GAN is not retrained
  palm_job.run(config, str(tmp_path))[0]
  assert exported.stat().st_mtime == mtime
