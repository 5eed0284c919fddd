"""`python -m palm_jax.bench gan`: seconds per kimg of GAN training (NVIDIA's cifar config).

    python -m palm_jax.bench gan --config=configs/gan_cifar10.py [--set batch_size=64]

Builds the config's GAN (`palm_jax.gan.train.build`) on synthetic images (`synthetic:N`,
the same shapes as CIFAR-10: no download), compiles one training step ahead of time
(seconds, XLA's memory plan), runs warm-up steps so the lazy regularisers (`lax.cond`)
have run, then times `--steps` steps → s/kimg = seconds / (steps × batch / 1000).
"""
from __future__ import annotations

import argparse
import runpy
import time

import jax
import numpy as np

from palm_jax.bench import timing
from palm_jax.bench.palm import apply_overrides


def add_gan_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", default="configs/gan_cifar10.py", help="a GAN config file")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config override, e.g. --set batch_size=64 (repeatable)")
  p.add_argument("--steps", type=int, default=20, help="timed training steps")
  p.add_argument("--images", type=int, default=2048, help="synthetic training images")


def gan_config(path: str, overrides=(), images: int = 2048):
  config = runpy.run_path(path)["get_config"]()
  config.data = f"synthetic:{images}"
  return apply_overrides(config, list(overrides))


def measure_gan(config, *, steps: int = 20) -> dict:
  """One row: s/kimg, ms/step, compile seconds, XLA's memory plan of the step; or oom."""
  from palm_jax.gan import steps as gan_steps  # pylint: disable=import-outside-toplevel
  from palm_jax.gan import train as gan_train
  from palm_jax.runtime import sharding  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh(config.get("num_devices") or None)
  gan_train.validate(config, mesh)
  images, labels, c_dim = gan_train.load_training_data(config)
  row = dict(batch=config.batch_size, dtype=config.dtype, resolution=config.resolution,
             channel_max=config.channel_max)
  try:
    cfg, _, state = gan_train.build(config, mesh, c_dim, jax.random.key(config.seed))
    put = lambda x: sharding.host_to_global(x, mesh, sharded=False)  # noqa: E731
    d_images = put(images)
    d_labels = put(np.zeros(len(images), np.int32) if labels is None
                   else labels.astype(np.int32))
    stats = put(gan_steps.empty_stats())
    key = jax.random.key(config.seed + 1)
    step = gan_steps.compiled_step(cfg)
    step, compile_s, memory = timing.compile_aot(step, state, stats, d_images, d_labels, key)
    # Warm-up past the lazy regularisers' first run (R1 every d_reg_interval steps).
    warm = max(2, int(config.get("d_reg_interval", 16) or 16) + 1)
    for _ in range(warm):
      state, stats = step(state, stats, d_images, d_labels, key)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
      state, stats = step(state, stats, d_images, d_labels, key)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / steps
  except Exception as e:  # pylint: disable=broad-except
    if not timing.is_oom(e):
      raise
    return dict(row, oom=True, error=timing.oom_message(e))
  return dict(row, oom=False, s_per_kimg=seconds * 1000 / config.batch_size,
              ms_per_step=seconds * 1e3, compile_s=compile_s, memory=memory,
              peak_bytes=None if memory is None else memory["peak_bytes"])


def format_row(row: dict) -> str:
  if row["oom"]:
    return f"gan batch {row['batch']}: out of memory ({row['error']})"
  return (f"gan batch {row['batch']} ({row['dtype']}, {row['channel_max']} ch): "
          f"{row['s_per_kimg']:.2f} s/kimg  {row['ms_per_step']:.1f} ms/step  compile "
          f"{row['compile_s']:.1f} s  memory plan {timing.gib(row['peak_bytes'])}")


def bench_gan(args: argparse.Namespace) -> list[dict]:
  row = measure_gan(gan_config(args.config, args.set, args.images), steps=args.steps)
  print(format_row(row), flush=True)
  return [row]
