r"""Population training: N PALM members in one vmapped program (`config.population`).

    python -m palm_jax.main --config=configs/mini.py --workdir=runs/pop \
        --config.population.seeds='(0,1,2)' [--config.population.alpha='(0.25,0.5,0.75)']

One member per seed (optionally with its own `env.alpha` / `env.beta`: `EnvParams` are
traced, so they vary inside one program). Each member has its own state, replay, keys and
metrics; they share the generator, the compiled chunk and the devices: the chunk is
`palm_step.make_chunk(..., members=N)`, the iteration `jax.vmap`ped over a leading member
axis (environments stay split over `data` on the axis after it). This is how seeds of a
small config fill an accelerator that one member would leave idle.

Every member is a normal palm run in `WORKDIR/members/<name>/` (`seed0`, or
`seed0_alpha0.25_beta0.9` when those vary; `config.population.workdirs` places them
elsewhere, as a sweep with `population=True` does): its own `config_palm.json` (the single-run
config that reproduces it), checkpoints, snapshots, `metrics.jsonl`, `tb/`, rollouts and
final probe, so `linear_eval`, `ood_eval`, `coverage` and sweeps read it unchanged. Member
i equals the single run of its config up to float rounding of batched kernels
(tests/test_population.py). A generator drawn at random (`generator="random"`) or trained
first (`generator=""`) is made once and written to a file every member's config names, so
all members play in the same world and each config still reproduces its member alone.
Members start, checkpoint and resume together; the experience log, offline pairs and
passive PALM run singly.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from jax.sharding import NamedSharding, PartitionSpec as P

from palm_jax.palm import budget
from palm_jax.runtime import files
from palm_jax.runtime import checkpoint as ckpt_lib
from palm_jax.palm import experience_log, step as palm_step
from palm_jax.runtime import metrics as metrics_lib, preemption, run_records as preflight
from palm_jax.runtime import sharding
from palm_jax.palm import trainer as train
from palm_jax.envs import frame_stack_env
from palm_jax.runtime.errors import require
from palm_jax.palm import offline
from palm_jax.representation import simsiam

MEMBERS_DIR = "members"


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  config: object   # the single-run config of this member (population fields cleared)
  workdir: str


def enabled(config) -> bool:
  """Whether `config` asks for a population (`config.population.seeds` non-empty)."""
  pop = config.get("population")
  return bool(pop is not None and len(pop.get("seeds", ())))


def _values(config, field: str, n: int) -> list:
  given = tuple(config.population.get(field, ()))
  require(len(given) in (0, n), f"config.population.{field}={given} must be empty (every "
          f"member uses config.env.{field}={config.env[field]}) or give one value for each of "
          f"the {n} seeds.")
  return list(given) if given else [config.env[field]] * n


def members(config, workdir: str, generator: str | None = None) -> list[Member]:
  """The members' names, single-run configs and workdirs (`generator`: the file every
  member's config names instead of `config.generator`)."""
  seeds = list(config.population.seeds)
  require(all(isinstance(s, int) and not isinstance(s, bool) for s in seeds),
          f"config.population.seeds={tuple(seeds)} must be integers, e.g. (0, 1, 2).")
  alphas, betas = _values(config, "alpha", len(seeds)), _values(config, "beta", len(seeds))
  vary = [f for f in ("alpha", "beta") if len(config.population.get(f, ()))]
  dirs = tuple(config.population.get("workdirs", ()))
  require(len(dirs) in (0, len(seeds)), f"config.population.workdirs has {len(dirs)} entries "
          f"for {len(seeds)} seeds; give one workdir per seed or none (WORKDIR/members/).")
  out = []
  for i, (seed, alpha, beta) in enumerate(zip(seeds, alphas, betas)):
    name = f"seed{seed}" + "".join(f"_{f}{v:g}" for f, v in zip(("alpha", "beta"),
                                                                 (alpha, beta)) if f in vary)
    c = config.copy_and_resolve_references()
    c.seed, c.env.alpha, c.env.beta = seed, float(alpha), float(beta)
    c.population.seeds, c.population.alpha, c.population.beta = (), (), ()
    if "workdirs" in c.population:
      c.population.workdirs = ()
    if generator is not None:
      c.generator = generator
    out.append(Member(name, c, os.path.abspath(dirs[i]) if dirs else
                      os.path.join(workdir, MEMBERS_DIR, name)))
  names = [m.name for m in out]
  require(len(set(names)) == len(names), f"config.population gives the member names {names} "
          "more than once; make every (seed, alpha, beta) distinct.")
  require(len({m.workdir for m in out}) == len(out), "config.population.workdirs names a "
          "directory twice; every member needs its own.")
  return out


