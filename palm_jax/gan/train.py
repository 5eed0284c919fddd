r"""The GAN trainer (the `gan` job): a StyleGAN2-ADA generator trained on a dataset, resumably.

    python -m palm_jax.main --config=configs/gan_cifar10.py --workdir=DIR

Writes into DIR: `checkpoints/` (Orbax; a rerun resumes), `metrics.jsonl` + `tb/` (losses,
scores, augmentation p, kimg, s/kimg, kimg/s, optional FID/KID), `samples/reals.png` and
`samples/fakes<kimg>.png` (rows = classes, G_ema with constant noise), and `generator.npz`
(G_ema in the `load_generator` format, rewritten at every checkpoint and at the end) that a
PALM config takes as `--config.generator=DIR/generator.npz`.
"""
from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from palm_jax.data import frame_stream
from palm_jax.gan import augment as aug
from palm_jax.gan import steps
from palm_jax.models.discriminator import Discriminator
from palm_jax.models.stylegan2 import (Generator, GeneratorHandle, init_generator,
                                       save_generator_npz)
from palm_jax.runtime import host_loop, sharding, wandb_log
from palm_jax.runtime import run_records as preflight
from palm_jax.runtime.checkpoint import Checkpointer, checkpoint_dir
from palm_jax.runtime.errors import require
from palm_jax.runtime.images import make_grid, save_png
from palm_jax.runtime.metrics import MetricWriter, Progress

