r"""PALM smoke test: tiny random generator and encoder; finishes in about a minute on CPU.

    python -m palm_jax.main --config=configs/smoke.py --workdir=/tmp/palm_smoke

Every moving part of the real run (environments, replay, SimSiam, APT reward, SAC,
checkpoints, rollouts, linear probe) with sizes small enough for a laptop or CI. Starts
from configs/cifar10.py; only the fields below differ.
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent
_SUBSET = _HERE.parent.parent / "shared" / "data" / "cifar_subset"


def get_config():
  c = runpy.run_path(str(_HERE / "cifar10.py"))["get_config"]()
  c.total_env_steps = 64 * 48     # 48 iterations of 64 environments
  c.generator = "random"          # an untrained generator: no download needed
  c.generator_kwargs = dict(
      z_dim=16, c_dim=4, w_dim=16, img_resolution=16, img_channels=3,
      mapping_kwargs=dict(num_layers=2),
      synthesis_kwargs=dict(channel_base=256, channel_max=16, conv_clamp=256))
  c.generator_dtype = "float32"
  c.env.num_envs = 64
  c.env.episode_length = 6
  c.agent.warmup_env_steps = 64 * 4
  c.agent.updates_per_step = 1    # one update per iteration keeps the smoke run short
  c.agent.actor_hidden = (32, 32)
  c.agent.critic_hidden = (32, 32)
  c.agent.dtype = "float32"
  c.batch_size = 32
  c.reward.k = 4
  c.simsiam.stage_sizes = (1, 1)
  c.simsiam.width = 8
  c.simsiam.proj_hidden_dim = 32
  c.simsiam.proj_dim = 32
  c.simsiam.pred_hidden_dim = 8
  c.simsiam.dtype = "float32"
  c.replay.capacity = 64 * 16
  c.replay.action_dtype = "float32"
  c.log.chunk_iterations = 8
  c.log.rollout_every_chunks = 3
  c.log.rollout_rows = 4
  c.log.explore_envs = 0          # off: keeps the smoke run's programs as they were
  c.checkpoint.every_chunks = 2
  # A linear probe on the real CIFAR-10 subset when ../shared is present (else skipped).
  train = _SUBSET / "cifar10_train_partial.npz"
  c.eval.train = f"npz:{train}" if train.exists() else ""
  c.eval.test = f"npz:{_SUBSET / 'cifar10_test_partial.npz'}" if train.exists() else ""
  return c
