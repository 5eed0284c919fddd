"""SimSiam on a real dataset, without the environment: the pair sources that need no play.

When SimSiam's positive pairs do not come from the agent's experience there is nothing for
the environment, SAC or the replay to do, so `config.job = "palm"` with `simsiam.pairs` in
`OFFLINE_PAIRS` runs this small loop instead of the PALM loop (`palm_jax/palm/trainer.py`):

  real_aug   x1 = aug(x), x2 = aug'(x) for ONE real image x drawn uniformly from
             `simsiam.real_data` (SimSiam's own CIFAR baseline, Chen & He 2021, Sec. 4:
             two random views of an image; no labels used). Augmentations are always on.
  real       x1, x2 = two real images of one class c, c uniform over the classes
             ("static PALM": same-class pairs without the generator; uses labels;
             augmentations only when `simsiam.augment`).

The budget is PALM's (`programs.Plan`), so a static or real_aug run of a config does exactly
the SimSiam updates the PALM run of that config would do: iterations after warm-up ×
`updates_per_step`, same batch, same learning-rate schedule. Checkpoints are keyed by the
same "environment step" (iteration × `env.num_envs`) and use the PALM layout
(`DIR/checkpoints/<step>/{state, encoder, meta}` plus `DIR/snapshots/<step>/` for
`checkpoint.snapshot_steps`), so `linear_eval`, `ood_eval` and `checkpoint.restore_encoder`
read them unchanged; `metrics.jsonl` / `tb/` hold `simsiam/*` per chunk.

An update is one jitted, control-flow-free program (pairs drawn on the device from the
replicated image bank, then `simsiam_update`); the host loop dispatches them without
syncing until the end of a chunk.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from palm_jax.representation import pairs as pairs_lib
from palm_jax.representation import simsiam
from palm_jax.representation.augment import augment
from palm_jax.runtime import checkpoint as ckpt_lib
from palm_jax.runtime import host_loop, sharding, wandb_log
from palm_jax.runtime import metrics as metrics_lib
from palm_jax.runtime.errors import require

OFFLINE_PAIRS = ("real", "real_aug")


def is_offline(config) -> bool:
  """Whether `config`'s SimSiam pairs need no environment (see the module doc)."""
  return config.simsiam.pairs in OFFLINE_PAIRS


def draw_pairs(key, source: str, bank: pairs_lib.RealBank, batch_size: int):
  """Positive pairs uint8 `[B, H, W, C]` ×2 from the real bank (before augmentation).

  real_aug: the same image twice (the two views differ only by their augmentations).
  real:     two images of one uniformly drawn class (`pairs.real_pairs`).
  """
  k_class, k_pick = jax.random.split(key)
  if source == "real_aug":
    n = bank.images.shape[0]
    idx = jax.random.randint(k_pick, (batch_size,), 0, n)
    x = bank.images[idx]
    return x, x
  labels = jax.random.randint(k_class, (batch_size,), 0, bank.count.shape[0])
  return pairs_lib.real_pairs(k_pick, bank, labels)


def make_update(source: str, batch_size: int, mesh, state_sharding):
  """Jitted `update(ss_state, bank, key) -> (ss_state, metrics)`; the state is donated."""
  data = sharding.data_sharded(mesh)
  rep = sharding.replicated(mesh)

  def update(ss_state, bank, key):
    k_pairs, k_aug, k_ss = jax.random.split(key, 3)
    x1, x2 = draw_pairs(k_pairs, source, bank, batch_size)
    x1 = jax.lax.with_sharding_constraint(x1, data)
    x2 = jax.lax.with_sharding_constraint(x2, data)
    if source == "real_aug" and not ss_state.config.augment:
      # Two views of one image are only a positive pair once augmented; `simsiam_update`
      # augments itself when `config.augment`, so only the other case is done here.
      k1, k2 = jax.random.split(k_aug)
      x1, x2 = augment(k1, x1), augment(k2, x2)
    return simsiam.simsiam_update(ss_state, x1, x2, k_ss)

  return jax.jit(update, in_shardings=(state_sharding, rep, rep),
                 out_shardings=(state_sharding, rep), donate_argnums=(0,))


def load_bank(config, mesh) -> pairs_lib.RealBank:
  """The real images of `simsiam.real_data` on the device, grouped by class for `real`."""
  from palm_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
  source = config.simsiam.pairs
  require(bool(config.simsiam.real_data),
          f"config.simsiam.pairs={source!r} needs config.simsiam.real_data, a dataset spec "
          "such as npz:../shared/data/cifar_subset/cifar10_train_partial.npz.")
  ds = load_dataset(config.simsiam.real_data)
  if source == "real_aug" or ds.labels is None:
    require(source == "real_aug", f"config.simsiam.real_data={config.simsiam.real_data!r} "
            "has no labels, which pairs='real' (same-class pairs) needs; use a labelled "
            "dataset or pairs='real_aug'.")
    n = ds.images.shape[0]
    bank = pairs_lib.RealBank(images=np.asarray(ds.images), start=np.zeros((1,), np.int32),
                              count=np.full((1,), n, np.int32))
  else:
    num_classes = int(np.max(ds.labels)) + 1
    bank = pairs_lib.make_real_bank(ds.images, ds.labels, num_classes)
  require(bank.images.shape[-1] == 3, f"config.simsiam.real_data has {bank.images.shape[-1]}"
                                      "-channel images; the ResNet encoder needs RGB.")
  return sharding.host_to_global(bank, mesh, sharded=False)


