"""The generated image sets the `coverage` job compares with the training images.

A source is named by a string in `config.sources` (comma-separated):
  uniform   N frames from the generator's prior: class c ~ U{0..C-1}, z ~ N(0, I) (mapped
            to w when the environment's latent space is w), rendered exactly as the
            environment renders a fresh episode (`LatentEnv.reset`: same truncation and
            noise mode), so the only difference from `palm` is the agent's steering.
  palm      N frames of fresh episodes acted by the policy of a PALM run's checkpoint
            (`palm_step.make_rollout`): every frame of each episode, the first included,
            which is what the agent's experience holds. The run's generator, environment
            settings and state structure come from its `config_palm.json`; the state is
            restored through `checkpoint.Checkpointer.restore`.
  framelog:<dir>  N frames of a frame log (`data/frame_log.py`): a PALM run's experience
            log (`RUN/experience`, or RUN itself) — what the agent actually saw over the
            whole run, where `palm` rolls out one checkpoint's policy. The N frames are
            evenly spaced over the log (warm-up and late training alike), in log order.
  <spec>    any dataset spec of palm_jax/data, e.g. `npz:/path/frames.npz` (an `images`
            array uint8 [N, H, W, 3]): frames handed in by the user. The first N are used.

Every source returns uint8 [N, S, S, 3] at the training images' size S (generated
frames are resized bilinearly when the generator's resolution differs).
"""
from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from palm_jax.data import preprocess
from palm_jax.envs.latent_env import LatentEnv
from palm_jax.palm import generator, programs
from palm_jax.palm import step as palm_step
from palm_jax.runtime import checkpoint as ckpt_lib
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

BUILTIN = ("uniform", "palm")
FRAMELOG = "framelog:"


class RunSetup(NamedTuple):
  """The PALM run that the generated sources draw from (or a bare generator)."""
  config: ml_collections.ConfigDict   # the run's config (or the coverage config's)
  gen: object                         # generator handle (palm_jax.models.stylegan2)
  workdir: str                        # the run's directory ("" without a run)


def run_config(run_dir: str) -> ml_collections.ConfigDict | None:
  """The PALM config a run wrote (`config_palm.json`), or None when there is none."""
  path = os.path.join(run_dir, "config_palm.json") if run_dir else ""
  if not path or not os.path.isfile(path):
    return None
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def setup(config, run_dir: str) -> RunSetup:
  """The generator (and run config) the `uniform` and `palm` sources use.

  `config.generator` (non-empty) wins; otherwise the run's own generator.
  """
  run_cfg = run_config(run_dir)
  base = run_cfg if run_cfg is not None else config
  if config.generator:
    base = ml_collections.ConfigDict(base.to_dict())
    base.generator = config.generator
    base.generator_kwargs = config.generator_kwargs.to_dict()
  require(bool(base.get("generator")),
          f"no generator for the generated sources: {run_dir!r} has no config_palm.json "
          "naming one; set config.generator (a file, nvidia:cifar10 or random) or "
          "config.run to a PALM run's workdir.")
  gen = generator.load_env_generator(base, run_dir or "/nonexistent")
  return RunSetup(base, gen, run_dir if run_cfg is not None else "")


def _env(cfg, gen) -> LatentEnv:
  return LatentEnv(gen.module, z_dim=gen.z_dim, w_dim=gen.w_dim, num_ws=gen.num_ws,
                   num_classes=gen.c_dim, latent_space=cfg.env.latent_space,
                   noise_mode=cfg.env.noise_mode)


def _fit(frames: np.ndarray, size: int) -> np.ndarray:
  return preprocess.resize_images(np.asarray(frames, np.uint8), size)


