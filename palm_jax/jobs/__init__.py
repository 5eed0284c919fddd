"""The jobs: one module per `config.job`, each a thin `run(config, workdir)` that turns the
config into what to build and calls the library. `run_job` is the dispatch every caller
uses (`palm_jax.main`, sweeps in-process, the Atari grid, tests).

Adding a job: a module here with `run(config, workdir)` (and an
`allow_config_change` keyword if it resumes members in other workdirs), a line in `JOBS`,
and a config file in configs/ whose `job` field names it. The module names that file as
`CONFIG` and the top-level fields `run` reads without a default as `REQUIRED` (either may
be a dict by job where one module serves several), so a config written for another job
(`--config=configs/smoke.py --config.job=coverage`) is refused in one sentence naming the
missing fields and the file to use, before anything runs.
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


def _for_job(value, job: str):
  """A job module's CONFIG/REQUIRED: one value, or a dict by job."""
  return value.get(job) if isinstance(value, dict) else value


def config_file_for(job: str) -> str:
  """The config file written for `job` (its module's `CONFIG`; "" where it names none)."""
  return _for_job(getattr(importlib.import_module(JOBS[job]), "CONFIG", ""), job) or ""


def required_fields(job: str) -> tuple:
  """The top-level fields `job` reads without a default (its module's `REQUIRED`)."""
  return tuple(_for_job(getattr(importlib.import_module(JOBS[job]), "REQUIRED", ()), job)
               or ())


def check_fields(job: str, config, config_file: str = "") -> None:
  """Refuses a config that lacks fields `job` needs (`required_fields`): a config written
  for another job would otherwise end in an AttributeError deep inside the job."""
  missing = [f for f in required_fields(job) if f not in config]
  if not missing:
    return
  shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
  use = config_file_for(job)
  raise UserError(f"config.job={job!r} needs fields {shown} that "
                  f"{config_file or 'this config'} does not have; "
                  + (f"use --config={use}." if use else "add them to the config."))


def run_job(config, workdir: str, *, allow_config_change: bool = False,
            config_file: str = ""):
  """Checks the config's fields, the workdir and the resume guard, then runs `config.job`
  (SIGTERM/SIGINT become a save-and-stop request for the job's loop: `runtime.preemption`).

  `config_file`: where `config` came from (`--config`), named in the sentence refusing a
  config written for another job.
  """
  import jax  # pylint: disable=g-import-not-at-top
  job = config.get("job")
  if job not in JOBS:
    raise UserError(f"config.job={job!r} is not a known job; use one of {sorted(JOBS)}.")
  check_fields(job, config, config_file)
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