GENERATOR_FILE = "generator.npz"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def synthetic_dataset(num: int, resolution: int, num_classes: int, seed: int = 0):
  """A toy labelled set for runs without data: class k is a soft disc of hue k/num_classes
  at a random position on a dark background. Returns (uint8 [N, R, R, 3], int64 [N])."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, num)
  yy, xx = np.mgrid[:resolution, :resolution] / (resolution - 1)
  centre = rng.uniform(0.3, 0.7, (num, 2, 1, 1))
  radius = rng.uniform(0.15, 0.3, (num, 1, 1))
  dist = np.hypot(yy - centre[:, 0], xx - centre[:, 1])
  mask = np.clip((radius - dist) * resolution / 2 + 0.5, 0, 1)      # ~2-pixel soft edge
  hue = labels / max(num_classes, 1) * 2 * np.pi
  colour = 0.5 + 0.5 * np.stack([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)], -1)
  images = mask[..., None] * colour[:, None, None, :] * 255
  return images.astype(np.uint8), labels.astype(np.int64)


def load_training_data(config) -> tuple[np.ndarray, np.ndarray | None, int]:
  """`config.data` -> (images uint8 [N, R, R, 3], labels int64 [N] | None, c_dim)."""
  spec, res = config.data, config.resolution
  if spec.startswith("synthetic:"):
    count = spec.split(":", 1)[1]
    require(count.isdigit() and int(count) > 0, f"config.data={spec!r} must be "
            "'synthetic:<number of images>', e.g. 'synthetic:512'.")
    images, labels = synthetic_dataset(int(count), res, config.num_classes or 10, config.seed)
    num_classes = config.num_classes or 10
  else:
    from palm_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
    ds = load_dataset(spec, image_size=res, limit=config.data_limit or None)
    images, labels = ds.images, ds.labels
    num_classes = config.num_classes or ds.num_classes or 0
  if not config.cond:
    return images, None, 0
  require(labels is not None, f"config.cond=True but {spec!r} has no labels; use a "
          "labelled dataset or set --config.cond=False.")
  require(int(labels.max()) < num_classes, f"{spec!r} has label {int(labels.max())} but "
          f"config.num_classes={num_classes}; raise config.num_classes.")
  return images, labels, num_classes


def validate(config, mesh) -> None:
  """User mistakes, checked before anything compiles."""
  b = config.batch_size
  require(b > 0, f"config.batch_size={b} must be positive.")
  sharding.check_divisible("batch_size", b, mesh)
  g = config.mbstd_group
  require(g > 0 and b % g == 0, f"config.mbstd_group={g} must divide config.batch_size={b}; "
          f"use a divisor such as {math.gcd(b, 32)}.")
  require(config.aug in ("ada", "fixed", "noaug"), f"config.aug={config.aug!r} is not "
          "supported; use 'ada', 'fixed' or 'noaug'.")
  if config.aug != "noaug":
    aug.spec_from_name(config.augpipe)
  require(config.dtype in _DTYPES, f"config.dtype={config.dtype!r} is not supported; use "
          f"one of {sorted(_DTYPES)}.")
  require(config.total_kimg > 0, f"config.total_kimg={config.total_kimg} must be positive.")
  r = config.resolution
  require(r >= 8 and r & (r - 1) == 0, f"config.resolution={r} must be a power of two >= 8 "
          "(e.g. 32).")
  ch = _channels(config)
  require(ch in (1, 3), f"config.img_channels={ch} must be 1 (grayscale) or 3 (RGB).")
  require(ch == 3 or config.aug == "noaug", f"config.aug={config.aug!r} with "
          f"config.img_channels={ch}: the augmentation pipeline's colour ops need RGB; use "
          "config.aug='noaug' for grayscale frames.")
  streamed = frame_stream.is_stream_spec(config.data)
  require(not streamed or not config.cond, f"config.data={config.data!r} streams unlabelled "
          "frames; set config.cond=False (an unconditional generator).")
  require(streamed or ch == 3, f"config.img_channels={ch} needs a frame stream "
          "(config.data=framelog:<dir> or dqn_replay:<dir>); image datasets are RGB.")


def _channels(config) -> int:
  return int(config.get("img_channels", 3))


def _kimg_steps(kimg: float, batch: int) -> int:
  return max(1, int(round(kimg * 1000 / batch)))


def build(config, mesh, c_dim: int, key: jax.Array):
  """(step config, generator module, initial state) from the config."""
  dtype = _DTYPES[config.dtype]
  kg, kd = jax.random.split(key)
  g_kwargs = dict(
      z_dim=config.z_dim, c_dim=c_dim, w_dim=config.w_dim, img_resolution=config.resolution,
      img_channels=_channels(config), mapping_kwargs=dict(num_layers=config.map_layers),
      synthesis_kwargs=dict(channel_base=config.channel_base, channel_max=config.channel_max,
                            num_fp16_res=config.num_fp16_res, conv_clamp=config.conv_clamp))
  handle = init_generator(kg, dtype=dtype, **g_kwargs)
  D = Discriminator(
      c_dim=c_dim, img_resolution=config.resolution, img_channels=_channels(config),
      architecture=config.d_architecture,
      channel_base=config.channel_base, channel_max=config.channel_max,
      num_fp16_res=config.num_fp16_res, conv_clamp=config.conv_clamp,
      mbstd_group_size=config.mbstd_group, mbstd_num_channels=config.mbstd_channels,
      mapping_layers=config.d_map_layers, dtype=dtype)
  img = jnp.zeros((config.batch_size, config.resolution, config.resolution,
                   _channels(config)))
  d_params = jax.jit(D.init)(kd, img, jnp.zeros((config.batch_size, c_dim)))["params"]
  augment = None if config.aug == "noaug" else aug.spec_from_name(config.augpipe)
  cfg = steps.StepConfig(
      generator=handle.module, discriminator=D, batch_size=config.batch_size, lr=config.lr,
      beta2=config.beta2, g_reg_interval=config.g_reg_interval,
      d_reg_interval=config.d_reg_interval, r1_gamma=config.r1_gamma,
      pl_weight=config.pl_weight, style_mixing=config.style_mixing,
      ema_kimg=config.ema_kimg, ema_rampup=config.ema_rampup or None, augment=augment,
      ada_target=config.ada_target if config.aug == "ada" else None,
      ada_interval=config.ada_interval, ada_kimg=config.ada_kimg, mirror=config.mirror,
      mesh=mesh, streamed=frame_stream.is_stream_spec(config.data))
  state = steps.init_state(cfg, handle.variables, d_params, augment_p=config.augment_p)
  return cfg, handle.module, jax.device_put(state, sharding.replicated(mesh))


@functools.lru_cache(maxsize=None)
def _sampler(module: Generator):
  return jax.jit(lambda params, buffers, z, c: module.apply(
      {"params": params, "buffers": buffers}, z, c, noise_mode="const"))


def sample_grid(module: Generator, state: steps.GanState, z: np.ndarray, rows: int,
                cols: int) -> np.ndarray:
  """G_ema images [rows, cols, H, W, C] uint8-ready floats; row r shows class r."""
  c_dim = module.config.c_dim
  labels = np.repeat(np.arange(rows), cols)
  c = (np.eye(c_dim, dtype=np.float32)[labels] if c_dim
       else np.zeros((rows * cols, 0), np.float32))
  img = _sampler(module)(state.g_ema_params, state.g_buffers, z, c)
  img = np.asarray(sharding.to_host(img), np.float32)
  return img.reshape((rows, cols) + img.shape[1:])


def export_generator(path: str, module: Generator, state: steps.GanState) -> str:
  """Writes G_ema (+ buffers) in the `load_generator` .npz format (process 0 only)."""
  if jax.process_index() == 0:
    variables = sharding.to_host({"params": state.g_ema_params, "buffers": state.g_buffers})
    save_generator_npz(path, GeneratorHandle(module.clone(dtype=jnp.float32), variables))
  return path


def _fid_metric(config, images):
  if not config.fid.inception:
    return None
  from palm_jax.evaluation.fid import FidKid  # pylint: disable=g-import-not-at-top
  n = min(len(images), config.fid.num_real)
  return FidKid(config.fid.inception, images[:n], batch_size=config.fid.batch_size)


def _finished(workdir: str, out_path: str, total_steps: int) -> bool:
  """True when `workdir` holds an export and a checkpoint at or past `total_steps`."""
  directory = checkpoint_dir(workdir)
  if not (os.path.exists(out_path) and os.path.isdir(directory)):
    return False
  latest = Checkpointer(directory, read_only=True).latest_step()
  return latest is not None and latest >= total_steps


def _log(writer, progress, stats, state, step, batch, mesh, first_log, last, patience):
  """One log row (losses, R1, D scores, s/kimg, ADA p, skipped steps); returns fresh stats.

  Raises when the optimisers skipped `patience` NaN/Inf steps in a row."""
  host = sharding.to_host({"stats": stats, "p": state.ada_p,
                           "skipped": (steps.nonfinite_count(state.g_opt),
                                       steps.nonfinite_count(state.d_opt)),
                           "streak": (state.g_opt.notfinite_count,
                                      state.d_opt.notfinite_count)})
  t_last, step_last = last
  sec_per_kimg = (time.time() - t_last) / max((step - step_last) * batch / 1000, 1e-9)
  row = {k: s / n for k, (s, n) in host["stats"].items() if n > 0}
  row.update(kimg=step * batch / 1000, augment_p=host["p"], sec_per_kimg=sec_per_kimg,
             kimg_per_sec=1.0 / sec_per_kimg, skipped_g=host["skipped"][0],
             skipped_d=host["skipped"][1])
  writer.write_scalars(step, row)
  progress.update(step * batch, timed=not first_log)
  if max(host["streak"]) >= patience:
    raise FloatingPointError(
        f"the last {int(max(host['streak']))} optimiser steps had NaN/Inf gradients "
        f"(step {step}); lower config.lr or raise config.r1_gamma, and rerun to resume "
        "from the last good checkpoint.")
  return jax.device_put(steps.empty_stats(), sharding.replicated(mesh))


def _fid_sampler(config, module, state, c_dim):
  """`sample(start, count) -> uint8 images` of G_ema for FID/KID (fixed latents/labels)."""
  n = config.fid.num_gen
  z = np.random.default_rng(config.seed + 1).standard_normal((n, config.z_dim))
  lab = np.random.default_rng(config.seed + 2).integers(0, max(c_dim, 1), n)

  def sample(start, count):
    c = (np.eye(c_dim, dtype=np.float32)[lab[start:start + count]] if c_dim
         else np.zeros((count, 0), np.float32))
    img = _sampler(module)(state.g_ema_params, state.g_buffers,
                           z[start:start + count].astype(np.float32), c)
    return np.asarray(jnp.clip(img * 127.5 + 128, 0, 255).astype(jnp.uint8))
  return sample


def train_gan(config, workdir: str) -> str:
  """Trains (or resumes) the GAN of `config` in `workdir`; returns the exported G_ema path."""
  mesh = sharding.make_mesh(config.get("num_devices") or None)
  validate(config, mesh)
  wandb = wandb_log.Settings.from_config(config)
  wandb_log.require_installed(wandb)
  batch = config.batch_size
  total_steps = _kimg_steps(config.total_kimg, batch)
  out_path = os.path.join(workdir, GENERATOR_FILE)
  if _finished(workdir, out_path, total_steps):
    logging.info("gan: %s is already trained to %d steps; nothing to do", workdir, total_steps)
    return out_path
  streamed = frame_stream.is_stream_spec(config.data)
  if streamed:   # opened after the restore below: its seed folds in the resumed step
    images, labels, c_dim = None, None, 0
  else:
    images, labels, c_dim = load_training_data(config)
    logging.info("gan: %d training images %s, c_dim=%d, %d devices", len(images),
                 images.shape[1:], c_dim, mesh.size)
  preflight.write_config(workdir, "gan", config)
  key = jax.random.key(config.seed)
  k_init, k_train = jax.random.split(key)
  cfg, module, state = build(config, mesh, c_dim, k_init)
  every = {name: _kimg_steps(config[f"{name}_every_kimg"], batch)
           for name in ("log", "sample", "checkpoint")}
  every["fid"] = _kimg_steps(config.fid.every_kimg, batch)

  ckpt = Checkpointer(checkpoint_dir(workdir), max_to_keep=config.keep_checkpoints)
  writer = MetricWriter(workdir, wandb=wandb)
  restored = ckpt.restore(state)
  step = 0
  if restored is not None:
    step, state, _, _ = restored
    logging.info("gan: resumed from step %d (%.1f kimg)", step, step * batch / 1000)
    writer.truncate_after(step)

  put = lambda x: sharding.host_to_global(x, mesh, sharded=False)  # noqa: E731
  stream = None
  if streamed:
    # A resumed run reseeds the stream with its step: the batches differ from those an
    # uninterrupted run would have drawn (same data distribution); nothing is replayed.
    stream = frame_stream.FrameStream(
        config.data, resolution=config.resolution, batch=batch,
        buffer=int(config.stream_buffer), seed=config.seed * 1_000_003 + step)
    # The reals grid (and FID's reference statistics when on) come from the buffer.
    want = max(config.fid.num_real if config.fid.inception else 0, 256)
    images = stream.sample(min(stream.buffer_size, want))
    labels = None
    logging.info("gan: streaming %s (%d shards, frames %s, a shuffle buffer of %d), %d "
                 "devices", config.data, len(stream.shards), stream.frame_shape,
                 stream.buffer_size, mesh.size)
  d_images = d_labels = None   # streamed: put per step, below
  if stream is None:
    d_images = put(images)
    d_labels = put(np.zeros(len(images), np.int32) if labels is None
                   else labels.astype(np.int32))
  # Conditional: one row per class; unconditional: a square grid.
  rows = min(c_dim if c_dim else config.sample_cols, config.sample_max_rows)
  cols = config.sample_cols
  grid_z = np.random.default_rng(config.seed).standard_normal(
      (rows * cols, config.z_dim)).astype(np.float32)
  grid_z = put(grid_z)
  if jax.process_index() == 0 and step == 0:
    idx = [np.flatnonzero(labels == r) if labels is not None
           else np.arange(r * cols, (r + 1) * cols) % len(images) for r in range(rows)]
    reals = np.stack([images[i[np.arange(cols) % len(i)]] if len(i)
                      else np.zeros((cols,) + images.shape[1:], np.uint8) for i in idx])
    save_png(os.path.join(workdir, "samples", "reals.png"), make_grid(reals))
  fid = _fid_metric(config, images)

  def save(step: int) -> None:
    ckpt.save(step, state=state, meta={"job": "gan", "kimg": step * batch / 1000,
                                       "generator_kwargs": module.config.to_kwargs()})
    export_generator(out_path, module, state)

  def write_samples(step: int) -> None:
    grid = make_grid(sample_grid(module, state, grid_z, rows, cols))
    kimg = step * batch // 1000
    if jax.process_index() == 0:
      save_png(os.path.join(workdir, "samples", f"fakes{kimg:06d}.png"), grid)
    writer.write_image(step, "samples", grid)

  if step == 0:
    write_samples(0)
  progress = Progress(total_steps * batch, start=step * batch, unit="img")
  stats = jax.device_put(steps.empty_stats(), sharding.replicated(mesh))
  t_last, step_last = time.time(), step
  train_step = steps.compiled_step(cfg)
  first_log = True  # its interval includes compilation: kept out of the ETA
  if step < total_steps:
    logging.info("gan: compiling the training step...")
  with host_loop.HostLoop("gan", ckpt=ckpt) as loop:
    loop.own(ckpt, writer)
    while step < total_steps:
      if stream is not None:   # this step's reals: the next shuffled batch of the stream
        d_images, d_labels = put(next(stream)), put(np.zeros(batch, np.int32))
      state, stats = train_step(state, stats, d_images, d_labels, k_train)
      step += 1
      done = step == total_steps
      if host_loop.due(step, every["log"], last=done):
        stats = _log(writer, progress, stats, state, step, batch, mesh, first_log,
                     (t_last, step_last), config.nan_patience)
        t_last, step_last, first_log = time.time(), step, False
      if host_loop.due(step, every["sample"], last=done):
        write_samples(step)
      if fid is not None and host_loop.due(step, every["fid"], last=done):
        writer.write_scalars(step, fid(_fid_sampler(config, module, state, c_dim),
                                       config.fid.num_gen))
      stop = loop.stop_requested()  # SIGTERM/SIGINT: save this step and stop (resumable)
      if host_loop.due(step, every["checkpoint"], last=done) or stop:
        save(step)
      if stop and not done:
        loop.stop(f"{step * batch / 1000:.1f} kimg", f"step {step} in {ckpt.directory}")
    if restored is not None and restored[0] >= total_steps:
      export_generator(out_path, module, state)  # finished earlier, export missing: rewrite
  logging.info("gan: done at %.1f kimg; generator at %s", step * batch / 1000, out_path)
  return out_path
