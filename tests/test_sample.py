"""The `sample` job renders a class-by-sample grid from a generator file."""
import json
import os
import runpy

import jax
import numpy as np
from PIL import Image

from palm_jax import main
from palm_jax.models import stylegan2
from palm_jax.models.stylegan2.weights import save_generator_npz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_generator(tmp_path, seed):
  """A random 8x8 three-class generator saved as tmp_path/g.npz, and the sample config."""
  gen = stylegan2.init_generator(
      jax.random.PRNGKey(seed), z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3,
      mapping_kwargs=dict(num_layers=1),
      synthesis_kwargs=dict(channel_base=64, channel_max=8, conv_clamp=256))
  save_generator_npz(str(tmp_path / "g.npz"), gen)
  config = runpy.run_path(os.path.join(ROOT, "configs", "sample.py"))["get_config"]()
  config.generator = str(tmp_path / "g.npz")
  return gen, config


def test_sample_grid_from_npz(tmp_path):
  gen, config = _tiny_generator(tmp_path, 0)
  config.rows, config.cols = 10, 4  # more rows than classes: clipped to 3
  main.run_job(config, str(tmp_path / "out"))
  grid = np.asarray(Image.open(tmp_path / "out" / "samples.png"))
  assert grid.shape == (3 * 9 + 1, 4 * 9 + 1, 3)
  # Row 1, column 2 is class 1's third sample, as gen.generate renders it.
  rng = np.random.default_rng(0)
  z = rng.standard_normal((12, 8)).astype(np.float32)
  want = gen.generate(z, np.repeat(np.arange(3), 4))
  want = np.clip(np.asarray(want, np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)
  np.testing.assert_allclose(grid[10:18, 19:27].astype(int), want[6].astype(int), atol=1)


def test_episodes_show_how_little_the_frames_change_at_beta_095(tmp_path):
  stats = {}
  for beta in (0.95, 0.0):
    _, config = _tiny_generator(tmp_path, 1)
    config.rows, config.cols, config.episodes = 1, 1, 6
    config.env.beta, config.env.episode_length = beta, 5
    out = tmp_path / f"beta{beta}"
    main.run_job(config, str(out))
    grid = np.asarray(Image.open(out / "episodes.png"))
    assert grid.shape == (6 * 9 + 1, 5 * 9 + 1, 3)       # episodes x frames
    stats[beta] = json.loads((out / "episodes.json").read_text())
  # The EMA keeps most of the first latent at beta 0.95: consecutive frames barely move and
  # the episode drifts less than unrelated frames differ; at beta 0 every frame is new.
  slow, fast = stats[0.95], stats[0.0]
  assert 0 < slow["consecutive_change"] < slow["first_last_change"] < 1
  assert slow["consecutive_change"] < 0.5 * fast["consecutive_change"]
  assert (slow["beta"], slow["episode_length"], slow["episodes"]) == (0.95, 5, 6)
