"""`config.job = "collect"`: Atari frames from N emulators into a frame log
(`palm_jax.atari.collect`)."""
from __future__ import annotations

from palm_jax.atari import collect as collect_lib

CONFIG = "configs/atari/collect.py:<game>"
# Read without a default by palm_jax.atari.collect (checked by jobs.run_job).
REQUIRED = ("game", "seed", "total_frames", "frames_per_shard", "num_envs", "num_processes",
            "policy", "terminal_on_life_loss", "noop_max", "max_episode_steps",
            "repeat_action_probability")


def run(config, workdir: str):
  return collect_lib.collect(config, workdir)
