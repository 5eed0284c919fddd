"""One process of a multi-process smoke run (started by tests/test_multihost.py).

    python tests/_multihost_worker.py WORKDIR NUM_PROCESSES PROCESS_ID PORT CRASH_AFTER_SAVES

Runs the smoke PALM config through `palm_jax.palm.trainer.train`, optionally raising after the
given number of checkpoint saves (a simulated crash), then writes this process's own copy
of the replicated encoder parameters to WORKDIR/params_process<i>.npz.
"""
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
  workdir, n, pid, port, crash_after = sys.argv[1], *map(int, sys.argv[2:6])
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  import jax  # pylint: disable=g-import-not-at-top
  if n > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A loaded 2-core CI machine can keep one process minutes behind the other at exit
    # (compilation is per process); the default 300 s shutdown barrier then kills both.
    jax.distributed.initialize(f"localhost:{port}", num_processes=n, process_id=pid,
                               shutdown_timeout_seconds=1200)
  import numpy as np  # pylint: disable=g-import-not-at-top

  from palm_jax.jobs import palm as palm_job  # pylint: disable=g-import-not-at-top
  from palm_jax.palm import trainer as train  # pylint: disable=g-import-not-at-top
  config = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  config.eval.train = ""
  config.total_env_steps = 64 * 8          # 2 chunks: 4 warm-up iterations, then 4 updates
  config.log.chunk_iterations = 4
  config.checkpoint.every_chunks = 1
  config.log.rollout_every_chunks = 2
  if crash_after:
    real_save, calls = train._save, []

    def save_then_crash(ckpt, *args, **kwargs):
      real_save(ckpt, *args, **kwargs)
      calls.append(1)
      if len(calls) == crash_after:
        ckpt.wait()
        os._exit(3)  # die like a killed process: no cleanup
    train._save = save_then_crash
  state = palm_job.run(config, workdir)[0].state
  # This process's local copy of every replicated encoder parameter, after training.
  leaves = jax.tree.leaves(state.simsiam.params["encoder"])
  local = [np.asarray(x.addressable_data(0)) for x in leaves]
  np.savez(os.path.join(workdir, f"params_process{pid}.npz"), *local)


if __name__ == "__main__":
  main()
