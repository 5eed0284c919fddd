"""`config.job = "sweep"`: many runs of other jobs and their results (palm_jax.experiments)."""
from __future__ import annotations

from palm_jax.experiments import sweep as sweep_lib
from palm_jax.jobs import run_job

CONFIG = "configs/sweeps/mini_paper.py"
REQUIRED = ("base",)  # every other sweep field has a default (checked by jobs.run_job)


def run(config, workdir: str) -> None:
  sweep_lib.run_sweep(config, workdir, run_job=run_job)