def validate(config, mesh, workdir: str) -> list[Member]:
  """Population mistakes, and every member's own config checks, before anything compiles."""
  require(config.get("job", "palm") == "palm" and not offline.is_offline(config),
          f"config.population runs palm members that play; config.job={config.get('job')!r} "
          f"with config.simsiam.pairs={config.simsiam.pairs!r} runs without an environment: "
          "run those members one by one (a sweep over seeds).")
  require(not experience_log.enabled(config), "config.experience.log=True is not supported "
          "with config.population; log the experience of a single run.")
  out = members(config, workdir)
  for m in out:
    train.validate(m.config, mesh)
  return out


def _stacked(tree, mesh):
  """Shardings with a leading, unsplit member axis."""
  return jax.tree.map(lambda s: NamedSharding(mesh, P(None, *s.spec)), tree)


def _shared_generator(config, workdir: str):
  """The population's generator, and the file members' configs name (None: as given)."""
  name = config.generator
  if name not in ("random", ""):
    return train.load_env_generator(config, workdir), None
  if name == "":  # trained first, into WORKDIR/gan, exported to WORKDIR/gan/generator.npz
    train.load_env_generator(config, workdir)
    from palm_jax.gan import train as gan_train  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, "gan", gan_train.GENERATOR_FILE)
  else:  # drawn once from the population's own seed, as a single run would draw it
    from palm_jax.models import stylegan2  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, "generator.npz")
    if jax.process_index() == 0 and not os.path.exists(path):
      stylegan2.save_generator_npz(path, stylegan2.init_generator(
          jax.random.PRNGKey(config.seed + 1), **config.generator_kwargs.to_dict()))
    sharding.wait_for_all_processes("population generator")
  file_config = config.copy_and_resolve_references()
  file_config.generator = path
  return train.load_env_generator(file_config, workdir), path


def _restore(ckpts, members_, abstract_state, abstract_replay, save_replay):
  """Every member's checkpoint, or None when none has one; members resume together."""
  restored = [c.restore(abstract_state, replay_template=abstract_replay if save_replay
                        else None) for c, _ in ckpts]
  have = [m.name for m, r in zip(members_, restored) if r is not None]
  if not have:
    return None
  steps = {m.name: r[0] for m, r in zip(members_, restored) if r is not None}
  require(len(have) == len(members_) and len(set(steps.values())) == 1,
          f"the population's members are at different checkpoints ({steps}; none for "
          f"{[m.name for m in members_ if m.name not in steps] or 'no member'}); members "
          "resume together: move the members/ folder aside to start again, or rerun each "
          "member's config_palm.json as a single run.")
  return restored


class Programs(NamedTuple):
  env: Any
  step_cfg: palm_step.StepConfig
  init_fn: Any          # one member's jitted init (train.build)
  single_sh: tuple      # one member's (state, replay) shardings
  pop_sh: tuple         # the population's: a leading, unsplit member axis
  ss_cfg: simsiam.SimSiamConfig
  member_params: list   # each member's EnvParams
  env_params: Any       # EnvParams of [n] arrays (alpha, beta, ... per member)
  keys: np.ndarray      # uint32 [n, 2]: each member's root key, PRNGKey(seed)
  pop_init: Any         # jitted (keys, gen_vars, env_params) -> stacked (state, replay)


def build(config, mesh, gen, plan: train.Plan, team: list[Member]) -> Programs:
  """`train.build` for one member, and its population versions (also the bench's)."""
  env, step_cfg, init_fn, single_sh, ss_cfg = train.build(config, mesh, gen, plan)
  pop_sh = tuple(_stacked(s, mesh) for s in single_sh)
  member_params = [train.env_params_from(m.config) for m in team]
  env_params = jax.tree.map(  # one value per member: [n] float32 / int32 leaves
      lambda *xs: np.asarray(xs, np.int32 if isinstance(xs[0], int) else np.float32),
      *member_params)
  keys = np.stack([np.asarray(jax.random.PRNGKey(m.config.seed)) for m in team])
  pop_init = jax.jit(jax.vmap(init_fn, in_axes=(0, None, 0)), out_shardings=pop_sh)
  return Programs(env, step_cfg, init_fn, single_sh, pop_sh, ss_cfg, member_params,
                  env_params, keys, pop_init)


