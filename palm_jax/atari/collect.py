r"""Atari frame collection (the `collect` job): N emulators play, their frames become a frame log.

    python -m palm_jax.main --config=configs/atari/collect.py:pong --workdir=/tmp/frames_pong

Output: WORKDIR/frames/, a frame log (`palm_jax.data.frame_log`: sharded ArrayRecord, one
record per frame) of uint8 [84, 84] observations with the Atari 100k preprocessing
(`palm_jax.envs.atari`) and, per frame, the fields

    env (which emulator), t (agent step within its game), action (taken at this frame),
    reward (raw, summed over the 4 skipped frames), terminal, game_over

— the observation/action/reward/terminal of Dopamine's replay store, index by index. The
gan job trains on it with `--config.data=framelog:WORKDIR/frames`.

Shards are independent: shard `s` starts every emulator `i` on a fresh game seeded by
`(seed, s, i)` and plays `frames_per_shard / num_envs` agent steps (games that end are
reset, so a shard holds whole and cut games), frames stored emulator by emulator (each
emulator's trajectory is contiguous). So a shard is a pure function of `(config, s)`:

  * deterministic given the seed (tested), whatever the number of processes;
  * resumable exactly: a rerun keeps the shards in the log's index (written atomically
    after each shard) and collects only the missing ones (tested: a killed run finishes
    with the bytes of an uninterrupted one);
  * parallel: `num_processes` workers (default: every CPU core) each play whole shards,
    and the parent writes them in order in the background.

Games are cut at shard ends (a 8192-frame shard of 16 emulators is 512 agent steps each,
about one game of Pong under a random policy); raise `frames_per_shard` for longer games.

Policies: "random" (uniform over the minimal action set) from the config; from Python any
callable `policy(stacks uint8 [N, 84, 84, 4], rng) -> int actions [N]`, e.g.
`epsilon_greedy(q_fn, num_actions, epsilon)` over a trained Q network (DrQ's
`atari_q_network` with its parameters: the DrQ job does not save its agent yet, so there is
no config path to one).

Before anything runs, the disk must hold the request (`frame_log.check_disk`), or the job
refuses with one sentence.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from concurrent import futures
from typing import Callable

import numpy as np
from absl import logging

from palm_jax.data import frame_log
from palm_jax.envs import atari
from palm_jax.runtime import host_loop
from palm_jax.runtime.errors import require
from palm_jax.runtime.metrics import Progress

FIELDS = (("env", "int16", ()), ("t", "int32", ()), ("action", "int16", ()),
          ("reward", "float32", ()), ("terminal", "uint8", ()), ("game_over", "uint8", ()))
POLICIES = ("random",)
FRAMES_DIR = "frames"

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_policy(num_actions: int) -> Policy:
  """Uniform actions over the minimal action set."""
  def act(stacks, rng):
    return rng.integers(0, num_actions, stacks.shape[0])
  return act


def epsilon_greedy(q_fn: Callable[[np.ndarray], np.ndarray], num_actions: int,
                   epsilon: float) -> Policy:
  """`argmax_a q_fn(stacks / 255)[a]` with probability 1 − ε, else uniform (Mnih et al. 2015).

  `q_fn` maps float stacks `[N, 84, 84, 4]` in [0, 1] to Q-values `[N, num_actions]`, e.g.
  `lambda x: network.apply(params, x)` for DrQ's `atari_q_network`.
  """
  def act(stacks, rng):
    greedy = np.asarray(q_fn(stacks.astype(np.float32) / 255.0)).argmax(-1)
    explore = rng.random(stacks.shape[0]) < epsilon
    return np.where(explore, rng.integers(0, num_actions, stacks.shape[0]), greedy)
  return act


def _env_kwargs(config) -> dict:
  return dict(terminal_on_life_loss=bool(config.terminal_on_life_loss),
              noop_max=int(config.noop_max), max_episode_steps=int(config.max_episode_steps),
              repeat_action_probability=float(config.repeat_action_probability))


def steps_per_shard(config) -> int:
  return int(config.frames_per_shard) // int(config.num_envs)


def collect_shard(config, shard: int, policy: Policy | None = None) -> dict:
  """Plays shard `shard` (module doc): `{"frame": uint8 [F, 84, 84], field: [F]}` with
  `F = num_envs * steps_per_shard`, emulator-major."""
  game, n, steps = atari.game_id(config.game), int(config.num_envs), steps_per_shard(config)
  seed = np.random.SeedSequence([int(config.seed), int(shard)])
  env_seeds, policy_seed = seed.spawn(2)
  seeds = env_seeds.generate_state(n) % (2**31)
  envs = [atari.AtariEnv(game, int(s), **_env_kwargs(config)) for s in seeds]
  rng = np.random.default_rng(policy_seed)
  if policy is None:
    policy = random_policy(envs[0].num_actions)
  frames = np.zeros((steps, n, 84, 84), np.uint8)
  fields = {name: np.zeros((steps, n), dtype) for name, dtype, _ in FIELDS}
  stack = atari.FrameStack(n)
  obs = np.stack([e.reset() for e in envs])
  stack.update(obs, np.ones(n, bool))
  t = np.zeros(n, np.int32)
  for k in range(steps):
    actions = np.asarray(policy(stack.state, rng)).astype(np.int64)
    frames[k] = obs
    fields["action"][k], fields["t"][k] = actions, t
    new_obs, over = np.empty_like(obs), np.zeros(n, bool)
    for i, (env, a) in enumerate(zip(envs, actions)):
      r = env.step(int(a))
      fields["reward"][k, i], fields["terminal"][k, i] = r.reward, r.terminal
      over[i] = r.game_over
      new_obs[i] = env.reset() if r.game_over else r.obs
    fields["game_over"][k] = over
    t = np.where(over, 0, t + 1)
    obs = new_obs
    stack.update(obs, over)
  fields["env"][:] = np.arange(n)[None]
  swap = lambda x: np.ascontiguousarray(np.swapaxes(x, 0, 1)).reshape((n * steps,) + x.shape[2:])  # noqa: E731
  return {"frame": swap(frames), **{k: swap(v) for k, v in fields.items()}}


def _worker(args):
  config_dict, shard = args
  import ml_collections  # pylint: disable=g-import-not-at-top
  return shard, collect_shard(ml_collections.ConfigDict(config_dict), shard)


def validate(config) -> None:
  atari.game_id(config.game)
  require(config.policy in POLICIES, f"config.policy={config.policy!r} must be one of "
          f"{POLICIES} (other policies: palm_jax.atari.collect.collect with policy=...).")
  for name in ("num_envs", "frames_per_shard", "total_frames"):
    require(int(config[name]) >= 1, f"config.{name}={config[name]} must be at least 1.")
  require(int(config.frames_per_shard) % int(config.num_envs) == 0,
          f"config.frames_per_shard={config.frames_per_shard} must be a multiple of "
          f"config.num_envs={config.num_envs} (each emulator plays the same number of steps).")
  require(int(config.num_processes) >= 0, f"config.num_processes={config.num_processes} "
          "must be >= 0 (0 = every CPU core).")


def _ignore_interrupts() -> None:
  """Workers leave Ctrl-C to the main process, which stops between shards."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def collect(config, workdir: str, policy: Policy | None = None) -> frame_log.FrameLog:
  """Collects (or completes) `config.total_frames` frames into WORKDIR/frames; returns it.

  `policy` (a callable, module doc) replaces `config.policy` and runs in this process.
  """
  validate(config)
  num_shards = math.ceil(int(config.total_frames) / int(config.frames_per_shard))
  per_shard = int(config.frames_per_shard)
  directory = os.path.join(workdir, FRAMES_DIR)
  os.makedirs(directory, exist_ok=True)
  writer = frame_log.FrameLogWriter(directory, frame_shape=(84, 84), fields=FIELDS)
  other = {s: c for s, c in writer.shards.items() if c != per_shard}
  require(not other, f"the frame log in {directory} holds shards of {sorted(set(other.values()))} "
          f"frames, not config.frames_per_shard={per_shard}; rerun with the value it was "
          "collected with, or use another --workdir.")
  writer.truncate(max(writer.shards, default=-1))  # drops a killed run's unfinished *.tmp
  done = {s for s in writer.shards if s < num_shards}
  todo = [s for s in range(num_shards) if s not in done]
  frame_log.check_disk(directory, len(todo) * per_shard, (84, 84), fields=FIELDS,
                       num_shards=len(todo), what="the collected frames",
                       smaller="collect fewer frames (config.total_frames)")
  logging.info("collect: %s, %d emulators, %d shards of %d frames (%d on disk, %d to go) "
               "-> %s", config.game, config.num_envs, num_shards, per_shard, len(done),
               len(todo), directory)
  progress = Progress(num_shards * per_shard, start=len(done) * per_shard, unit="frames")
  processes = int(config.num_processes) or os.cpu_count() or 1
  processes = min(processes, len(todo)) if policy is None else 1
  start = time.time()

  def write(shard, data, finished):
    writer.submit(shard, data.pop("frame"), **data)
    progress.update((len(done) + finished) * per_shard, timed=finished > 1)

  # SIGTERM/SIGINT: the shards finished so far are written (each shard is a unit: the
  # rerun collects the rest, byte for byte as if never stopped), then the job stops.
  with host_loop.HostLoop("collect") as loop:
    loop.own(writer)
    finished = 0
    if processes <= 1:
      for s in todo:
        if loop.stop_requested():
          break
        finished += 1
        write(s, collect_shard(config, s, policy), finished)
    else:
      # spawn: no forked JAX/XLA threads. An executor (not multiprocessing.Pool) fails
      # loudly when a worker dies instead of waiting for it forever.
      ctx = multiprocessing.get_context("spawn")
      with futures.ProcessPoolExecutor(processes, mp_context=ctx,
                                       initializer=_ignore_interrupts) as pool:
        pending = [pool.submit(_worker, (config.to_dict(), s)) for s in todo]
        for future in pending:
          if loop.stop_requested():
            break
          s, data = future.result()
          finished += 1
          write(s, data, finished)
        for future in pending:
          future.cancel()  # what has not started (running shards finish, unwritten)
    if finished < len(todo):
      loop.stop(f"{len(done) + finished} of {num_shards} shards",
                f"{len(done) + finished} complete shards in {directory}")
  took = time.time() - start
  log = frame_log.FrameLog(directory)
  logging.info("collect: %d frames in %s (%.0f frames/s this run, %d processes)",
               len(log), directory, len(todo) * per_shard / max(took, 1e-9), processes)
  return log
