"""`python -m palm_jax.bench palm` runs (tiny sizes on CPU) and reports every part."""
import os

import pytest

from palm_jax import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_palm_smoke_config():
  args = bench.parse_args(["palm", f"--config={ROOT}/configs/smoke.py", "--num_envs=64",
                           "--chunks=1", "--repeats=1", "--set", "batch_size=16",
                           "--set", "env.latent_space=w"])
  (row,) = bench.main(["palm", f"--config={ROOT}/configs/smoke.py", "--num_envs=64",
                       "--chunks=1", "--repeats=1", "--set", "batch_size=16"])
  assert args.set == ["batch_size=16", "env.latent_space=w"]
  assert not row["oom"] and row["env_steps_per_s"] > 0
  for part in ("generator_ms", "acting_ms", "updates_ms"):
    assert row[part] > 0
