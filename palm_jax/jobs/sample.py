"""`config.job = "sample"`: a class-by-sample grid of a generator's images.

    python -m palm_jax.main --config=configs/sample.py --workdir=DIR \
        --config.generator=/path/to/network-snapshot.pkl

Writes `DIR/samples.png`: row r shows `config.cols` samples of class r (the first
`config.rows` classes; rows of independent samples for unconditional generators).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from palm_jax.palm.generator import load_env_generator
from palm_jax.runtime import images
from palm_jax.runtime.errors import require

CONFIG = "configs/sample.py"
# Read without a default (checked by jobs.run_job before anything runs).
REQUIRED = ("seed", "generator", "generator_dtype", "rows", "cols", "truncation_psi",
            "noise_mode")


def sample_grid(gen, rows: int, cols: int, *, seed: int = 0, truncation_psi: float = 1.0,
                noise_mode: str = "const") -> np.ndarray:
  """uint8 `[rows, cols, H, W, C]`: `cols` draws of each of the first `rows` classes."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((rows * cols, gen.z_dim)).astype(np.float32)
  labels = np.repeat(np.arange(rows), cols) if gen.c_dim else None
  noise_rng = jax.random.PRNGKey(seed) if noise_mode == "random" else None
  img = gen.generate(z, labels, truncation_psi=truncation_psi, noise_mode=noise_mode,
                     rng=noise_rng)
  img = images.to_uint8(np.asarray(img))
  return img.reshape((rows, cols) + img.shape[1:])


def run(config, workdir: str) -> None:
  gen = load_env_generator(config, workdir)
  rows = min(config.rows, gen.c_dim) if gen.c_dim else config.rows
  require(rows >= 1 and config.cols >= 1,
          f"config.rows={config.rows} and config.cols={config.cols} must be at least 1.")
  grid = images.make_grid(sample_grid(gen, rows, config.cols, seed=config.seed,
                                      truncation_psi=config.truncation_psi,
                                      noise_mode=config.noise_mode))
  if jax.process_index() == 0:
    path = images.save_png(os.path.join(workdir, "samples.png"), grid)
    logging.info("Wrote %d x %d samples to %s", rows, config.cols, path)