def train_offline(config, workdir: str, plan, cadence, ss_cfg, *, meta_fn):
  """Runs (or resumes) offline SimSiam; returns `(ss_state, last host metrics)`.

  `plan`, `cadence`: the run's `palm.config.Plan` / `Cadence`; `ss_cfg`: its
  `SimSiamConfig` (schedule over `plan.total_updates`); `meta_fn(env_steps)` the
  checkpoint meta (`programs.meta`, so the layout is the PALM loop's own).
  """
  mesh = sharding.make_mesh()
  sharding.check_divisible("batch_size", config.batch_size, mesh)
  bank = load_bank(config, mesh)
  update = make_update(config.simsiam.pairs, config.batch_size, mesh,
                       sharding.replicated(mesh))
  logging.info("Offline SimSiam (pairs=%s): %d images, %d updates of %d.",
               config.simsiam.pairs, bank.images.shape[0], plan.total_updates,
               config.batch_size)
  return run_updates(config, workdir, plan, cadence, ss_cfg,
                     frame_shape=bank.images.shape[1:],
                     update=lambda ss_state, it, u, key: update(ss_state, bank, key),
                     meta_fn=meta_fn)


def run_updates(config, workdir: str, plan, cadence, ss_cfg, *, frame_shape, update,
                meta_fn):
  """The SimSiam-only host loop shared by offline and passive PALM (no env, SAC, replay).

  `update(ss_state, iteration, u, key) -> (ss_state, metrics)` is update `u` of PALM
  iteration `iteration` (`key = fold_in(fold_in(root, iteration), u)`): updates are
  numbered like the PALM loop's, so a resume recomputes the same ones. Iterations below
  `plan.warmup_iterations` do no updates in PALM (its warm-up); here they are skipped
  outright (nothing to wait for without play). Chunks end where the PALM loop's do; the
  checkpoint/snapshot layout is the PALM loop's; SIGTERM/SIGINT saves at the end of the
  chunk and stops (`runtime.host_loop`); returns `(ss_state, last host metrics)`.
  """
  mesh = sharding.make_mesh()
  root = jax.random.PRNGKey(config.seed)
  rep = sharding.replicated(mesh)
  init = jax.jit(lambda k: simsiam.init_simsiam(k, ss_cfg, tuple(frame_shape),
                                                total_steps=ss_cfg.total_steps),
                 out_shardings=rep)
  # The same key split as the PALM loop's init, so both start from the same encoder.
  k_ss = jax.random.split(root, 4)[1]
  ckpt, snaps = ckpt_lib.checkpointers(workdir, cadence.keep, cadence.snapshot_steps)
  restored = ckpt.restore(jax.eval_shape(init, k_ss))
  if restored is None:
    ss_state, iteration = init(k_ss), 0
  else:
    env_steps, ss_state, _, _ = restored
    iteration = env_steps // plan.env_steps_per_iteration
    logging.info("Resumed SimSiam at env step %s.", f"{env_steps:,}")
  iteration = max(iteration, plan.warmup_iterations)  # no play, so no warm-up to wait for
  average = jax.jit(lambda ms: jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *ms))
  upd = plan.updates_per_step
  host, chunks_done = {}, 0
  with host_loop.HostLoop("SimSiam", ckpt=ckpt) as loop:
    writer = loop.own(metrics_lib.MetricWriter(
        workdir, wandb=wandb_log.Settings.from_config(config)))
    loop.own(ckpt, snaps)
    writer.truncate_after(iteration * plan.env_steps_per_iteration)
    ckpt_lib.set_aside_stale_snapshots(snaps, iteration * plan.env_steps_per_iteration)
    while iteration < plan.total_iterations:
      start, per_update = time.time(), []
      prev_steps = iteration * plan.env_steps_per_iteration
      # Chunks end where the PALM loop's do (multiples of `plan.chunk` iterations), so
      # checkpoint and snapshot steps mean the same in both loops.
      end = min((iteration // plan.chunk + 1) * plan.chunk, plan.total_iterations)
      for it in range(iteration, end):
        for u in range(upd):
          key = jax.random.fold_in(jax.random.fold_in(root, it), u)
          ss_state, m = update(ss_state, it, u, key)
          per_update.append(m)
      iteration, chunks_done = end, chunks_done + 1
      env_steps = iteration * plan.env_steps_per_iteration
      host = {f"simsiam/{k}": float(v)
              for k, v in sharding.to_host(average(per_update)).items()}
      host["perf/chunk_seconds"] = time.time() - start
      host["perf/updates_per_s"] = len(per_update) / host["perf/chunk_seconds"]
      loop.check_finite(host, step_text=f"env step {env_steps:,}",
                        hint="lower simsiam.base_lr")
      writer.write_scalars(env_steps, host)
      encoder = simsiam.encoder_variables(ss_state)
      last = iteration >= plan.total_iterations
      stop = loop.stop_requested()
      if host_loop.due(chunks_done, cadence.checkpoint_every_chunks, last=last) or stop:
        ckpt.save(env_steps, state=ss_state, meta=meta_fn(env_steps), encoder=encoder)
        writer.flush()
      if snaps is not None and ckpt_lib.snapshot_due(cadence.snapshot_steps, prev_steps,
                                                     env_steps):
        ckpt_lib.save_snapshot(snaps, env_steps, encoder, meta_fn(env_steps))
      if stop and not last:
        loop.stop(metrics_lib.plural(chunks_done, "chunk"),
                  f"env step {env_steps:,} in {ckpt.directory}")
    if ckpt.latest_step() is None:  # no updates at all (warm-up = the whole run): the
      # initial encoder, the same one the PALM run of this seed starts from (a random-init
      # baseline that evaluations read like any run).
      env_steps = iteration * plan.env_steps_per_iteration
      ckpt.save(env_steps, state=ss_state, meta=meta_fn(env_steps),
                encoder=simsiam.encoder_variables(ss_state))
  return ss_state, host
