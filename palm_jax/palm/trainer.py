"""The one PALM host loop, for 1..N members: a single run is a population of one.

    results = trainer.train(config, workdir)       # -> [TrainResult] (one per member)

big_vision's shape: validate the config, load the generator, build the programs
(`palm.programs`), initialise or resume every member's state, then run jitted chunks of
`config.log.chunk_iterations` iterations (`palm.step.make_chunk`), syncing with the device
only between chunks to log, draw rollouts and checkpoint (`runtime.host_loop`).

Members (`palm.population`): a single run is one member whose workdir is the run's; with
`config.population.seeds` the members are N seeds (each its own workdir, config and root
key) in one program vmapped over a leading member axis — purejaxrl's
`vmap(make_train)(rngs)`, kept sharded. Either way every member's outputs are a normal
run's, in its workdir:

    metrics.jsonl, tb/        scalars per chunk (`step` = environment steps so far)
    rollouts/*.png, *.gif     rows = trajectories (class labelled), columns = time t
    checkpoints/<step>/       Orbax: state, encoder, replay (optional), meta
    snapshots/<step>/         permanent encoder snapshots at `checkpoint.snapshot_steps`
    experience/               every frame played (single runs, `experience.log=True`)

The final evaluation is the job's (`palm_jax.jobs.palm`): the trainer returns each
member's final state and last metrics.
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

from palm_jax.palm import (budget, experience_log, generator, population, programs,
                           validate)
from palm_jax.palm import step as palm_step
from palm_jax.palm.config import Cadence, Plan
from palm_jax.representation import simsiam
from palm_jax.runtime import checkpoint as ckpt_lib
from palm_jax.runtime import files, host_loop, images, run_records, sharding, wandb_log
from palm_jax.runtime import metrics as metrics_lib
from palm_jax.runtime.errors import require


class TrainResult(NamedTuple):
  state: Any          # the member's final state (`PalmState`, or `SimSiamState` offline)
  metrics: dict       # its last chunk's host metrics
  workdir: str = ""   # the member's workdir
  config: Any = None  # the member's single-run config


def _members(config, workdir: str, mesh) -> tuple[list[population.Member], Any, bool]:
  """(members, generator handle, batched): one member (this run) or the population's."""
  if not population.enabled(config):
    return ([population.Member("", config, workdir)],
            generator.load_env_generator(config, workdir), False)
  population.validate(config, mesh, workdir)
  gen, gen_file = population.shared_generator(config, workdir)
  return population.members(config, workdir, gen_file), gen, True


def _restore(ckpts, team, abstract_state, abstract_replay, save_replay):
  """Every member's checkpoint, or None when none has one. Members resume together: when
  one member's newest checkpoint could not be read (moved to broken/) the others resume
  from the newest step every member has, their newer steps set aside (checkpoints/ahead/)."""
  replay = abstract_replay if save_replay else None
  restored = [c.restore(abstract_state, replay_template=replay) for c, _ in ckpts]
  have = {m.name: r[0] for m, r in zip(team, restored) if r is not None}
  if not have:
    return None
  common = min(have.values())
  behind = [m.name for m, (c, _) in zip(team, ckpts) if common not in c.all_steps()]
  require(len(have) == len(team) and not behind,
          f"the population's members are at different checkpoints ({have}; none for "
          f"{[m.name for m in team if m.name not in have] or behind}); members "
          "resume together: move the members/ folder aside to start again, or rerun each "
          "member's config_palm.json as a single run.")
  for i, ((c, _), m) in enumerate(zip(ckpts, team)):
    if restored[i][0] != common:
      c.set_aside_after(common, f"member {m.name} is at step {restored[i][0]:,} but the "
                        f"others can only resume from {common:,}")
      restored[i] = c.restore(abstract_state, step=common, replay_template=replay)
  return restored


class _Team:
  """Moves one member's arrays in and out of the program's (stacked when batched)."""

  def __init__(self, progs: programs.Programs):
    self.batched = progs.batched
    stack = lambda sh: jax.jit(  # noqa: E731
        lambda *ts: jax.tree.map(lambda *xs: jnp.stack(xs), *ts), out_shardings=sh)
    take = lambda sh: jax.jit(  # noqa: E731
        lambda t, i: jax.tree.map(lambda x: x[i], t), out_shardings=sh)
    self._stack = [stack(s) for s in progs.shardings]
    self._take = [take(s) for s in progs.single_shardings]

  def stack(self, which: int, trees):
    return self._stack[which](*trees) if self.batched else trees[0]

  def take(self, which: int, tree, i: int):
    return self._take[which](tree, i) if self.batched else tree


def _save(ckpt, env_steps, state, replay, meta: dict) -> None:
  ckpt.save(env_steps, state=state, meta=meta,
            encoder=simsiam.encoder_variables(state.simsiam), replay=replay)


