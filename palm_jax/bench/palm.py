"""`python -m palm_jax.bench palm`: PALM environment steps/s with every update on.

    python -m palm_jax.bench palm --config=configs/cifar10.py --num_envs=1024,4096,8192

Per environment count: the config's chunk (`lax.scan` on accelerators, the host loop on
CPU) compiled ahead of time (seconds and XLA's memory plan), then warm-up past the
random-action phase, then `--chunks` timed chunks → env steps/s. A breakdown times three
parts, each jitted alone on the same state with every input — the generator's variables
included — passed as an argument (a closure would embed the weights as constants and time
a different program): `generator` (one `env.step` of all environments), `acting` (encoder
+ SAC policy), `updates` (`updates_per_step` × (replay sample, SimSiam, APT, SAC)).
"""
from __future__ import annotations

import argparse
import ast
import runpy
import time

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.bench import timing
from palm_jax.bench.generator import CIFAR_GENERATOR, int_list


def add_palm_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", default="configs/cifar10.py", help="a PALM config file")
  p.add_argument("--num_envs", type=int_list, default=[256, 1024, 4096, 8192])
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config override, e.g. --set batch_size=1024 (repeatable)")
  p.add_argument("--chunks", type=int, default=3, help="timed chunks after the first")
  p.add_argument("--repeats", type=int, default=5, help="timed calls per breakdown part")


