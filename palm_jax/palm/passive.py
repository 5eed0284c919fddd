"""Passive PALM (`config.job = "passive"`, paper Sec. 6): SimSiam on a run's stored play.

The encoder, heads, optimiser, batch size and number of updates are those of the `palm`
job with the same config (`programs.Plan`: updates start after the warm-up iterations,
`updates_per_step` per iteration), but the temporal pairs come from an experience log
(`config.experience.log`, `palm_jax/palm/experience_log.py`) instead of the live replay; there
is no environment, generator, SAC or APT reward. A pair is (s_t, s_{t+1}): the records
of one environment at iterations i and i + 1 with t increasing by one, so it never
crosses an episode boundary. Two orders (`config.passive.order`):

  ordered  the online order. At PALM iteration k the online replay holds the frames of
           iterations (k - W, k] (W = its time slots), so the update draws its batch
           uniformly (with replacement, like `replay.sample`) from the pairs whose first
           frame lies in [k - W + 1, k - 1]: a sliding window over the log in time order.
           `config.passive.window` sets W (0: replay.capacity // env.num_envs, the run's).
  random   consecutive pairs shuffled over the whole log: update g (counted from the
           first) takes positions [g B, (g + 1) B) of a sequence of epochs, each a fresh
           seeded permutation of all pairs, so every pair is used once per epoch.

Sampling is a pure function of (seed, iteration, update), so a resumed run draws the
same batches; checkpoints use the PALM layout (`offline.run_updates`), so `linear_eval`,
`ood_eval` and sweeps read them unchanged. Batches are read on the host
(`FrameLog.read`, one ArrayRecord read per frame; each process reads only its rows of
the batch) one update ahead on a background thread while the device runs the current
one.
"""
from __future__ import annotations

import os
from concurrent import futures

import jax
import numpy as np
from absl import logging

from palm_jax.data import frame_log
from palm_jax.palm import offline
from palm_jax.palm import replay as replay_lib
from palm_jax.representation import simsiam
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

ORDERS = ("ordered", "random")


def resolve_log(path: str) -> str:
  """The experience directory for `config.passive.log` (a run's workdir or the log)."""
  require(bool(path), "config.passive.log is empty; give the workdir (or its experience/ "
                      "directory) of a palm run made with config.experience.log=True.")
  sub = os.path.join(path, "experience")
  return sub if os.path.exists(os.path.join(sub, frame_log.INDEX)) else path


def temporal_pairs(iteration, env, t) -> tuple[np.ndarray, np.ndarray]:
  """Record indices `(a, b)` of every temporal pair: b is a's environment one iteration
  later, in the same episode (t[b] = t[a] + 1). Sorted by a's (iteration, env)."""
  iteration, env, t = (np.asarray(x, np.int64) for x in (iteration, env, t))
  if iteration.size == 0:
    return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
  width = int(env.max()) + 1
  key = iteration * width + env
  order = np.argsort(key, kind="stable")
  sorted_key = key[order]
  require(np.all(np.diff(sorted_key) > 0), "the experience log holds an (iteration, env) "
          "twice; it was not written by one run (or not truncated on resume).")
  pos = np.searchsorted(sorted_key, key + width)
  found = pos < key.size
  nxt = np.where(found, order[np.minimum(pos, key.size - 1)], 0)
  ok = found & (sorted_key[np.minimum(pos, key.size - 1)] == key + width) & \
      (t[nxt] == t + 1)
  a = np.nonzero(ok)[0]
  a = a[np.argsort(key[a], kind="stable")]
  return a, nxt[a]