def _write_rollouts(workdir, writer, rollout_fn, state, gen_vars, env_params, env_steps):
  key = jax.random.fold_in(jax.random.PRNGKey(12345), env_steps)
  frames, classes = sharding.to_host(rollout_fn(state, gen_vars, env_params, key))
  if jax.process_index() == 0:
    images.save_rollout(os.path.join(workdir, "rollouts", f"rollout_{env_steps:012d}"),
                        frames, classes)
  writer.write_image(env_steps, "rollouts", images.make_grid(frames))


def prepare(config):
  """The checks every PALM loop makes before it compiles: (mesh, plan, cadence)."""
  mesh = sharding.make_mesh()
  validate.validate(config, mesh)
  wandb_log.require_installed(wandb_log.Settings.from_config(config))
  plan, cadence = Plan(config), Cadence(config)
  ckpt_lib.validate_snapshot_steps(cadence.snapshot_steps, plan.chunk_env_steps,
                                   plan.total_env_steps)
  budget.log_budget(config, plan.total_iterations, plan.warmup_iterations)
  return mesh, plan, cadence


def train(config, workdir: str, *, allow_config_change: bool = False) -> list[TrainResult]:
  """Runs (or resumes) the member(s) of `config` in `workdir`; one result per member."""
  mesh, plan, cadence = prepare(config)
  team, gen, batched = _members(config, workdir, mesh)
  n = len(team)
  progs = programs.build(config, mesh, gen, plan, [m.config for m in team], batched=batched)
  env, ss_cfg = progs.env, progs.ss_cfg
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  real_bank = programs.real_bank(config, gen.c_dim, mesh)
  if batched:  # the checkpoints are the members': so is the resume check
    for m in team:
      run_records.check_resume_config(m.workdir, "palm", m.config, allow_config_change)
  run_records.write_config(workdir, "palm", config)
  for m in team if batched else ():
    run_records.write_config(m.workdir, "palm", m.config)
  logging.info("Initialising %d environments on %d devices (%d iterations of %d env steps)"
               "%s", config.env.num_envs, mesh.size, plan.total_iterations,
               plan.env_steps_per_iteration, f" for each of {n} members ("
               f"{', '.join(m.name for m in team)})" if batched else "")

  save_replay = cadence.save_replay
  ckpts = [ckpt_lib.checkpointers(m.workdir, cadence.keep, cadence.snapshot_steps)
           for m in team]
  # Restore into shapes alone, so a resume never holds a fresh state and replay beside the
  # restored ones (the replay is gigabytes).
  abstract_state, abstract_replay = progs.abstract(gen_vars)
  exp_log = (experience_log.ExperienceLog(  # size printed, disk checked: nothing compiled yet
      workdir, num_envs=config.env.num_envs, every_k=experience_log.every(config),
      episode_length=config.env.episode_length,
      frame_shape=(env.obs_shape if config.env.get("frame_stack", 0) else
                   (gen.img_resolution, gen.img_resolution, 3)),
      action_dim=env.action_dim, total_iterations=plan.total_iterations, chunk=plan.chunk)
      if experience_log.enabled(config) and not batched else None)
  files.check_free_space(ckpts[0][0].directory, n * ckpt_lib.tree_bytes(
      abstract_state, abstract_replay if save_replay else None),
      "a checkpoint of this run" if n == 1 else f"a checkpoint of each of the {n} members")
  moves = _Team(progs)
  restored = _restore(ckpts, team, abstract_state, abstract_replay, save_replay)
  if restored is None:
    t0 = time.time()
    logging.info("Compiling and running the initialiser (state and replay)...")
    state, replay = progs.init(gen_vars)
    logging.info("Initialised in %s.", metrics_lib.format_duration(time.time() - t0))
  else:
    state = moves.stack(0, [r[1] for r in restored])
    if all(r[2] is not None for r in restored):
      replay = moves.stack(1, [r[2] for r in restored])
    else:  # saved without replays: empty ones (updates wait until they refill)
      _, replay = progs.init(gen_vars)
    logging.info("Resumed from the checkpoint%s at env step %s.", "s" if batched else "",
                 f"{restored[0][0]:,}")
  iteration = int(np.ravel(sharding.to_host(state.iteration))[0])
  env_steps = iteration * plan.env_steps_per_iteration

  with host_loop.HostLoop("training", ckpt=ckpts[0][0]) as loop:
    writers = [loop.own(metrics_lib.MetricWriter(
        m.workdir, wandb=wandb_log.Settings.from_config(m.config))) for m in team]
    for ckpt, snaps in ckpts:
      loop.own(ckpt, snaps)
    loop.own(exp_log)
    for w in writers:
      w.truncate_after(env_steps)
    for _, snaps in ckpts:
      ckpt_lib.set_aside_stale_snapshots(snaps, env_steps)
    progress = metrics_lib.Progress(plan.total_env_steps, start=env_steps,
                                    unit="env steps" if n == 1 else "member env steps")
    if exp_log is not None:
      exp_log.resume(iteration)  # drop what was logged after the checkpoint
    chunk_fn = palm_step.make_chunk(
        progs.step_cfg, env, mesh, plan.chunk, *progs.shardings,
        loop=palm_step.resolve_loop(config.loop, jax.devices()[0].platform),
        members=n if batched else 0)
    rollout_fn = programs.rollout_fn(config, env)
    explore_fn = programs.explore_fn(config, env, mesh)
    if explore_fn is not None and batched:
      explore_fn = jax.jit(jax.vmap(explore_fn, in_axes=(0, 0, None, 0, 0)))
    host = [dict() for _ in team]
    chunks_done = iteration // plan.chunk
    run_start, compile_s = time.time(), None
    if iteration >= plan.total_iterations:
      logging.info("The run in %s is already complete (%s env steps); nothing to train.",
                   workdir, f"{env_steps:,}")
    else:
      logging.info("Compiling the training chunk (%d iterations)...", plan.chunk)
    io_s = 0.0  # seconds spent writing after the last progress report: not in the rate
    first_rollout = True
    while iteration < plan.total_iterations:
      start = time.time()
      state, replay, chunk_metrics = chunk_fn(state, replay, gen_vars, progs.env_params,
                                              real_bank)
      if exp_log is not None:  # the chunk's frames leave the device; written in background
        exp_log.write_chunk(iteration, replay, state.env.t)
      iteration += plan.chunk
      chunks_done += 1
      env_steps = iteration * plan.env_steps_per_iteration
      if explore_fn is not None:  # once per chunk, on a small batch (exploration.py)
        keys = [np.asarray(jax.random.fold_in(jax.random.PRNGKey(m.config.seed + 7919),
                                              env_steps)) for m in team]
        chunk_metrics = dict(chunk_metrics, **explore_fn(
            state, replay, gen_vars, progs.env_params,
            np.stack(keys) if batched else keys[0]))
      fetched = sharding.to_host(chunk_metrics)
      host = [{k: float(np.ravel(v)[i]) for k, v in fetched.items()} for i in range(n)]
      for h, (ckpt, _) in zip(host, ckpts):
        loop.ckpt = ckpt
        loop.check_finite(h, step_text=f"env step {env_steps:,}",
                          hint="lower the learning rates or check the generator weights")
      first = compile_s is None  # the first chunk compiles: keep it out of rate and ETA
      if first:
        compile_s = time.time() - start
        logging.info("Compiled and ran the first chunk in %s.",
                     metrics_lib.format_duration(compile_s))
      rate = progress.update(env_steps, timed=not first, excluded_s=io_s)["rate"]
      io_start = time.time()
      last = iteration >= plan.total_iterations
      rollouts = cadence.rollout_every_chunks and host_loop.due(
          chunks_done, cadence.rollout_every_chunks, last=last)
      stop = loop.stop_requested()
      save = host_loop.due(chunks_done, cadence.checkpoint_every_chunks, last=last) or stop
      snap = ckpt_lib.snapshot_due(cadence.snapshot_steps,
                                   env_steps - plan.chunk_env_steps, env_steps)
      if save and exp_log is not None:
        exp_log.before_checkpoint()  # the log never lags the checkpoint a rerun resumes from
      for i, (m, h, w, (ckpt, snaps)) in enumerate(zip(team, host, writers, ckpts)):
        if math.isfinite(rate):  # unknown for the chunk that compiled
          h["perf/env_steps_per_s"] = rate
          if batched:
            h["perf/population_env_steps_per_s"] = rate * n
        h["perf/chunk_seconds"] = time.time() - start
        w.write_scalars(env_steps, h)
        if not (rollouts or save or snap):
          continue
        member_state = moves.take(0, state, i)
        if rollouts:
          if first_rollout:
            logging.info("Writing rollouts (the first call compiles the rollout program)...")
            first_rollout = False
          _write_rollouts(m.workdir, w, rollout_fn, member_state, gen_vars,
                          progs.member_params[i], env_steps)
        meta = programs.meta(m.config, plan, ss_cfg, env_steps)
        if save:
          _save(ckpt, env_steps, member_state,
                moves.take(1, replay, i) if save_replay else None, meta)
          w.flush()  # TensorBoard never lags the checkpoint a rerun resumes from
        if snap:
          ckpt_lib.save_snapshot(snaps, env_steps,
                                 simsiam.encoder_variables(member_state.simsiam), meta)
      io_s = time.time() - io_start
      if stop and not last:
        loop.stop(metrics_lib.plural(chunks_done, "chunk"), f"env step {env_steps:,} in "
                  f"{ckpts[0][0].directory}" if not batched else
                  f"env step {env_steps:,} of {n} members in "
                  f"{os.path.commonpath([m.workdir for m in team])}")
    results = [TrainResult(state=moves.take(0, state, i), metrics=h, workdir=m.workdir,
                           config=m.config) for i, (m, h) in enumerate(zip(team, host))]
  took = metrics_lib.format_duration(time.time() - run_start)
  if compile_s is not None:
    took += f" (compile + first chunk {metrics_lib.format_duration(compile_s)})"
  logging.info("Training finished at %s env steps%s in %s; outputs in %s.", f"{env_steps:,}",
               " per member" if batched else "", took,
               workdir if not batched else os.path.commonpath([m.workdir for m in team]))
  return results
