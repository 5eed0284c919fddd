r"""The one entry point: `python -m palm_jax.main --config=configs/<x>.py --workdir=DIR`.

Any config field can be overridden on the command line, e.g.
`--config.env.num_envs=1024 --config.seed=3`. `config.job` picks the job:

  palm         PALM pretraining (latent environments + SimSiam + SAC + APT reward)
  gan          train a StyleGAN2 generator on a dataset
  linear_eval  linear probe of a run's encoder
  ood_eval     out-of-distribution detection with a run's encoder
  coverage     how many training images generated ones cover (uniform vs PALM, Table 3)
  sample       render a class-by-sample grid from a generator
  atari100k    DrQ(ε) on one Atari 100k game, then evaluation (configs/atari/drq.py:<game>)
  sweep        many runs of another job (grid/variants x seeds) and their results tables

Multi-host: pass `--distributed` (or set PALM_JAX_DISTRIBUTED=1) and every process calls
`jax.distributed.initialize()`; on TPU pods and SLURM the coordinator is found
automatically, elsewhere give `--coordinator_address`, `--num_processes`, `--process_id`.
"""
from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from palm_jax import compile_cache
from palm_jax.errors import UserError

JOBS = {
    "palm": "palm_jax.train",
    "gan": "palm_jax.gan.train",
    "linear_eval": "palm_jax.evaluation.linear_eval",
    "ood_eval": "palm_jax.evaluation.ood_eval",
    "coverage": "palm_jax.evaluation.coverage_eval",
    "sample": "palm_jax.sample",
    "atari100k": "palm_jax.atari100k",
    "sweep": "palm_jax.experiments.sweep",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, images.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("PALM_JAX_DISTRIBUTED", "0") == "1",
    "Call jax.distributed.initialize() (multi-host runs).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host, not TPU/SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs on disk so a restart or resume "
    "skips compilation (see palm_jax/compile_cache.py for the location; opting out: "
    "--nocompilation_cache or PALM_JAX_XLA_CACHE=0).")
_LOCAL_DEVICES = flags.DEFINE_list(
    "local_device_ids", None, "Devices this process drives (e.g. 0,1,2,3,4,5,6,7 for one "
    "process per node on SLURM, where JAX otherwise gives each process one GPU).")


def _initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if _COORDINATOR.value:
    kwargs = dict(coordinator_address=_COORDINATOR.value,
                  num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  if _LOCAL_DEVICES.value:
    kwargs["local_device_ids"] = [int(i) for i in _LOCAL_DEVICES.value]
  jax.distributed.initialize(**kwargs)


class _QuietLibraries:
  """Drops INFO lines that Orbax/TensorStore log on every save (warnings still pass)."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "/orbax/" not in record.pathname  # 30: WARNING


def run_job(config, workdir: str) -> None:
  """Dispatches `config.job` to its module's `run(config, workdir)`."""
  import jax  # pylint: disable=g-import-not-at-top
  job = config.get("job")
  if job not in JOBS:
    raise UserError(f"config.job={job!r} is not a known job; use one of {sorted(JOBS)}.")
  logging.info("palm_jax job %r: process %d of %d, %d local / %d global devices (%s)", job,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, f"config_{job}.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  importlib.import_module(JOBS[job]).run(config, workdir)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    if _CONFIG.value is None:
      raise UserError("no config given; pass --config=configs/smoke.py (or another file in "
                      "configs/).")
    if not _WORKDIR.value:
      raise UserError("no workdir given; pass --workdir=DIR (checkpoints, logs and images "
                      "go there, and a run resumes from it).")
    if _DISTRIBUTED.value:
      _initialize_distributed()
    import jax  # pylint: disable=g-import-not-at-top
    cache_dir = compile_cache.enable(_COMPILATION_CACHE.value)   # before the first compile
    logging.get_absl_logger().addFilter(_QuietLibraries())
    if jax.process_index() != 0:
      logging.set_verbosity(logging.WARNING)
    logging.info("XLA compilation cache: %s", cache_dir or "off")
    run_job(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)



if __name__ == "__main__":
  app.run(main)
