"""What a PALM run compiles and derives from its config: the plan, the programs, the meta.

    plan = Plan(config)                       # palm.config: iteration counts, updates
    programs = build(config, mesh, gen, plan, members)   # env, jitted init and chunk inputs

`build` makes one member's environment, step config, jitted `init` and shardings
(`palm.step`), and for a population (`batched=True`) the same with a leading, unsplit
member axis: the members' `EnvParams` stacked ([n] alpha, beta, ...), their root keys, and
a vmapped init. The trainer (`palm.trainer`) runs 1..N members through these; benchmarks
and coverage build the same programs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.agents import sac
from palm_jax.envs import frame_stack_env, latent_env
from palm_jax.envs.latent_env import EnvParams
from palm_jax.palm import exploration, validate
from palm_jax.palm import replay as replay_lib
from palm_jax.palm import step as palm_step
from palm_jax.palm.config import Cadence, Plan
from palm_jax.palm.dtypes import dtype as _dtype
from palm_jax.palm.generator import render_options
from palm_jax.representation import pairs as pairs_lib
from palm_jax.representation import simsiam
from palm_jax.rewards import apt
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require


def env_params_from(config) -> EnvParams:
  e = config.env
  return EnvParams(alpha=float(e.alpha), beta=float(e.beta),
                   action_scale=float(e.action_scale),
                   truncation_psi=float(e.truncation_psi),
                   episode_length=int(e.episode_length))


def sac_config(config) -> sac.SACConfig:
  a = config.agent
  return sac.SACConfig(
      actor_hidden=tuple(a.actor_hidden), critic_hidden=tuple(a.critic_hidden),
      actor_lr=a.actor_lr, critic_lr=a.critic_lr, alpha_lr=a.alpha_lr, gamma=a.gamma,
      tau=a.tau, init_alpha=a.init_alpha, target_entropy=a.target_entropy,
      dtype=_dtype(a.dtype, "agent.dtype"))


def simsiam_config(config, total_updates: int) -> simsiam.SimSiamConfig:
  fields = {k: v for k, v in config.simsiam.to_dict().items()
            if k not in ("pairs", "perturb_std", "real_data")}
  if config.simsiam.pairs == "real_aug":  # two views of one image: augmentation is the pair
    fields["augment"] = True
  return simsiam.as_simsiam_config(dict(fields, batch_size=config.batch_size,
                                        total_steps=max(total_updates, 1)))


@dataclasses.dataclass(frozen=True)
class Programs:
  """One member's programs, and the population's when `batched` (see the module doc)."""
  env: Any
  step_cfg: palm_step.StepConfig
  init_fn: Any             # one member's jitted (key, gen_vars, env_params) -> (state, replay)
  shardings: tuple         # (state, replay) shardings: one member's, or with a member axis
  single_shardings: tuple  # one member's
  ss_cfg: simsiam.SimSiamConfig
  member_params: list      # each member's EnvParams
  env_params: Any          # EnvParams of one member, or of [n] arrays when batched
  keys: np.ndarray         # uint32 [n, 2]: each member's root key, PRNGKey(seed)
  batched: bool
  init_members: Any        # jitted (keys, gen_vars, env_params): init_fn, vmapped if batched

  def init(self, gen_vars):
    """Fresh (state, replay) of every member (stacked when batched)."""
    return self.init_members(self.keys if self.batched else self.keys[0], gen_vars,
                             self.env_params)

  def abstract(self, gen_vars):
    """One member's (state, replay) shapes (what checkpoints hold)."""
    return jax.eval_shape(self.init_fn, self.keys[0], gen_vars, self.member_params[0])


def _stacked(tree, mesh):
  """Shardings with a leading, unsplit member axis."""
  return jax.tree.map(lambda s: NamedSharding(mesh, P(None, *s.spec)), tree)


def build(config, mesh, gen, plan: Plan, member_configs=None, *, batched: bool = False
          ) -> Programs:
  """The programs of `member_configs` (default: `[config]`), vmapped when `batched`."""
  member_configs = list(member_configs or [config])
  env, step_cfg, init_fn, single, ss_cfg = build_single(config, mesh, gen, plan)
  member_params = [env_params_from(c) for c in member_configs]
  keys = np.stack([np.asarray(jax.random.PRNGKey(c.seed)) for c in member_configs])
  if batched:
    env_params = jax.tree.map(  # one value per member: [n] float32 / int32 leaves
        lambda *xs: np.asarray(xs, np.int32 if isinstance(xs[0], int) else np.float32),
        *member_params)
    shardings = tuple(_stacked(s, mesh) for s in single)
    init_members = jax.jit(jax.vmap(init_fn, in_axes=(0, None, 0)), out_shardings=shardings)
  else:
    env_params, shardings, init_members = member_params[0], single, init_fn
  return Programs(env, step_cfg, init_fn, shardings, single, ss_cfg, member_params,
                  env_params, keys, batched, init_members)


