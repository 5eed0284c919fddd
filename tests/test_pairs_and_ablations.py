"""Positive-pair sources against NumPy, and the paper's ablation switches in one run."""
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.envs.latent_env import EnvParams, LatentEnv
from palm_jax.jobs import palm as palm_job
from palm_jax.models import stylegan2
from palm_jax.representation import pairs
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_real_bank_and_pairs_are_same_class():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 40)
  images = np.zeros((40, 2, 2, 3), np.uint8)
  images[:, 0, 0, 0] = labels * 10 + 1        # pixel encodes the class
  images[:, 0, 0, 1] = np.arange(40)          # and the image index
  bank = pairs.make_real_bank(images, labels, 3)
  np.testing.assert_array_equal(bank.count, np.bincount(labels, minlength=3))
  query = jnp.asarray(rng.integers(0, 3, 500), jnp.int32)
  x1, x2 = jax.jit(pairs.real_pairs)(jax.random.PRNGKey(1), bank, query)
  for x in (x1, x2):
    np.testing.assert_array_equal(np.asarray(x)[:, 0, 0, 0], np.asarray(query) * 10 + 1)
  drawn = set(np.asarray(x1)[:, 0, 0, 1].tolist())
  assert len(drawn) == 40  # every image of every class gets drawn (uniform within class)
  with pytest.raises(UserError, match=r"no images of class\(es\) \[3\]"):
    pairs.make_real_bank(images, labels, 4)


def test_generated_pairs():
  gen = stylegan2.init_generator(
      jax.random.PRNGKey(0), z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3,
      mapping_kwargs=dict(num_layers=1),
      synthesis_kwargs=dict(channel_base=64, channel_max=8, conv_clamp=256))
  env = LatentEnv(gen.module, z_dim=8, w_dim=8, num_ws=gen.num_ws, num_classes=3)
  labels = jnp.arange(6) % 3
  key = jax.random.PRNGKey(2)
  same = pairs.generated_pairs(key, "perturbation", env, gen.variables, EnvParams(), labels,
                               0.0)
  np.testing.assert_array_equal(same[0], same[1])   # sigma 0: the same latent twice
  p1, p2 = pairs.generated_pairs(key, "same_class", env, gen.variables, EnvParams(), labels,
                                 0.0)
  assert p1.dtype == jnp.uint8 and p1.shape == (6, 8, 8, 3)
  assert np.abs(np.asarray(p1, int) - np.asarray(p2, int)).mean() > 1.0
  # The first view is G(z1, c) with z1 the first normal draw of the key.
  z1 = jax.random.normal(jax.random.split(key, 3)[0], (6, 8))
  want = gen.generate(z1, np.asarray(labels))
  want = np.clip(np.round(np.asarray(want) * 127.5 + 128), 0, 255)
  assert np.abs(np.asarray(p1, int) - want).max() <= 1


@pytest.mark.slow
def test_ablation_switches_run(tmp_path):
  """Random actions, beta = 1 (static), W-space dynamics, perturbation pairs and
  SimSiam augmentations together: the run finishes with finite losses."""
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.eval.train = ""
  c.total_env_steps = 64 * 8
  c.agent.action_source = "random"
  c.env.beta = 1.0
  c.env.latent_space = "w"
  c.simsiam.pairs = "perturbation"
  c.simsiam.augment = True
  metrics = palm_job.run(c, str(tmp_path))[0].metrics
  assert np.isfinite(metrics["simsiam/loss"])
  assert metrics["updated"] == 0.5  # one chunk of 8 iterations, the first 4 warm-up
  assert not any(k.startswith("sac/") for k in metrics)  # random actions train no SAC
  assert os.listdir(tmp_path / "rollouts")
