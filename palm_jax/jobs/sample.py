"""`config.job = "sample"`: a class-by-sample grid of a generator's images, and what an
episode of the latent world looks like.

    python -m palm_jax.main --config=configs/sample.py --workdir=DIR \
        --config.generator=/path/to/network-snapshot.pkl [--config.episodes=8]

Writes `DIR/samples.png`: row r shows `config.cols` samples of class r (the first
`config.rows` classes; rows of independent samples for unconditional generators). With
`config.episodes` > 0 also `DIR/episodes.png`, one random-action episode of the latent
world per row (`config.env`: alpha, beta, episode length; frames left to right), and
`DIR/episodes.json`: how much the frames change — the pixel change between consecutive
frames and between an episode's first and last frame, each over that between unrelated
frames (palm_jax.palm.exploration.pair_change; 0 = the same image, ≈ 1 = unrelated).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from palm_jax.envs import latent_env
from palm_jax.palm import exploration
from palm_jax.palm.generator import load_env_generator
from palm_jax.runtime import files, images
from palm_jax.runtime.errors import require

CONFIG = "configs/sample.py"
# Read without a default (checked by jobs.run_job before anything runs).
REQUIRED = ("seed", "generator", "generator_dtype", "rows", "cols", "truncation_psi",
            "noise_mode", "episodes", "env")


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


def episodes(gen, config) -> tuple[np.ndarray, dict]:
  """uint8 `[episodes, T, H, W, C]` random-action episodes of `config.env`'s latent world,
  and the change numbers of `DIR/episodes.json`."""
  env = latent_env.make_latent_env(gen, latent_space=config.env.latent_space,
                                   noise_mode=config.noise_mode)
  params = latent_env.EnvParams(
      alpha=float(config.env.alpha), beta=float(config.env.beta),
      action_scale=float(config.env.action_scale), truncation_psi=config.truncation_psi,
      episode_length=int(config.env.episode_length))
  n, key = int(config.episodes), jax.random.PRNGKey(config.seed)
  key, k_reset = jax.random.split(key)
  step = jax.jit(env.step)
  obs, state = env.reset(k_reset, gen.variables, params, n)
  frames = [np.asarray(obs)]
  for _ in range(params.episode_length - 1):
    key, k_act, k_step = jax.random.split(key, 3)
    obs, state, _ = step(k_step, state, latent_env.random_actions(k_act, n, env.action_dim),
                         gen.variables, params)
    frames.append(np.asarray(obs))
  x = np.stack(frames, 1)
  # Time-major rows, so that pair_change's "unrelated" frame (the previous row) is another
  # episode's frame at the same step, never the same episode's.
  flat = lambda a: a.swapaxes(0, 1).reshape((-1,) + a.shape[2:])  # noqa: E731
  stats = {"episodes": n, "alpha": params.alpha, "beta": params.beta,
           "episode_length": params.episode_length, "actions": "uniform random",
           "consecutive_change": float(exploration.pair_change(flat(x[:, :-1]),
                                                               flat(x[:, 1:]))),
           "first_last_change": float(exploration.pair_change(x[:, 0], x[:, -1]))}
  return x, stats


def run(config, workdir: str) -> None:
  gen = load_env_generator(config, workdir)
  rows = min(config.rows, gen.c_dim) if gen.c_dim else config.rows
  require(rows >= 1 and config.cols >= 1,
          f"config.rows={config.rows} and config.cols={config.cols} must be at least 1.")
  grid = images.make_grid(sample_grid(gen, rows, config.cols, seed=config.seed,
                                      truncation_psi=config.truncation_psi,
                                      noise_mode=config.noise_mode))
  require(int(config.episodes) >= 0 and int(config.env.episode_length) >= 2,
          f"config.episodes={config.episodes} must be >= 0 and config.env.episode_length="
          f"{config.env.episode_length} >= 2.")
  if jax.process_index() == 0:
    path = images.save_png(os.path.join(workdir, "samples.png"), grid)
    logging.info("Wrote %d x %d samples to %s", rows, config.cols, path)
  if int(config.episodes) > 0:
    frames, stats = episodes(gen, config)
    if jax.process_index() == 0:
      path = images.save_png(os.path.join(workdir, "episodes.png"), images.make_grid(frames))
      files.write_json(os.path.join(workdir, "episodes.json"), stats)
      logging.info("Wrote %d random-action episodes (alpha %g, beta %g) to %s; pixel change "
                   "between consecutive frames %.3f, first to last %.3f (of that between "
                   "unrelated frames).", stats["episodes"], stats["alpha"], stats["beta"],
                   path, stats["consecutive_change"], stats["first_last_change"])
