"""The PALM job (`config.job = "palm"`): pretrain an encoder by playing in a generator.

    python -m palm_jax.main --config=configs/cifar10.py --workdir=DIR

With `simsiam.pairs` in ("real", "real_aug") nothing comes from the environment, so the
run is offline SimSiam on `simsiam.real_data` (`representation/offline.py`): same budget,
same checkpoint layout, no generator, SAC or replay.

Host loop, big_vision style: validate the config, build the generator (load, build at
random, or train one first), initialise or resume the state, then run jitted chunks of
`config.log.chunk_iterations` iterations (see `palm_step`), syncing with the device only
between chunks to log, write rollout grids and checkpoint. Outputs in DIR:

    metrics.jsonl, tb/        scalars per chunk (`step` = environment steps so far)
    rollouts/*.png, *.gif     rows = trajectories (class labelled), columns = time t;
                              one animated GIF per row (frames upscaled x4+)
    checkpoints/<step>/       Orbax: state, encoder, replay (optional), meta
    snapshots/<step>/         permanent encoder snapshots at `checkpoint.snapshot_steps`
    eval/linear_eval.json     linear probe at the end when `config.eval.train` is set
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from palm_jax.palm import budget
from palm_jax.runtime import files
from palm_jax.runtime import checkpoint as ckpt_lib
from palm_jax.palm import experience_log, exploration
from palm_jax.runtime import images, metrics as metrics_lib, preemption, run_records as preflight
from palm_jax.palm import step as palm_step
from palm_jax.palm import replay as replay_lib
from palm_jax.runtime import sharding
from palm_jax.agents import sac
from palm_jax.envs import frame_stack_env, latent_env
from palm_jax.envs.latent_env import EnvParams
from palm_jax.runtime.errors import UserError, require
from palm_jax.palm import offline
from palm_jax.representation import pairs as pairs_lib
from palm_jax.representation import simsiam
from palm_jax.rewards import apt

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _dtype(name: str, field: str):
  require(name in _DTYPES, f"config.{field}={name!r} is not a dtype; use one of "
                           f"{sorted(_DTYPES)}.")
  return _DTYPES[name]


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
  preflight.check_batch_fits(config)
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


def load_env_generator(config, workdir: str):
  """The generator handle named by `config.generator` (training one first if it is "")."""
  from palm_jax.models import stylegan2  # pylint: disable=g-import-not-at-top
  name = config.generator
  if name == "random":
    require(len(config.generator_kwargs) > 0, "config.generator='random' needs "
            "config.generator_kwargs (official Generator keywords such as z_dim, c_dim).")
    gen = stylegan2.init_generator(jax.random.PRNGKey(config.seed + 1),
                                   **config.generator_kwargs.to_dict())
  elif name.startswith("procedural:"):  # a generator without weights (palm_jax.envs.renderer)
    from palm_jax.models import procedural  # pylint: disable=g-import-not-at-top
    gen = procedural.load(name, config.generator_kwargs.to_dict())
  elif name == "":
    require(len(config.gan) > 0, "config.generator is empty and config.gan is empty; name "
            "a generator (a file or nvidia:cifar10) or give a gan config to train one.")
    from palm_jax.gan import train as gan_train  # pylint: disable=g-import-not-at-top
    logging.info("No generator given: training one into %s first.", os.path.join(workdir,
                                                                                  "gan"))
    gen = stylegan2.load_generator(gan_train.train_gan(config.gan, os.path.join(workdir,
                                                                                "gan")))
  else:
    gen = preflight.load_generator_file(name, stylegan2.load_generator)
  gen = gen.with_dtype(_dtype(config.generator_dtype, "generator_dtype"))
  if not hasattr(gen, "with_impl"):   # a weight-free renderer: no StyleGAN implementations
    return gen
  return gen.with_impl(config.get("generator_up_impl", "polyphase"),
                       config.get("generator_modulation", "activations"))


def _render_options(config, gen) -> dict:
  """`LatentEnv` rendering options for StyleGAN generators (renderers take none)."""
  if not hasattr(gen, "with_impl"):
    return {}
  return dict(render_chunk=config.env.get("render_chunk", 0))


def env_params_from(config) -> EnvParams:
  e = config.env
  return EnvParams(alpha=float(e.alpha), beta=float(e.beta),
                   action_scale=float(e.action_scale),
                   truncation_psi=float(e.truncation_psi),
                   episode_length=int(e.episode_length))


def _sac_config(config) -> sac.SACConfig:
  a = config.agent
  return sac.SACConfig(
      actor_hidden=tuple(a.actor_hidden), critic_hidden=tuple(a.critic_hidden),
      actor_lr=a.actor_lr, critic_lr=a.critic_lr, alpha_lr=a.alpha_lr, gamma=a.gamma,
      tau=a.tau, init_alpha=a.init_alpha, target_entropy=a.target_entropy,
      dtype=_dtype(a.dtype, "agent.dtype"))


def _simsiam_config(config, total_updates: int) -> simsiam.SimSiamConfig:
  fields = {k: v for k, v in config.simsiam.to_dict().items()
            if k not in ("pairs", "perturb_std", "real_data")}
  if config.simsiam.pairs == "real_aug":  # two views of one image: augmentation is the pair
    fields["augment"] = True
  return simsiam.as_simsiam_config(dict(fields, batch_size=config.batch_size,
                                        total_steps=max(total_updates, 1)))


class TrainResult(NamedTuple):
  state: Any       # the final `PalmState` (on the mesh)
  metrics: dict    # the last chunk's host metrics (+ `eval/*` when the probe ran)


class Plan:
  """Iteration counts derived from the config (one iteration = one step of all envs)."""

  def __init__(self, config):
    n = config.env.num_envs
    self.chunk = int(config.log.chunk_iterations)
    iters = math.ceil(config.total_env_steps / n)
    self.total_iterations = math.ceil(iters / self.chunk) * self.chunk
    self.warmup_iterations = math.ceil(config.agent.warmup_env_steps / n)
    self.updates_per_step = budget.updates_per_step(config)
    self.total_updates = (max(self.total_iterations - self.warmup_iterations, 0)
                          * self.updates_per_step)
    self.env_steps_per_iteration = n


def build(config, mesh, gen, plan: Plan):
  """The environment, static step config, jitted init, and shardings."""
  env = latent_env.make_latent_env(gen, latent_space=config.env.latent_space,
                                     noise_mode=config.env.noise_mode,
                                     **_render_options(config, gen))
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
  ss_cfg = _simsiam_config(config, plan.total_updates)
  sac_cfg = _sac_config(config)
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


def _real_bank(config, num_classes: int, mesh):
  """Real same-class images on the device (pairs="real"), or a 1-image placeholder."""
  if config.simsiam.pairs != "real":
    bank = pairs_lib.RealBank(images=np.zeros((1, 1, 1, 3), np.uint8),
                              start=np.zeros((1,), np.int32), count=np.ones((1,), np.int32))
  else:
    from palm_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
    ds = load_dataset(config.simsiam.real_data)
    preflight.check_real_pairs(ds, num_classes, config.simsiam.real_data)
    bank = pairs_lib.make_real_bank(ds.images, ds.labels, max(num_classes, 1))
  return sharding.host_to_global(bank, mesh, sharded=False)


def _encoder_meta(ss_cfg) -> dict:
  if ss_cfg.encoder == "atari":  # DrQ's torso (models/atari_encoder.py), no free sizes
    return {"encoder": "atari", "input_shape": [84, 84, frame_stack_env.STACK_SIZE]}
  return {"stage_sizes": list(ss_cfg.stage_sizes), "width": ss_cfg.width,
          "zero_init_residual": ss_cfg.zero_init_residual}


def _meta(config, ss_cfg, env_steps) -> dict:
  iteration = int(env_steps // config.env.num_envs)
  updates = max(iteration - math.ceil(config.agent.warmup_env_steps / config.env.num_envs),
                0) * budget.updates_per_step(config)
  # `lr_schedule`/`simsiam_total_updates` say what a snapshot is: under "cosine" a point of
  # one schedule of that many updates, under "constant" the same as a shorter run.
  return {"job": config.get("job", "palm"), "config": config.to_dict(), "env_steps": int(env_steps),
          "iteration": iteration, "encoder": _encoder_meta(ss_cfg),
          "simsiam_updates": updates, "simsiam_total_updates": ss_cfg.total_steps,
          "lr_schedule": ss_cfg.schedule}


def _save(ckpt, env_steps, state, replay, config, ss_cfg, save_replay: bool) -> None:
  meta = _meta(config, ss_cfg, env_steps)
  ckpt.save(env_steps, state=state, meta=meta, encoder=simsiam.encoder_variables(state.simsiam),
            replay=replay if save_replay else None)


def _check_finite(host_metrics: dict, env_steps: int, ckpt) -> None:
  bad = sorted(k for k, v in host_metrics.items() if not np.isfinite(v))
  if bad:
    ckpt.wait()  # the last good checkpoint may still be writing (async): finish it first
    last = ckpt.latest_step()
    kept = f"the last good checkpoint (step {last}) is kept" if last is not None else \
        "no checkpoint had been written yet"
    raise UserError(f"training diverged at env step {env_steps:,}: {', '.join(bad)} became "
                    f"NaN/inf; {kept} in {ckpt.directory}; lower the learning rates or check "
                    "the generator weights.")


def train(config, workdir: str) -> TrainResult:
  """Runs (or resumes) a PALM pretraining run in `workdir`."""
  mesh = sharding.make_mesh()
  validate(config, mesh)
  plan = Plan(config)
  ckpt_lib.validate_snapshot_steps(config, plan.chunk * plan.env_steps_per_iteration,
                                   plan.total_iterations * plan.env_steps_per_iteration)
  budget.log_budget(config, plan.total_iterations, plan.warmup_iterations)
  eval_data = preflight.eval_datasets(config)  # every dataset resolved before compiling
  if offline.is_offline(config) or config.job == "passive":
    return _train_offline(config, workdir, plan, mesh, eval_data)
  gen = load_env_generator(config, workdir)
  env, step_cfg, init_fn, shardings, ss_cfg = build(config, mesh, gen, plan)
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  env_params = env_params_from(config)
  real_bank = _real_bank(config, gen.c_dim, mesh)
  preflight.write_config(workdir, "palm", config)

  logging.info("Initialising %d environments on %d devices (%d iterations of %d env steps)",
               config.env.num_envs, mesh.size, plan.total_iterations,
               plan.env_steps_per_iteration)
  root_key = np.asarray(jax.random.PRNGKey(config.seed))  # host value: same on every process
  ckpt, snaps = ckpt_lib.checkpointers(workdir, config)
  save_replay = bool(config.checkpoint.save_replay)
  # Restore into shapes alone, so a resume never holds a fresh state and replay beside the
  # restored ones (the replay is gigabytes).
  abstract_state, abstract_replay = jax.eval_shape(init_fn, root_key, gen_vars, env_params)
  exp_log = (experience_log.ExperienceLog(  # size printed, disk checked: nothing compiled yet
      config, workdir, frame_shape=(env.obs_shape if config.env.get("frame_stack", 0) else
                                    (gen.img_resolution, gen.img_resolution, 3)),
      action_dim=env.action_dim, total_iterations=plan.total_iterations, chunk=plan.chunk)
      if experience_log.enabled(config) else None)
  files.check_free_space(ckpt.directory, ckpt_lib.tree_bytes(
      abstract_state, abstract_replay if save_replay else None), "a checkpoint of this run")
  restored = ckpt.restore(abstract_state,
                          replay_template=abstract_replay if save_replay else None)
  if restored is None:
    state, replay = init_fn(root_key, gen_vars, env_params)
  else:
    env_steps, state, replay, _ = restored
    if replay is None:  # not saved: start an empty one (updates wait until it refills)
      _, replay = init_fn(root_key, gen_vars, env_params)
    logging.info("Resumed from the checkpoint at env step %s.", f"{env_steps:,}")
  iteration = int(sharding.to_host(state.iteration))
  env_steps = iteration * plan.env_steps_per_iteration

  writer = metrics_lib.MetricWriter(workdir)
  writer.truncate_after(env_steps)
  total_steps = plan.total_iterations * plan.env_steps_per_iteration
  progress = metrics_lib.Progress(total_steps, start=env_steps, unit="env steps")
  loop = palm_step.resolve_loop(config.loop, jax.devices()[0].platform)
  if exp_log is not None:
    exp_log.resume(iteration)  # drop what was logged after the checkpoint
  chunk_fn = palm_step.make_chunk(step_cfg, env, mesh, plan.chunk, *shardings, loop=loop)
  rollout_fn = palm_step.make_rollout(env, config.log.rollout_rows,
                                      config.env.episode_length, config.agent.action_source)
  if config.env.get("frame_stack", 0):  # pictures show each stack's newest frame
    rollout_fn = frame_stack_env.newest_frames(rollout_fn)
  explore_fn = _explore_fn(config, env, mesh)
  host_metrics: dict = {}
  chunks_done = iteration // plan.chunk
  run_start, compile_s = time.time(), None
  if iteration >= plan.total_iterations:
    logging.info("The run in %s is already complete (%s env steps); nothing to train.",
                 workdir, f"{env_steps:,}")
  else:
    logging.info("Compiling the training chunk (%d iterations)...", plan.chunk)
  while iteration < plan.total_iterations:
    start = time.time()
    state, replay, chunk_metrics = chunk_fn(state, replay, gen_vars, env_params, real_bank)
    if exp_log is not None:  # the chunk's frames leave the device; written in the background
      exp_log.write_chunk(iteration, replay, state.env.t)
    iteration += plan.chunk
    chunks_done += 1
    env_steps = iteration * plan.env_steps_per_iteration
    if explore_fn is not None:  # once per chunk, on a small batch (exploration.py)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 7919), env_steps)
      chunk_metrics = dict(chunk_metrics, **explore_fn(state, replay, gen_vars, env_params,
                                                       key))
    host_metrics = {k: float(v) for k, v in sharding.to_host(chunk_metrics).items()}
    _check_finite(host_metrics, env_steps, ckpt)
    first = compile_s is None  # the first chunk compiles: keep it out of rate and ETA
    if first:
      compile_s = time.time() - start
      logging.info("Compiled and ran the first chunk in %s.",
                   metrics_lib.format_duration(compile_s))
    rate = progress.update(env_steps, timed=not first)["rate"]
    if math.isfinite(rate):  # unknown for the chunk that compiled
      host_metrics["perf/env_steps_per_s"] = rate
    host_metrics["perf/chunk_seconds"] = time.time() - start
    writer.write_scalars(env_steps, host_metrics)
    last = iteration >= plan.total_iterations
    if config.log.rollout_every_chunks and (chunks_done % config.log.rollout_every_chunks == 0
                                            or last):
      _write_rollouts(workdir, writer, rollout_fn, state, gen_vars, env_params, env_steps)
    stop = preemption.requested()
    if chunks_done % config.checkpoint.every_chunks == 0 or last or stop:
      if exp_log is not None:
        exp_log.before_checkpoint()  # the log never lags the checkpoint a rerun resumes from
      _save(ckpt, env_steps, state, replay, config, ss_cfg, save_replay)
      writer.flush()  # TensorBoard never lags the checkpoint a rerun resumes from
    if snaps is not None and ckpt_lib.snapshot_due(
        config, env_steps - plan.chunk * plan.env_steps_per_iteration, env_steps):
      ckpt_lib.save_snapshot(snaps, env_steps, simsiam.encoder_variables(state.simsiam),
                             _meta(config, ss_cfg, env_steps))
    if stop and not last:
      if exp_log is not None:
        exp_log.close()
      ckpt.close()
      if snaps is not None:
        snaps.close()
      writer.close()
      raise preemption.stopped(f"{chunks_done} chunks", f"env step {env_steps:,} in "
                               f"{ckpt.directory}")
  if exp_log is not None:
    exp_log.close()
  ckpt.close()
  if snaps is not None:
    snaps.close()
  writer.flush()
  if eval_data is not None:
    host_metrics.update(_final_linear_eval(config, workdir, state, ss_cfg, env_steps, mesh,
                                           eval_data))
  writer.close()
  _summary(workdir, time.time() - run_start, compile_s, env_steps, host_metrics)
  return TrainResult(state=state, metrics=host_metrics)


def _explore_fn(config, env, mesh):
  """The per-chunk exploration metrics (None when `config.log.explore_envs` is 0)."""
  m = int(config.log.get("explore_envs", 0) or 0)
  if m <= 0:
    return None
  sharding.check_divisible("log.explore_envs", m, mesh)
  return exploration.make_explore_metrics(
      env, mesh, num_envs=m, episode_length=config.env.episode_length,
      batch_size=config.batch_size, knn_k=config.reward.k, knn_average=config.reward.average,
      knn_clip=float(config.reward.clip), policy=config.agent.action_source == "policy")


def _train_offline(config, workdir, plan, mesh, eval_data) -> TrainResult:
  """SimSiam on real images only (pairs real / real_aug: representation/offline.py) or on a
  run's experience log (job passive: representation/passive.py)."""
  ss_cfg = _simsiam_config(config, plan.total_updates)
  final_eval = lambda ss_state, steps: _final_linear_eval(  # noqa: E731
      config, workdir, ss_state, ss_cfg, steps, mesh, eval_data)
  from palm_jax.palm import passive  # pylint: disable=g-import-not-at-top
  loop = passive.train_passive if config.job == "passive" else offline.train_offline
  ss_state, metrics = loop(
      config, workdir, plan, ss_cfg, meta_fn=lambda steps: _meta(config, ss_cfg, steps),
      final_eval=final_eval)
  return TrainResult(state=ss_state, metrics=metrics)