def framelog_images(spec: str, num: int, *, size: int) -> tuple[np.ndarray, dict]:
  """uint8 [num, size, size, 3]: `num` frames evenly spaced over the frame log `spec`
  (`framelog:<dir>`; a run directory means its `experience/` log), and what was read."""
  from palm_jax.data import frame_log  # pylint: disable=g-import-not-at-top
  from palm_jax.palm import experience_log  # pylint: disable=g-import-not-at-top
  directory = spec[len(FRAMELOG):]
  nested = os.path.join(directory, experience_log.DIRECTORY)
  if not os.path.exists(os.path.join(directory, frame_log.INDEX)) and os.path.isdir(nested):
    directory = nested
  log = frame_log.FrameLog(directory)
  require(len(log.frame_shape) == 3 and log.frame_shape[-1] == 3,
          f"the frame log in {directory} holds frames of shape {log.frame_shape}; coverage "
          "compares RGB images [H, W, 3] with the training images (an Atari log is gray).")
  require(len(log) >= num, f"source {spec!r} has {len(log)} frames, fewer than "
                           f"config.num_images={num}; lower num_images.")
  idx = np.linspace(0, len(log) - 1, num).round().astype(np.int64)
  frames = log.read(idx)["frame"]
  return _fit(frames, size), {"log": directory, "log_frames": len(log)}


def uniform_images(run: RunSetup, num: int, *, seed: int, size: int,
                   batch: int = 256) -> np.ndarray:
  """uint8 [num, size, size, 3]: reset frames (class uniform, z ~ N(0, I)) of the env."""
  env, params = _env(run.config, run.gen), programs.env_params_from(run.config)
  reset = jax.jit(lambda k, v: env.reset(k, v, params, batch)[0])
  key, out = jax.random.PRNGKey(seed), []
  for i in range(math.ceil(num / batch)):
    out.append(reset(jax.random.fold_in(key, i), run.gen.variables))
  return _fit(np.concatenate([np.asarray(o) for o in out])[:num], size)


def restore_palm_state(run: RunSetup, step: int | None, mesh):
  """(step, PalmState, env, env_params) restored from the run's checkpoint (no replay)."""
  require(bool(run.workdir), "source 'palm' needs a PALM run: set config.run (or "
                             "--workdir) to a directory with config_palm.json and checkpoints.")
  cfg = run.config
  plan = programs.Plan(cfg)
  env, _, init_fn, _, _ = programs.build_single(cfg, mesh, run.gen, plan)
  gen_vars = sharding.host_to_global(run.gen.variables, mesh, sharded=False)
  params = programs.env_params_from(cfg)
  abstract_state, _ = jax.eval_shape(init_fn, np.asarray(jax.random.PRNGKey(cfg.seed)),
                                     gen_vars, params)
  ckpt = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(run.workdir), read_only=True)
  restored = ckpt.restore(abstract_state, step=step)
  ckpt.close()
  require(restored is not None, f"source 'palm': {run.workdir} has no checkpoint yet; "
                                "train the run first or hand in frames as npz:<file>.")
  got_step, state, _, _ = restored
  return got_step, state, env, params, gen_vars


PALM_FRAMES = ("all", "last")


def palm_images(run: RunSetup, num: int, *, seed: int, size: int, step: int | None, mesh,
                episodes_per_call: int = 64, frames: str = "all") -> tuple[np.ndarray, int]:
  """(uint8 [num, size, size, 3] frames of fresh policy rollouts, checkpoint step).

  `frames`: "all" (every frame of each episode, the first included) or "last" (only each
  episode's last frame: one image per episode)."""
  got_step, state, env, params, gen_vars = restore_palm_state(run, step, mesh)
  length = int(run.config.env.episode_length)
  rollout = palm_step.make_rollout(env, episodes_per_call, length,
                                   run.config.agent.action_source)
  key, out, have = jax.random.PRNGKey(seed + 1), [], 0
  i = 0
  while have < num:
    batch, _ = sharding.to_host(rollout(state, gen_vars, params, jax.random.fold_in(key, i)))
    batch = np.asarray(batch)                               # [E, T, H, W, C]; classes unused
    out.append(batch[:, -1] if frames == "last" else
               batch.reshape((-1,) + batch.shape[2:]))      # [E, ...] or [E * T, ...]
    have += out[-1].shape[0]
    i += 1
  logging.info("PALM source: %d rollouts of %d frames (%s frames kept) from %s at step %d.",
               i * episodes_per_call, length, frames, run.workdir, got_step)
  return _fit(np.concatenate(out)[:num], size), int(got_step)
