"""Every mistake a PALM config can hold, caught before anything compiles.

`validate(config, mesh)` checks the fields of the palm and passive jobs (configs/cifar10.py
documents them): sizes that must divide over the devices, ranges, enumerations, the replay
and warm-up the first update needs, dtypes, the generator's implementation names, the
experience log and the Atari frame-stack combination. `check_real_pairs` checks a real
dataset against the generator's classes once both are loaded.
"""
from __future__ import annotations

from palm_jax.palm import budget, experience_log, offline
from palm_jax.palm import step as palm_step
from palm_jax.palm.dtypes import dtype as _dtype
from palm_jax.representation import pairs as pairs_lib
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require


def validate(config, mesh) -> None:
  """Every config mistake a user can make, caught before anything compiles."""
  env, agent = config.env, config.agent
  require(isinstance(env.num_envs, int) and env.num_envs >= 1,
          f"config.env.num_envs={env.num_envs} must be a positive multiple of the device "
          "count (e.g. 64).")
  require(config.total_env_steps >= 1,
          f"config.total_env_steps={config.total_env_steps} must be at least 1.")
  sharding.check_divisible("env.num_envs", env.num_envs, mesh)
  sharding.check_divisible("batch_size", config.batch_size, mesh)
  require(0.0 <= env.alpha <= 1.0, f"config.env.alpha={env.alpha} must lie in [0, 1].")
  require(0.0 <= env.beta <= 1.0, f"config.env.beta={env.beta} must lie in [0, 1].")
  require(env.episode_length >= 2, f"config.env.episode_length={env.episode_length} must be "
                                   "at least 2 (an episode needs a transition).")
  require(agent.action_source in ("policy", "random"),
          f"config.agent.action_source={agent.action_source!r} must be 'policy' or "
          "'random'.")
  require(config.simsiam.pairs in pairs_lib.PAIR_SOURCES + offline.OFFLINE_PAIRS[1:],
          f"config.simsiam.pairs={config.simsiam.pairs!r} must be one of "
          f"{pairs_lib.PAIR_SOURCES + offline.OFFLINE_PAIRS[1:]}.")
  require(config.simsiam.pairs not in offline.OFFLINE_PAIRS or config.simsiam.real_data,
          f"config.simsiam.pairs={config.simsiam.pairs!r} needs config.simsiam.real_data, a "
          "dataset spec such as npz:../shared/data/cifar_subset/cifar10_train_partial.npz.")
  require(config.simsiam.pairs != "real" or config.simsiam.real_data,
          "config.simsiam.pairs='real' needs config.simsiam.real_data, a dataset spec such "
          "as tfds:cifar10:train.")
  require(1 <= config.reward.k <= config.batch_size,
          f"config.reward.k={config.reward.k} must lie in [1, batch_size="
          f"{config.batch_size}].")
  require(config.replay.capacity >= 2 * env.num_envs,
          f"config.replay.capacity={config.replay.capacity} must hold at least two steps of "
          f"all environments ({2 * env.num_envs}).")
  require(agent.warmup_env_steps >= 2 * env.num_envs,
          f"config.agent.warmup_env_steps={agent.warmup_env_steps} must cover at least two "
          f"steps of all environments ({2 * env.num_envs}) so the replay holds transitions.")
  require(agent.updates_per_step >= 1,
          f"config.agent.updates_per_step={agent.updates_per_step} must be at least 1.")
  budget.updates_per_step(config)  # samples_per_frame must give a whole number of updates
  require(config.loop in palm_step.LOOPS,
          f"config.loop={config.loop!r} must be one of {palm_step.LOOPS}.")
  require(config.log.chunk_iterations >= 1,
          f"config.log.chunk_iterations={config.log.chunk_iterations} must be at least 1.")
  for field in ("generator_dtype", "agent.dtype", "simsiam.dtype", "replay.action_dtype"):
    section, _, name = field.rpartition(".")
    _dtype((config[section] if section else config)[name], field)
  from palm_jax.models.stylegan2 import validate_impls  # pylint: disable=g-import-not-at-top
  validate_impls(config.get("generator_up_impl", "polyphase"),
                 config.get("generator_modulation", "activations"), field="config.generator_")
  chunk = env.get("render_chunk", 0)
  require(chunk == 0 or (chunk > 0 and env.num_envs % chunk == 0 and chunk % mesh.size == 0),
          f"config.env.render_chunk={chunk} must be 0 (off) or divide env.num_envs="
          f"{env.num_envs} and be a multiple of the {mesh.size} devices.")
  check_batch_fits(config)
  experience_log.validate(config)
  _validate_frame_stack(config)


def _validate_frame_stack(config) -> None:
  """Atari stacks (`config.env.frame_stack > 0`, envs/frame_stack_env.py) go with the
  Atari torso, temporal pairs and no CIFAR probe; RGB frames with the ResNet."""
  stack = int(config.env.get("frame_stack", 0))
  atari = config.simsiam.get("encoder", "resnet") == "atari"
  require(stack >= 0, f"config.env.frame_stack={stack} must be 0 (RGB frames) or the number "
                      "of stacked 84x84 grayscale frames (Atari: 4).")
  require(bool(stack) == atari, f"config.env.frame_stack={stack} with config.simsiam.encoder="
          f"{config.simsiam.get('encoder', 'resnet')!r}: Atari frame stacks need the 'atari' "
          "encoder and it needs them; set both (configs/atari/palm.py) or neither.")
  require(not stack or config.simsiam.pairs == "temporal",
          f"config.simsiam.pairs={config.simsiam.pairs!r}: frame-stacked runs support only "
          "'temporal' pairs (consecutive stacks); set config.simsiam.pairs='temporal'.")
  require(not stack or not config.eval.train, f"config.eval.train={config.eval.train!r} is a "
          "CIFAR linear probe, meaningless for an Atari encoder; set config.eval.train=''.")


def check_batch_fits(config) -> None:
  """The first update samples `batch_size` transitions from what warmup put in the replay."""
  env = config.env
  # After warmup the ring holds (warmup iterations - 1) transitions per environment.
  iters = -(-config.agent.warmup_env_steps // env.num_envs)
  stored = min(max(iters - 1, 1), config.replay.capacity // env.num_envs - 1) * env.num_envs
  require(config.batch_size <= stored,
          f"config.batch_size={config.batch_size} is larger than the {stored} transitions "
          f"the replay holds when updates start (warmup {config.agent.warmup_env_steps} env "
          f"steps of {env.num_envs} environments), so every batch would repeat transitions; "
          "lower batch_size or raise agent.warmup_env_steps.")


def check_real_pairs(dataset, c_dim: int, spec: str) -> None:
  """pairs="real" draws pairs of the class the generator renders: the counts must match."""
  require(dataset.labels is not None, f"config.simsiam.real_data={spec!r} has no labels; "
          "real same-class pairs need a labelled split.")
  classes = int(dataset.num_classes or (int(dataset.labels.max()) + 1))
  require(classes == max(c_dim, 1),
          f"config.simsiam.real_data={spec!r} has {classes} classes but the generator has "
          f"c_dim={c_dim}, so pairs='real' would draw only classes 0-{max(c_dim, 1) - 1}; "
          "use a generator trained on that dataset or a dataset with its classes.")
