"""`config.job = "collect"`: Atari frames from N emulators into a frame log (palm_jax.atari.collect)."""
from __future__ import annotations

from palm_jax.atari import collect as collect_lib


def run(config, workdir: str):
  return collect_lib.collect(config, workdir)