def train_population(config, workdir: str) -> list[train.TrainResult]:
  """Runs (or resumes) every member of `config.population` together in `workdir`."""
  mesh = sharding.make_mesh()
  train.validate(config, mesh)
  validate(config, mesh, workdir)
  plan = train.Plan(config)
  ckpt_lib.validate_snapshot_steps(config, plan.chunk * plan.env_steps_per_iteration,
                                   plan.total_iterations * plan.env_steps_per_iteration)
  budget.log_budget(config, plan.total_iterations, plan.warmup_iterations)
  eval_data = preflight.eval_datasets(config)
  gen, gen_file = _shared_generator(config, workdir)
  team = members(config, workdir, gen_file)
  n = len(team)
  built = build(config, mesh, gen, plan, team)
  env, step_cfg, init_fn, single_sh, pop_sh, ss_cfg = (
      built.env, built.step_cfg, built.init_fn, built.single_sh, built.pop_sh, built.ss_cfg)
  member_params, env_params, keys, pop_init = (
      built.member_params, built.env_params, built.keys, built.pop_init)
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  real_bank = train._real_bank(config, gen.c_dim, mesh)  # pylint: disable=protected-access
  allow_change = flags.FLAGS.is_parsed() and flags.FLAGS["allow_config_change"].value \
      if "allow_config_change" in flags.FLAGS else False
  for m in team:  # the checkpoints are the members': so is the resume check
    preflight.check_resume_config(m.workdir, "palm", m.config, allow_change)
  preflight.write_config(workdir, "palm", config)
  for m in team:
    preflight.write_config(m.workdir, "palm", m.config)
  logging.info("Population of %d members (%s): %d environments each on %d devices.", n,
               ", ".join(m.name for m in team), config.env.num_envs, mesh.size)

  stack_state = jax.jit(lambda *ts: jax.tree.map(lambda *xs: jnp.stack(xs), *ts),
                        out_shardings=pop_sh[0])
  stack_replay = jax.jit(lambda *ts: jax.tree.map(lambda *xs: jnp.stack(xs), *ts),
                         out_shardings=pop_sh[1])
  take_state = jax.jit(lambda t, i: jax.tree.map(lambda x: x[i], t),
                       out_shardings=single_sh[0])
  take_replay = jax.jit(lambda t, i: jax.tree.map(lambda x: x[i], t),
                        out_shardings=single_sh[1])
  ckpts = [ckpt_lib.checkpointers(m.workdir, m.config) for m in team]
  save_replay = bool(config.checkpoint.save_replay)
  abstract_state, abstract_replay = jax.eval_shape(init_fn, keys[0], gen_vars,
                                                   member_params[0])
  files.check_free_space(ckpts[0][0].directory, n * ckpt_lib.tree_bytes(
      abstract_state, abstract_replay if save_replay else None),
      f"a checkpoint of each of the {n} members")
  restored = _restore(ckpts, team, abstract_state, abstract_replay, save_replay)
  if restored is None:
    state, replay = pop_init(keys, gen_vars, env_params)
  else:
    state = stack_state(*[r[1] for r in restored])
    if all(r[2] is not None for r in restored):
      replay = stack_replay(*[r[2] for r in restored])
    else:  # saved without replays: empty ones (updates wait until they refill)
      _, replay = pop_init(keys, gen_vars, env_params)
    logging.info("Resumed the population from its checkpoints at env step %s.",
                 f"{restored[0][0]:,}")
  iteration = int(sharding.to_host(state.iteration)[0])
  env_steps = iteration * plan.env_steps_per_iteration

  writers = [metrics_lib.MetricWriter(m.workdir) for m in team]
  for w in writers:
    w.truncate_after(env_steps)
  total_steps = plan.total_iterations * plan.env_steps_per_iteration
  progress = metrics_lib.Progress(total_steps, start=env_steps, unit="member env steps")
  loop = palm_step.resolve_loop(config.loop, jax.devices()[0].platform)
  chunk_fn = palm_step.make_chunk(step_cfg, env, mesh, plan.chunk, *pop_sh, loop=loop,
                                  members=n)
  rollout_fn = palm_step.make_rollout(env, config.log.rollout_rows,
                                      config.env.episode_length, config.agent.action_source)
  if config.env.get("frame_stack", 0):  # pictures show each stack's newest frame (train.py)
    rollout_fn = frame_stack_env.newest_frames(rollout_fn)
  explore = train._explore_fn(config, env, mesh)  # pylint: disable=protected-access
  explore_fn = (jax.jit(jax.vmap(explore, in_axes=(0, 0, None, 0, 0)))
                if explore is not None else None)
  host = [dict() for _ in team]
  chunks_done = iteration // plan.chunk
  run_start, compile_s = time.time(), None
  if iteration < plan.total_iterations:
    logging.info("Compiling the population's training chunk (%d iterations)...", plan.chunk)
  while iteration < plan.total_iterations:
    start = time.time()
    state, replay, chunk_metrics = chunk_fn(state, replay, gen_vars, env_params, real_bank)
    iteration += plan.chunk
    chunks_done += 1
    env_steps = iteration * plan.env_steps_per_iteration
    if explore_fn is not None:
      keys_e = np.stack([np.asarray(jax.random.fold_in(
          jax.random.PRNGKey(m.config.seed + 7919), env_steps)) for m in team])
      chunk_metrics = dict(chunk_metrics, **explore_fn(state, replay, gen_vars, env_params,
                                                       keys_e))
    fetched = sharding.to_host(chunk_metrics)
    host = [{k: float(v[i]) for k, v in fetched.items()} for i in range(n)]
    for h, (ckpt, _) in zip(host, ckpts):
      train._check_finite(h, env_steps, ckpt)  # pylint: disable=protected-access
    first = compile_s is None
    if first:
      compile_s = time.time() - start
      logging.info("Compiled and ran the population's first chunk in %s.",
                   metrics_lib.format_duration(compile_s))
    rate = progress.update(env_steps, timed=not first)["rate"]
    last = iteration >= plan.total_iterations
    rollouts = config.log.rollout_every_chunks and (
        chunks_done % config.log.rollout_every_chunks == 0 or last)
    stop = preemption.requested()
    save = chunks_done % config.checkpoint.every_chunks == 0 or last or stop
    snap = ckpts[0][1] is not None and ckpt_lib.snapshot_due(
        config, env_steps - plan.chunk * plan.env_steps_per_iteration, env_steps)
    for i, (m, h, w, (ckpt, snaps)) in enumerate(zip(team, host, writers, ckpts)):
      if math.isfinite(rate):
        h["perf/env_steps_per_s"] = rate
        h["perf/population_env_steps_per_s"] = rate * n
      h["perf/chunk_seconds"] = time.time() - start
      w.write_scalars(env_steps, h)
      if not (rollouts or save or snap):
        continue
      member_state = take_state(state, i)
      if rollouts:
        train._write_rollouts(  # pylint: disable=protected-access
            m.workdir, w, rollout_fn, member_state, gen_vars, member_params[i], env_steps)
      if save:
        train._save(ckpt, env_steps, member_state,  # pylint: disable=protected-access
                    take_replay(replay, i) if save_replay else None, m.config, ss_cfg,
                    save_replay)
        w.flush()
      if snap:
        ckpt_lib.save_snapshot(snaps, env_steps, simsiam.encoder_variables(
            member_state.simsiam), train._meta(m.config, ss_cfg, env_steps))  # pylint: disable=protected-access
    if stop and not last:
      _close(ckpts, writers)
      raise preemption.stopped(f"{chunks_done} chunks", f"env step {env_steps:,} of "
                               f"{n} members in {_where(team)}")
  results = []
  for i, (m, h) in enumerate(zip(team, host)):
    member_state = take_state(state, i)
    if eval_data is not None:
      h.update(train._final_linear_eval(  # pylint: disable=protected-access
          m.config, m.workdir, member_state, ss_cfg, env_steps, mesh, eval_data))
    results.append(train.TrainResult(state=member_state, metrics=h))
  _close(ckpts, writers)
  logging.info("Population finished at %s env steps per member in %s; members in %s.",
               f"{env_steps:,}", metrics_lib.format_duration(time.time() - run_start),
               _where(team))
  return results


def _where(team: list[Member]) -> str:
  return os.path.commonpath([m.workdir for m in team]) if len(team) > 1 else team[0].workdir


def _close(ckpts, writers) -> None:
  for ckpt, snaps in ckpts:
    ckpt.close()
    if snaps is not None:
      snaps.close()
  for w in writers:
    w.close()


def run(config, workdir: str) -> None:
  train_population(config, workdir)
