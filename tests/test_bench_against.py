"""`bench generator --against=PATH`: NVIDIA's generator from a user's clone, same weights.

Needs a clone of https://github.com/NVlabs/stylegan2-ada-pytorch named by the environment
variable PALM_JAX_NVIDIA_CLONE (NVIDIA's code is never part of palm_jax), and torch.
"""
import os

import pytest

from palm_jax import bench
from palm_jax.runtime.errors import UserError

CLONE = os.environ.get("PALM_JAX_NVIDIA_CLONE", "")


def test_against_rejects_a_directory_that_is_not_the_clone(tmp_path):
  from palm_jax.bench import against
  with pytest.raises(UserError, match="not a stylegan2-ada-pytorch clone"):
    against.load_nvidia_generator_class(str(tmp_path))


@pytest.mark.skipif(not CLONE, reason="set PALM_JAX_NVIDIA_CLONE=<stylegan2-ada-pytorch clone>")
def test_against_nvidia_same_images_and_a_ratio():
  pytest.importorskip("torch")
  rows = bench.main(["generator", "--channels=8", "--resolution=16", "--z_dim=8",
                     "--w_dim=8", "--c_dim=3", "--batch_sizes=4", "--iters=2", "--warmup=1",
                     "--dtype=float32", f"--against={CLONE}"])
  row = rows[-1]
  assert row["against"] == CLONE and row["batch"] == 4
  assert row["max_abs_diff"] < 1e-4 and row["rel_l2_diff"] < 1e-5
  assert row["ratio"] > 0 and row["nvidia_images_per_s"] > 0
