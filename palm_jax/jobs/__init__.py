"""The jobs: one module per `config.job`, each a thin `run(config, workdir)` that turns the
config into what to build and calls the library. `run_job` is the dispatch every caller
uses (`palm_jax.main`, sweeps in-process, the Atari grid, tests).

Adding a job: a module here with `run(config, workdir)` (and an
`allow_config_change` keyword if it resumes members in other workdirs), a line in `JOBS`,
and a config file in configs/ whose `job` field names it.
"""
from __future__ import annotations

import importlib
import inspect

from absl import logging

from palm_jax.runtime import preemption, run_records
from palm_jax.runtime.errors import UserError

JOBS = {
    "palm": "palm_jax.jobs.palm",
    "passive": "palm_jax.jobs.palm",  # SimSiam on a palm run's experience log
    "gan": "palm_jax.jobs.gan",
    "linear_eval": "palm_jax.jobs.linear_eval",
    "ood_eval": "palm_jax.jobs.ood_eval",
    "coverage": "palm_jax.jobs.coverage",
    "cas": "palm_jax.jobs.cas",
    "sample": "palm_jax.jobs.sample",
    "atari100k": "palm_jax.jobs.atari100k",
    "collect": "palm_jax.jobs.collect",
    "sweep": "palm_jax.jobs.sweep",
}
# Jobs that write their config_<job>.json themselves once validated (before training).
WRITE_OWN_CONFIG = ("palm", "passive", "gan", "atari100k")


def run_job(config, workdir: str, *, allow_config_change: bool = False):
  """Checks the workdir and the resume guard, then runs `config.job` (SIGTERM/SIGINT
  become a save-and-stop request for the job's loop: `runtime.preemption`)."""
  import jax  # pylint: disable=g-import-not-at-top
  job = config.get("job")
  if job not in JOBS:
    raise UserError(f"config.job={job!r} is not a known job; use one of {sorted(JOBS)}.")
  logging.info("palm_jax job %r: process %d of %d, %d local / %d global devices (%s)", job,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
  run_records.check_workdir(workdir)
  run_records.check_resume_config(workdir, job, config, allow_config_change)
  run = importlib.import_module(JOBS[job]).run
  kwargs = ({"allow_config_change": allow_config_change}
            if "allow_config_change" in inspect.signature(run).parameters else {})
  with preemption.stop_requests():
    out = run(config, workdir, **kwargs)
  if job not in WRITE_OWN_CONFIG:
    run_records.write_config(workdir, job, config)
  return out
