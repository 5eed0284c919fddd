"""Benchmarks: `python -m palm_jax.bench <subcommand> [--flags]`.

    python -m palm_jax.bench generator --batch_sizes=256,1024,4096,8192 --dtype=bfloat16
    python -m palm_jax.bench palm --config=configs/cifar10.py --num_envs=256,1024,4096,8192

Subcommands live in `SUBCOMMANDS` (name → `Subcommand(add_arguments, run)`); add one by
writing an `add_*_arguments(parser)` and a `bench_*(args)` function.

`generator`: the CIFAR StyleGAN2-ADA config (32×32, `--channels` at every resolution, 2
mapping layers, z/w 512, c_dim 10) with random weights; times the jitted `generate` (after
warm-up, with `block_until_ready`) and prints images/s and TFLOP/s per batch size. FLOPs
count the 3×3 synthesis convolutions only, the up-sampling ones at input resolution as the
official stride-2 transposed convolution computes them (8.0 GFLOP/image at 512 channels);
the issue's 12.8 GFLOP counts them at output resolution (what the folded polyphase
convolution executes). A batch size that runs out of memory is reported and skipped.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Subcommand:
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[argparse.Namespace], Any]
  help: str


def _int_list(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def add_generator_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--batch_sizes", type=_int_list, default=[256, 1024, 4096, 8192])
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
  p.add_argument("--channels", type=int, default=512, help="feature channels at every res")
  p.add_argument("--resolution", type=int, default=32)
  p.add_argument("--z_dim", type=int, default=512)
  p.add_argument("--w_dim", type=int, default=512)
  p.add_argument("--c_dim", type=int, default=10)
  p.add_argument("--mapping_layers", type=int, default=2)
  p.add_argument("--noise_mode", default="const", choices=["const", "random", "none"])
  p.add_argument("--truncation_psi", type=float, default=1.0)
  p.add_argument("--up_impl", default="polyphase", choices=["polyphase", "transpose"])
  p.add_argument("--chunk_size", type=int, default=0, help="render in lax.map chunks (0: off)")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)


def generator_flops_per_image(config, up_at_output: bool = False) -> float:
  """FLOPs of the 3×3 synthesis convolutions for one image: Σ pixels·k²·I·O·2.

  Up-sampling convolutions count at input resolution (official transposed conv) unless
  `up_at_output` (output resolution, i.e. what the folded polyphase form executes).
  """
  ch, k = config.channels, config.kernel_size
  total = 0.0
  for res in config.block_resolutions:
    total += res * res * k * k * ch[res] * ch[res] * 2                    # conv1
    if res > 4:
      pixels = res * res if up_at_output else (res // 2) ** 2
      total += pixels * k * k * ch[res // 2] * ch[res] * 2                # conv0 (up)
  return total


def _peak_memory_bytes() -> int | None:
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # some backends do not implement memory_stats
    return None
  return None if not stats else stats.get("peak_bytes_in_use")


def _is_oom(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def bench_generator(args: argparse.Namespace) -> list[dict]:
  """Times `GeneratorHandle.generate`; prints and returns one dict per batch size."""
  from palm_jax.models.stylegan2 import init_generator  # pylint: disable=import-outside-toplevel
  dtype = jnp.dtype(args.dtype)
  gen = init_generator(
      jax.random.key(args.seed), dtype=dtype, up_impl=args.up_impl, z_dim=args.z_dim,
      c_dim=args.c_dim, w_dim=args.w_dim, img_resolution=args.resolution, img_channels=3,
      mapping_kwargs=dict(num_layers=args.mapping_layers),
      synthesis_kwargs=dict(channel_base=args.channels * args.resolution,
                            channel_max=args.channels, conv_clamp=256))
  flops = generator_flops_per_image(gen.config)
  flops_out = generator_flops_per_image(gen.config, up_at_output=True)
  device = jax.local_devices()[0]
  print(f"generator bench on {device.device_kind} ({jax.default_backend()}), dtype "
        f"{dtype.name}, {args.channels} ch, {args.resolution}x{args.resolution}, "
        f"up_impl={args.up_impl}, chunk_size={args.chunk_size or 'off'}; "
        f"{flops / 1e9:.2f} GFLOP/image (issue's count {flops_out / 1e9:.2f})", flush=True)
  rng = np.random.default_rng(args.seed)
  results = []
  for batch in args.batch_sizes:
    z = jnp.asarray(rng.standard_normal((batch, args.z_dim)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, max(args.c_dim, 1), batch), jnp.int32)
    key = jax.random.key(args.seed + 1)

    def run():
      return gen.generate(z, labels, truncation_psi=args.truncation_psi,
                          noise_mode=args.noise_mode, rng=key,
                          chunk_size=args.chunk_size or None)
    try:
      start = time.perf_counter()
      run().block_until_ready()
      compile_s = time.perf_counter() - start
      for _ in range(max(args.warmup - 1, 0)):
        run().block_until_ready()
      start = time.perf_counter()
      for _ in range(args.iters):
        out = run()
      out.block_until_ready()
      seconds = (time.perf_counter() - start) / args.iters
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      print(f"batch {batch:6d}: out of memory ({str(e).splitlines()[0][:120]})", flush=True)
      results.append(dict(batch=batch, oom=True))
      continue
    imgs = batch / seconds
    peak = _peak_memory_bytes()
    row = dict(batch=batch, oom=False, images_per_s=imgs, tflops=imgs * flops / 1e12,
               tflops_issue_count=imgs * flops_out / 1e12, ms_per_batch=seconds * 1e3,
               first_call_s=compile_s, peak_bytes=peak)
    results.append(row)
    mem = "n/a" if peak is None else f"{peak / 2**30:.2f} GiB"
    print(f"batch {batch:6d}: {imgs:12,.0f} img/s  {row['tflops']:8.2f} TFLOP/s "
          f"({row['tflops_issue_count']:.2f} by the issue's 12.8 count)  "
          f"{row['ms_per_batch']:9.2f} ms/batch  first call {compile_s:6.1f} s  "
          f"peak memory {mem}", flush=True)
  return results


# The CIFAR-10 generator's shapes (NVIDIA's cifar config), random weights: benchmarks need
# no download.
CIFAR_GENERATOR = dict(z_dim=512, c_dim=10, w_dim=512, img_resolution=32, img_channels=3,
                       mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=16384, channel_max=512,
                                             conv_clamp=256))


def add_palm_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", default="configs/cifar10.py", help="a PALM config file")
  p.add_argument("--num_envs", type=_int_list, default=[256, 1024, 4096, 8192])
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config override, e.g. --set batch_size=1024 (repeatable)")
  p.add_argument("--chunks", type=int, default=3, help="timed chunks after the first")
  p.add_argument("--repeats", type=int, default=5, help="timed calls per breakdown part")


def _time(fn, repeats: int) -> float:
  """Median seconds of `fn()` (already compiled) over `repeats` calls."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _palm_config(args, num_envs: int):
  import runpy  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = runpy.run_path(args.config)["get_config"]()
  if config.generator in ("", "nvidia:cifar10"):
    config.generator = "random"
    config.generator_kwargs = ml_collections.ConfigDict(CIFAR_GENERATOR)
  for item in args.set:
    field, _, value = item.partition("=")
    section, _, name = field.rpartition(".")
    target = config
    for part in section.split(".") if section else []:
      target = target[part]
    try:
      target[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      target[name] = value  # a plain string such as a path
  config.env.num_envs = num_envs
  config.agent.warmup_env_steps = max(config.agent.warmup_env_steps, 2 * num_envs)
  config.replay.capacity = max(config.replay.capacity, 2 * num_envs)
  config.eval.train = ""
  return config


def bench_palm(args: argparse.Namespace) -> list[dict]:
  """Environment steps/s of the full PALM chunk (all updates on) + a per-part breakdown.

  Parts, each jitted and timed alone on the same state: `generator` (one `env.step` of all
  environments), `acting` (encoder + SAC policy on all observations), `updates`
  (`updates_per_step` x (replay sample, SimSiam step, APT reward, SAC step)).
  """
  from palm_jax import palm_step, sharding, train  # pylint: disable=import-outside-toplevel
  results = []
  for n in args.num_envs:
    config = _palm_config(args, n)
    mesh = sharding.make_mesh()
    train.validate(config, mesh)
    plan = train.Plan(config)
    gen = train.load_env_generator(config, "/tmp")
    env, cfg, init_fn, shardings, _ = train.build(config, mesh, gen, plan)
    gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
    params = train.env_params_from(config)
    bank = train._real_bank(config, gen.c_dim, mesh)  # pylint: disable=protected-access
    try:
      state, replay = init_fn(np.asarray(jax.random.PRNGKey(0)), gen_vars, params)
      loop = palm_step.resolve_loop(config.loop, jax.devices()[0].platform)
      chunk = palm_step.make_chunk(cfg, env, mesh, plan.chunk, *shardings, loop=loop)
      start = time.perf_counter()
      for _ in range(-(-plan.warmup_iterations // plan.chunk)):  # compile, then warm-up
        state, replay, _ = chunk(state, replay, gen_vars, params, bank)
      jax.block_until_ready(state)
      compile_s = time.perf_counter() - start
      start = time.perf_counter()
      for _ in range(args.chunks):
        state, replay, metrics = chunk(state, replay, gen_vars, params, bank)
      jax.block_until_ready(metrics)
      seconds = (time.perf_counter() - start) / (args.chunks * plan.chunk)
      key = jax.random.PRNGKey(1)
      step = jax.jit(lambda s: env.step(key, s.env, jnp.zeros((n, env.action_dim)),
                                        gen_vars, params))
      act = jax.jit(lambda s: palm_step._act(cfg, s, key))  # pylint: disable=protected-access

      def one_update(s, r):  # unrolled: XLA:CPU is slow on gradient convs inside scan
        for u in range(cfg.updates_per_step):
          s, _ = palm_step._update(cfg, env, mesh, s, r, jax.random.fold_in(key, u),  # pylint: disable=protected-access
                                   gen_vars, params, bank)
        return s
      update = jax.jit(one_update)
      parts = {"generator": _time(lambda: step(state), args.repeats),
               "acting": _time(lambda: act(state), args.repeats),
               "updates": _time(lambda: update(state, replay), args.repeats)}
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      print(f"num_envs {n:6d}: out of memory ({str(e).splitlines()[0][:120]})", flush=True)
      results.append(dict(num_envs=n, oom=True))
      continue
    row = dict(num_envs=n, oom=False, env_steps_per_s=n / seconds, ms_per_iteration=seconds * 1e3,
               warmup_s=compile_s, **{f"{k}_ms": v * 1e3 for k, v in parts.items()},
               replay_gib=sharding.num_bytes(replay) / 2**30, peak_bytes=_peak_memory_bytes())
    results.append(row)
    row["loop"] = loop
    print(f"num_envs {n:6d} ({loop} loop): {row['env_steps_per_s']:10,.0f} env steps/s  "
          f"{row['ms_per_iteration']:8.2f} ms/iteration = generator {row['generator_ms']:.2f}"
          f" + acting {row['acting_ms']:.2f} + updates {row['updates_ms']:.2f} ms (alone)  "
          f"replay {row['replay_gib']:.2f} GiB  compile+warm-up {compile_s:.1f} s", flush=True)
    state = replay = None  # free the device buffers before the next size
  return results


SUBCOMMANDS: dict[str, Subcommand] = {
    "generator": Subcommand(add_generator_arguments, bench_generator,
                            "StyleGAN2-ADA generator throughput (CIFAR config)"),
    "palm": Subcommand(add_palm_arguments, bench_palm,
                       "PALM env steps/s with all updates on, and a breakdown"),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m palm_jax.bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="subcommand", required=True)
  for name, command in SUBCOMMANDS.items():
    command.add_arguments(sub.add_parser(name, help=command.help))
  return parser.parse_args(argv)


def main(argv: list[str] | None = None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return SUBCOMMANDS[args.subcommand].run(args)


if __name__ == "__main__":
  main()