def _summary(workdir, seconds, compile_s, env_steps, host_metrics) -> None:
  """The end-of-run line: where the outputs are, how long it took, the final numbers."""
  keys = ("simsiam/loss", "reward/mean", "sac/critic_loss", "eval/test_top1",
          "eval/random_floor_test_top1")
  final = ", ".join(f"{k} {host_metrics[k]:.4f}" for k in keys if k in host_metrics)
  took = metrics_lib.format_duration(seconds)
  if compile_s is not None:
    took += f" (compile + first chunk {metrics_lib.format_duration(compile_s)})"
  logging.info("Run finished at %s env steps in %s; outputs in %s (metrics.jsonl, tb/, "
               "rollouts/, checkpoints/, eval/)%s.", f"{env_steps:,}", took, workdir,
               f"; final {final}" if final else "")


def _write_rollouts(workdir, writer, rollout_fn, state, gen_vars, env_params, env_steps):
  key = jax.random.fold_in(jax.random.PRNGKey(12345), env_steps)
  frames, classes = sharding.to_host(rollout_fn(state, gen_vars, env_params, key))
  if jax.process_index() == 0:
    images.save_rollout(os.path.join(workdir, "rollouts", f"rollout_{env_steps:012d}"),
                        frames, classes)
  writer.write_image(env_steps, "rollouts", images.make_grid(frames))


