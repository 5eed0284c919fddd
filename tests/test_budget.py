"""The training budget block: update-to-data knob, epochs equivalent, the agent's control share."""
import pathlib
import runpy

import jax
import numpy as np
import pytest

from palm_jax.envs.latent_env import ema_latent
from palm_jax.palm import budget
from palm_jax.runtime.errors import UserError

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _simulated_share(alpha, beta, length, scale, dim=64, episodes=4000, seed=0):
  """E||action part||² / E||z_T||² by running the env's own recursion (NumPy noise).

  The action part is the same recursion with eps = 0 and z_0 = 0 (it is linear), so the
  simulation needs no algebra of the derivation it checks.
  """
  rng = np.random.default_rng(seed)
  a = np.sign(rng.normal(size=(episodes, dim))).astype(np.float32)  # saturated, constant
  step = jax.jit(jax.vmap(ema_latent, in_axes=(0, 0, 0, None, None, None, None)))
  z = part = None
  for t in range(length):
    eps = rng.normal(size=(episodes, dim)).astype(np.float32)
    if t == 0:
      z, part = eps, np.zeros_like(eps)
    else:
      z = np.asarray(step(z, a, eps, t, alpha, beta, scale))
      part = np.asarray(step(part, a, np.zeros_like(eps), t, alpha, beta, scale))
  return float(np.mean(np.sum(part ** 2, -1)) / np.mean(np.sum(z ** 2, -1)))


@pytest.mark.parametrize("alpha,beta,length,scale", [
    (0.5, 0.95, 20, 1.0),   # the paper's setting: the agent steers ~40 % at the end
    (0.5, 0.95, 6, 1.0),    # short episodes: little control
    (0.9, 0.5, 8, 2.0),
    (0.0, 0.95, 20, 1.0),   # alpha = 0: no control at all
    (0.5, 0.0, 5, 1.0),     # beta = 0: no memory
])
def test_action_share_matches_a_simulation_of_the_env_recursion(alpha, beta, length, scale):
  exact = budget.action_share(alpha, beta, length - 1, scale)
  end, mean = budget.episode_action_share(alpha, beta, length, scale)
  assert end == exact and 0.0 <= mean <= max(end, 1e-12) + 1e-12
  assert budget.action_share(alpha, beta, 0, scale) == 0.0  # reset frame: noise only
  sim = _simulated_share(alpha, beta, length, scale)
  assert exact == pytest.approx(sim, abs=0.01, rel=0.02)


def test_samples_per_frame_knob_and_the_cifar10_budget():
  c = runpy.run_path(str(CONFIGS / "cifar10.py"))["get_config"]()
  s = budget.summary(c, total_iterations=12_207, warmup_iterations=25)
  # 6 updates of 512 per 4096 envs: 0.75 samples/frame; 73,092 updates ~ 748 epochs.
  assert s["updates_per_step"] == 6 and s["samples_per_frame"] == pytest.approx(0.75)
  assert s["simsiam_updates"] == 73_092
  assert s["epochs_equivalent"] == pytest.approx(73_092 * 512 / 50_000)
  assert s["action_share_end"] == pytest.approx(budget.action_share(0.5, 0.95, 19))
  c.agent.samples_per_frame = 1.0       # the knob: U = spf * N / B = 8
  assert budget.updates_per_step(c) == 8
  c.agent.samples_per_frame = 0.1       # 0.8 updates per iteration: refused, with a fix
  with pytest.raises(UserError, match=r"samples_per_frame=0.1 gives 0.8 updates.*e\.g\. 0\.125"):
    budget.updates_per_step(c)