class PairSampler:
  """Which records make the batch of update `u` of PALM iteration `k` (module doc)."""

  def __init__(self, fields: dict, *, order: str, window: int, batch_size: int, seed: int,
               warmup_iterations: int, updates_per_step: int):
    require(order in ORDERS, f"config.passive.order={order!r} must be one of {ORDERS}.")
    self.a, self.b = temporal_pairs(fields["iteration"], fields["env"], fields["t"])
    require(self.a.size > 0, "the experience log holds no temporal pair (no environment "
                             "was logged at two consecutive iterations of one episode).")
    self.first_iteration = np.asarray(fields["iteration"], np.int64)[self.a]
    self.order, self.window, self.batch = order, int(window), int(batch_size)
    self.seed, self.warmup, self.upd = int(seed), int(warmup_iterations), int(updates_per_step)
    self._perms: dict[int, np.ndarray] = {}

  @property
  def num_pairs(self) -> int:
    return int(self.a.size)

  def window_bounds(self, k: int) -> tuple[int, int]:
    """Pair positions [lo, hi) whose first frame lies in [k - W + 1, k - 1]."""
    lo = np.searchsorted(self.first_iteration, k - self.window + 1, side="left")
    hi = np.searchsorted(self.first_iteration, k - 1, side="right")
    return int(lo), int(hi)

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}  # keep 2
      self._perms[epoch] = np.random.default_rng([self.seed, 7, epoch]).permutation(
          self.num_pairs)
    return self._perms[epoch]

  def positions(self, k: int, u: int) -> np.ndarray:
    """Positions into the pair list (`a[pos]`, `b[pos]`) for update `u` of iteration `k`."""
    if self.order == "ordered":
      lo, hi = self.window_bounds(k)
      require(hi > lo, f"the experience log has no pair in iterations [{k - self.window + 1}"
                       f", {k - 1}] that PALM iteration {k} trains on; use the log of a run "
                       "with this config (or lower total_env_steps to the log's length).")
      rng = np.random.default_rng([self.seed, k, u])
      return rng.integers(lo, hi, self.batch)
    g = (k - self.warmup) * self.upd + u
    pos = g * self.batch + np.arange(self.batch)
    epoch, within = pos // self.num_pairs, pos % self.num_pairs
    out = np.empty_like(pos)
    for e in np.unique(epoch):
      sel = epoch == e
      out[sel] = self._perm(int(e))[within[sel]]
    return out

  def pairs(self, k: int, u: int) -> tuple[np.ndarray, np.ndarray]:
    pos = self.positions(k, u)
    return self.a[pos], self.b[pos]


def train_passive(config, workdir: str, plan, cadence, ss_cfg, *, meta_fn):
  """Runs (or resumes) passive PALM; returns `(ss_state, last host metrics)`."""
  mesh = sharding.make_mesh()
  sharding.check_divisible("batch_size", config.batch_size, mesh)
  require(config.simsiam.pairs == "temporal", f"config.simsiam.pairs="
          f"{config.simsiam.pairs!r}: passive PALM trains on the log's temporal pairs; set "
          "it to 'temporal' (static PALM is job palm with pairs='real').")
  log = frame_log.FrameLog(resolve_log(config.passive.get("log", "")))
  require(len(log.frame_shape) == 3 and log.frame_shape[-1] == 3,
          f"the experience log in {log.directory} holds frames of shape {log.frame_shape}; "
          "the ResNet encoder needs RGB [H, W, 3].")
  window = int(config.passive.get("window", 0)) or replay_lib.num_slots(
      config.replay.capacity, config.env.num_envs)
  require(window >= 2, f"config.passive.window={window} must be at least 2 (a pair spans two "
                       "iterations).")
  sampler = PairSampler(log.read_fields(("iteration", "env", "t")), order=config.passive.get("order", "ordered"),
                        window=window, batch_size=config.batch_size, seed=config.seed,
                        warmup_iterations=plan.warmup_iterations,
                        updates_per_step=plan.updates_per_step)
  last_k = plan.total_iterations - 1
  if sampler.order == "ordered" and plan.total_updates:
    sampler.positions(last_k, 0)  # the log reaches the run's end (UserError otherwise)
  rows = sharding.local_slice(config.batch_size)
  data, rep = sharding.data_sharded(mesh), sharding.replicated(mesh)
  step = jax.jit(lambda s, x1, x2, key: simsiam.simsiam_update(s, x1, x2, key),
                 in_shardings=(rep, data, data, rep), out_shardings=(rep, rep),
                 donate_argnums=(0,))
  pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="passive_read")
  ahead: dict = {}

  def read(k, u):
    a, b = sampler.pairs(k, u)
    return log.read(a[rows])["frame"], log.read(b[rows])["frame"]

  def following(k, u):
    return (k, u + 1) if u + 1 < plan.updates_per_step else (k + 1, 0)

  def update(ss_state, k, u, key):
    x1, x2 = (ahead.pop((k, u)) if (k, u) in ahead else pool.submit(read, k, u)).result()
    nxt = following(k, u)
    if nxt[0] <= last_k:
      ahead[nxt] = pool.submit(read, *nxt)  # read while the device runs this update
    return step(ss_state, sharding.host_to_global(x1, mesh),
                sharding.host_to_global(x2, mesh), key)

  logging.info("Passive PALM (order=%s, window %d iterations): %s temporal pairs from %s "
               "frames in %s; %d updates of %d.", sampler.order, window,
               f"{sampler.num_pairs:,}", f"{len(log):,}", log.directory, plan.total_updates,
               config.batch_size)
  try:
    return offline.run_updates(config, workdir, plan, cadence, ss_cfg, frame_shape=log.frame_shape,
                               update=update, meta_fn=meta_fn)
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