def _final_linear_eval(config, workdir, state, ss_cfg, env_steps, mesh, eval_data) -> dict:
  """The linear probe of the final encoder on `config.eval` data, beside the floor of a
  random encoder of the same architecture (eval/linear_eval_*.json)."""
  from palm_jax.evaluation import features, linear_eval  # pylint: disable=g-import-not-at-top
  ss_state = state if isinstance(state, simsiam.SimSiamState) else state.simsiam
  encoder = features.from_variables(simsiam.encoder_variables(ss_state),
                                    _encoder_meta(ss_cfg), step=env_steps)
  result = linear_eval.evaluate_linear(encoder, *eval_data, seed=config.seed, mesh=mesh)
  floor = linear_eval.random_floor(_encoder_meta(ss_cfg), *eval_data, seed=config.seed,
                                   mesh=mesh)
  result["random_floor_test_top1"] = floor["test_top1"]
  path = linear_eval.write_result(workdir, result)
  logging.info("Linear probe of the final encoder on %s: test top-1 %.4f (train %.4f; a "
               "random encoder of the same architecture: %.4f) -> %s", result["dataset"],
               result["test_top1"], result["train_top1"], floor["test_top1"], path)
  return {f"eval/{k}": v for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run(config, workdir: str) -> None:
  train(config, workdir)