def build_single(config, mesh, gen, plan: Plan):
  """One member's environment, static step config, jitted init, and shardings."""
  env = latent_env.make_latent_env(gen, latent_space=config.env.latent_space,
                                     noise_mode=config.env.noise_mode,
                                     **render_options(config, gen))
  step_cfg = palm_step.StepConfig(
      num_envs=config.env.num_envs, batch_size=config.batch_size,
      updates_per_step=plan.updates_per_step,
      warmup_iterations=plan.warmup_iterations, action_source=config.agent.action_source,
      pairs=config.simsiam.pairs, perturb_std=float(config.simsiam.perturb_std),
      knn_k=config.reward.k, knn_average=config.reward.average,
      knn_clip=float(config.reward.clip), knn_normalize=config.reward.normalize)
  res, ch = gen.img_resolution, gen.img_channels
  stack = int(config.env.get("frame_stack", 0))
  if stack:  # Atari: 84x84 grayscale stacks in the env state (envs/frame_stack_env.py)
    env = frame_stack_env.FrameStackEnv(env, stack=stack)
  require(stack or ch == 3, f"the generator renders {ch}-channel images; the ResNet encoder "
          "needs RGB (3 channels), or set config.env.frame_stack for Atari stacks.")
  obs_shape = env.obs_shape if stack else (res, res, 3)
  ss_cfg = simsiam_config(config, plan.total_updates)
  sac_cfg = sac_config(config)
  slots = replay_lib.num_slots(config.replay.capacity, config.env.num_envs)
  action_dtype = _dtype(config.replay.action_dtype, "replay.action_dtype")

  def init(key, gen_vars, env_params):
    k_env, k_ss, k_sac, k_t0 = jax.random.split(key, 4)
    n = config.env.num_envs
    t0 = (jax.random.randint(k_t0, (n,), 0, env_params.episode_length)
          if config.env.stagger else jnp.zeros((n,), jnp.int32))
    obs, env_state = env.reset(k_env, gen_vars, env_params, n, t0=t0)
    ss_state = simsiam.init_simsiam(k_ss, ss_cfg, obs_shape,
                                    total_steps=ss_cfg.total_steps)
    sac_state = sac.init(k_sac, ss_cfg.feature_dim, env.action_dim, sac_cfg)
    state = palm_step.PalmState(
        iteration=jnp.zeros((), jnp.int32), key=key, env=env_state, obs=obs,
        first=t0 == 0, simsiam=ss_state, sac=sac_state, reward_rms=apt.init_running_mean())
    replay = replay_lib.init_replay(slots, n, obs_shape, env.action_dim, action_dtype)
    return state, replay

  shardings = (palm_step.state_shardings(mesh), replay_lib.replay_shardings(mesh))
  rep = sharding.replicated(mesh)
  init_fn = sharding.start_together(
      jax.jit(init, in_shardings=(rep, rep, rep), out_shardings=shardings), "palm init")
  return env, step_cfg, init_fn, shardings, ss_cfg


def real_bank(config, num_classes: int, mesh):
  """Real same-class images on the device (pairs="real"), or a 1-image placeholder."""
  if config.simsiam.pairs != "real":
    bank = pairs_lib.RealBank(images=np.zeros((1, 1, 1, 3), np.uint8),
                              start=np.zeros((1,), np.int32), count=np.ones((1,), np.int32))
  else:
    from palm_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
    ds = load_dataset(config.simsiam.real_data)
    validate.check_real_pairs(ds, num_classes, config.simsiam.real_data)
    bank = pairs_lib.make_real_bank(ds.images, ds.labels, max(num_classes, 1))
  return sharding.host_to_global(bank, mesh, sharded=False)


def encoder_meta(ss_cfg) -> dict:
  if ss_cfg.encoder == "atari":  # DrQ's torso (models/atari_encoder.py), no free sizes
    return {"encoder": "atari", "input_shape": [84, 84, frame_stack_env.STACK_SIZE]}
  return {"stage_sizes": list(ss_cfg.stage_sizes), "width": ss_cfg.width,
          "zero_init_residual": ss_cfg.zero_init_residual}


def meta(config, plan: Plan, ss_cfg, env_steps) -> dict:
  """A checkpoint's `meta` item: the member's config, its step, the encoder's architecture
  and how far its SimSiam schedule is."""
  # `lr_schedule`/`simsiam_total_updates` say what a snapshot is: under "cosine" a point of
  # one schedule of that many updates, under "constant" the same as a shorter run.
  return {"job": config.get("job", "palm"), "config": config.to_dict(),
          "env_steps": int(env_steps), "iteration": int(env_steps // config.env.num_envs),
          "encoder": encoder_meta(ss_cfg), "simsiam_updates": plan.updates_at(env_steps),
          "simsiam_total_updates": ss_cfg.total_steps, "lr_schedule": ss_cfg.schedule}


def explore_fn(config, env, mesh):
  """The per-chunk exploration metrics (None when `config.log.explore_envs` is 0)."""
  m = Cadence(config).explore_envs
  if m <= 0:
    return None
  sharding.check_divisible("log.explore_envs", m, mesh)
  return exploration.make_explore_metrics(
      env, mesh, num_envs=m, episode_length=config.env.episode_length,
      batch_size=config.batch_size, knn_k=config.reward.k, knn_average=config.reward.average,
      knn_clip=float(config.reward.clip), policy=config.agent.action_source == "policy")


def rollout_fn(config, env):
  """The jitted rollout of the pictures (Atari stacks show each stack's newest frame)."""
  fn = palm_step.make_rollout(env, config.log.rollout_rows, config.env.episode_length,
                              config.agent.action_source)
  return frame_stack_env.newest_frames(fn) if config.env.get("frame_stack", 0) else fn