def apply_overrides(config, overrides: list[str]):
  """`["a.b=VALUE", ...]` onto a config (values parsed as Python literals, else strings)."""
  for item in overrides:
    field, _, value = item.partition("=")
    section, _, name = field.rpartition(".")
    target = config
    for part in section.split(".") if section else []:
      target = target[part]
    try:
      target[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      target[name] = value  # a plain string such as a path
  return config


def palm_config(path: str, num_envs: int, overrides: list[str] = ()):
  """The PALM config at `path` (`path:arg` passes a config argument, e.g.
  configs/mini.py:random) for `num_envs` environments, a random-weight generator with the
  published CIFAR-10 shapes in place of a download, no final probe."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  path, _, arg = path.partition(".py:")   # configs/mini.py:random
  config = runpy.run_path(path if path.endswith(".py") else path + ".py")["get_config"](
      *([arg] if arg else []))
  if config.generator in ("", "nvidia:cifar10"):
    config.generator = "random"
    config.generator_kwargs = ml_collections.ConfigDict(CIFAR_GENERATOR)
  apply_overrides(config, list(overrides))
  config.env.num_envs = num_envs
  config.agent.warmup_env_steps = max(config.agent.warmup_env_steps, 2 * num_envs)
  config.replay.capacity = max(config.replay.capacity, 2 * num_envs)
  config.eval.train = ""
  return config


def breakdown_programs(cfg, env, mesh):
  """The three parts as jitted functions of explicit arguments (no captured arrays):
  `generator(state, gen_vars, params, key)`, `acting(state, key)`,
  `updates(state, replay, gen_vars, params, bank, key)`."""
  from palm_jax.palm import step as palm_step  # pylint: disable=import-outside-toplevel

  def generator(state, gen_vars, params, key):
    action = jnp.zeros((cfg.num_envs, env.action_dim), jnp.float32)
    return env.step(key, state.env, action, gen_vars, params)

  def acting(state, key):
    return palm_step.act(cfg, state, key)

  def updates(state, replay, gen_vars, params, bank, key):
    # Unrolled: XLA:CPU is slow on gradient convolutions inside scan (palm_step docs).
    for u in range(cfg.updates_per_step):
      state, _ = palm_step.update(cfg, env, mesh, state, replay, jax.random.fold_in(key, u),
                                  gen_vars, params, bank)
    return state
  return {"generator": jax.jit(generator), "acting": jax.jit(acting),
          "updates": jax.jit(updates)}


def measure_palm(config, *, chunks: int = 3, repeats: int = 5, members: int = 0) -> dict:
  """One row for `config`: env steps/s, ms/iteration, the breakdown, compile seconds and
  XLA's memory plans (chunk/iteration and each part), replay size; or `oom`.

  `members > 0`: a population of that many seeds in one vmapped chunk
  (palm_jax/palm/population.py); env steps/s then counts every member's steps, and the
  breakdown parts (one member's programs) are not timed."""
  from palm_jax.palm import generator, population, programs, validate  # pylint: disable=import-outside-toplevel
  from palm_jax.palm import step as palm_step
  from palm_jax.runtime import sharding
  n = config.env.num_envs
  mesh = sharding.make_mesh()
  validate.validate(config, mesh)
  plan = programs.Plan(config)
  gen = generator.load_env_generator(config, "/tmp")
  env, cfg, init_fn, shardings, _ = programs.build_single(config, mesh, gen, plan)
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  params = programs.env_params_from(config)
  bank = programs.real_bank(config, gen.c_dim, mesh)
  loop = palm_step.resolve_loop(config.loop, mesh.devices.flat[0].platform)
  row = dict(num_envs=n, loop=loop, up_impl=gen.module.up_impl,
             modulation=gen.module.modulation, render_chunk=env.render_chunk,
             members=members)
  if members:
    pop_config = config.copy_and_resolve_references()
    pop_config.population.seeds = tuple(range(members))
    team = population.members(pop_config, "/tmp")
    progs = programs.build(pop_config, mesh, gen, plan, [m.config for m in team],
                           batched=True)
  try:
    start = time.perf_counter()
    if members:
      state, replay = progs.init(gen_vars)
      params, shardings = progs.env_params, progs.shardings
    else:
      state, replay = init_fn(np.asarray(jax.random.PRNGKey(0)), gen_vars, params)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    chunk = palm_step.make_chunk(cfg, env, mesh, plan.chunk, *shardings, loop=loop,
                                 members=members)
    args = (state, replay, gen_vars, params, bank)
    if loop == "scan":
      chunk, compile_s, memory = timing.compile_aot(chunk, *args)
    else:   # the host loop's program is one iteration; its jit call reuses the compile
      _, compile_s, memory = timing.compile_aot(chunk.step, *args)
    start = time.perf_counter()
    for _ in range(-(-plan.warmup_iterations // plan.chunk)):  # warm-up (random actions)
      state, replay, _ = chunk(state, replay, gen_vars, params, bank)
    jax.block_until_ready(state)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(chunks):
      state, replay, metrics = chunk(state, replay, gen_vars, params, bank)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / (chunks * plan.chunk)
    if members:
      return dict(row, oom=False, env_steps_per_s=members * n / seconds,
                  member_env_steps_per_s=n / seconds, ms_per_iteration=seconds * 1e3,
                  init_s=init_s, compile_s=compile_s, warmup_s=warmup_s, memory=memory,
                  peak_bytes=None if memory is None else memory["peak_bytes"],
                  replay_gib=sharding.num_bytes(replay) / 2**30)
    key = jax.random.PRNGKey(1)
    parts = breakdown_programs(cfg, env, mesh)
    part_args = {"generator": (state, gen_vars, params, key), "acting": (state, key),
                 "updates": (state, replay, gen_vars, params, bank, key)}
    part_ms, part_memory = {}, {}
    for name, program in parts.items():
      compiled, _, part_memory[name] = timing.compile_aot(program, *part_args[name])
      part_ms[name] = 1e3 * timing.median_seconds(lambda: compiled(*part_args[name]),
                                                  repeats)
  except Exception as e:  # pylint: disable=broad-except
    if not timing.is_oom(e):
      raise
    return dict(row, oom=True, error=timing.oom_message(e))
  return dict(row, oom=False, env_steps_per_s=n / seconds, ms_per_iteration=seconds * 1e3,
              init_s=init_s, compile_s=compile_s, warmup_s=warmup_s,
              **{f"{k}_ms": v for k, v in part_ms.items()}, memory=memory,
              part_memory=part_memory,
              peak_bytes=None if memory is None else memory["peak_bytes"],
              replay_gib=sharding.num_bytes(replay) / 2**30)


def format_row(row: dict) -> str:
  if row["oom"]:
    return f"num_envs {row['num_envs']:6d}: out of memory ({row['error']})"
  if row.get("members"):
    return (f"population {row['members']} x {row['num_envs']} envs ({row['loop']} loop): "
            f"{row['env_steps_per_s']:10,.0f} env steps/s in all = "
            f"{row['member_env_steps_per_s']:,.0f} per member  {row['ms_per_iteration']:8.2f} "
            f"ms/iteration  replay {row['replay_gib']:.2f} GiB  compile "
            f"{row['compile_s']:.1f} s  memory plan {timing.gib(row['peak_bytes'])}")
  return (f"num_envs {row['num_envs']:6d} ({row['loop']} loop): {row['env_steps_per_s']:10,.0f}"
          f" env steps/s  {row['ms_per_iteration']:8.2f} ms/iteration = generator "
          f"{row['generator_ms']:.2f} + acting {row['acting_ms']:.2f} + updates "
          f"{row['updates_ms']:.2f} ms (alone)  replay {row['replay_gib']:.2f} GiB  compile "
          f"{row['compile_s']:.1f} s  memory plan {timing.gib(row['peak_bytes'])}")


def bench_palm(args: argparse.Namespace) -> list[dict]:
  """Environment steps/s of the full PALM chunk (all updates on) + the per-part breakdown."""
  results = []
  for n in args.num_envs:
    row = measure_palm(palm_config(args.config, n, args.set), chunks=args.chunks,
                       repeats=args.repeats)
    results.append(row)
    print(format_row(row), flush=True)
  return results
