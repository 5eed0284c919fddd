"""One PALM iteration, and a jitted chunk of them: the whole hot loop on the device.

An iteration, for all `N` environments at once:

    h_t  = f(s_t)                         encoder features (eval-mode BatchNorm), detached
    a_t  ~ pi(. | h_t)                    SAC policy (uniform random during warm-up, or
                                          always for the random-action ablation)
    s_{t+1} = env.step(s_t, a_t)          one generator forward pass per environment
    replay <- (s_t, a_t, first_t, c)      one frame per environment, stored once
    repeat `updates_per_step` times:
      (s, a, s') ~ replay                 B transitions, sampled per device
      SimSiam step on positive pairs      temporal (s, s') by default
      r = log(1 + mean kNN distance)      APT reward on h' = f(s') inside the batch
      SAC step on (h, a, r, h')           h, h' reused from SimSiam's forward pass (train-
                                          mode BatchNorm; the augmented views when
                                          `simsiam.augment`, DrQ-style)

A chunk is `lax.scan` over `length` iterations under one `jax.jit`: environments, replay
and batches are sharded over the `data` axis, parameters replicated, and the host sees
the device only between chunks (purejaxrl / big_vision style).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.extend.core  # noqa: F401  (jaxpr_as_fun: run a traced program)
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from palm_jax.agents import sac
from palm_jax.envs.latent_env import EnvParams, EnvState, LatentEnv, random_actions
from palm_jax.palm import replay as replay_lib
from palm_jax.representation import pairs as pairs_lib
from palm_jax.representation import simsiam
from palm_jax.rewards import apt
from palm_jax.runtime import sharding


@struct.dataclass
class PalmState:
  """Everything the loop carries (the replay travels beside it, see `ReplayState`)."""
  iteration: jax.Array       # int32 []: iterations done; env steps = iteration * N
  key: jax.Array             # uint32 [2]: the run's root key; per-iteration keys fold in
  env: EnvState              # [N, ...], data-sharded (or frame_stack_env.StackedEnvState)
  obs: jax.Array             # uint8 [N, H, W, C]: the frames the agent acts on next
  first: jax.Array           # bool [N]: `obs` is the first frame of its episode
  simsiam: simsiam.SimSiamState
  sac: sac.SACState
  reward_rms: apt.RunningMean


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static switches and sizes of an iteration (hashable; changes mean recompilation)."""
  num_envs: int
  batch_size: int
  updates_per_step: int
  warmup_iterations: int
  action_source: str        # "policy" | "random"
  pairs: str                # one of pairs.PAIR_SOURCES
  perturb_std: float
  knn_k: int
  knn_average: bool
  knn_clip: float
  knn_normalize: bool


def state_shardings(mesh: Mesh) -> PalmState:
  """A sharding prefix tree for `PalmState`: environments split, the rest replicated.

  `env` is a prefix: every leaf of any environment state (`EnvState`, the Atari
  `StackedEnvState`) is `[N, ...]`, split over environments."""
  rep, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  return PalmState(iteration=rep, key=rep, env=data,
                   obs=data, first=data, simsiam=rep, sac=rep, reward_rms=rep)


def act(cfg: StepConfig, state: PalmState, key):
  """Actions [N, A]: random during warm-up (or always), else the SAC policy on f(s_t)."""
  action_dim = state.sac.action_dim

  def policy(_):
    feats = simsiam.encode(state.simsiam, state.obs, train=False)
    return sac.act(state.sac, feats, key)

  def uniform(_):
    return random_actions(key, cfg.num_envs, action_dim)

  if cfg.action_source == "random":
    return uniform(None)
  return jax.lax.cond(state.iteration < cfg.warmup_iterations, uniform, policy, None)


def update(cfg: StepConfig, env: LatentEnv, mesh: Mesh, state: PalmState, replay, key,
            gen_vars, env_params: EnvParams, real_bank):
  """One (sample, SimSiam, reward, SAC) update; returns (state, metrics)."""
  k_sample, k_pairs, k_simsiam, k_sac = jax.random.split(key, 4)
  batch = replay_lib.sample(replay, k_sample, cfg.batch_size, mesh)
  if cfg.pairs == "temporal":
    x1, x2 = batch.obs, batch.next_obs
  elif cfg.pairs == "real":
    x1, x2 = pairs_lib.real_pairs(k_pairs, real_bank, batch.label)
  else:
    x1, x2 = pairs_lib.generated_pairs(k_pairs, cfg.pairs, env, gen_vars, env_params,
                                       batch.label, cfg.perturb_std)
  ss_state, ss_metrics, (h1, h2) = simsiam.simsiam_update(state.simsiam, x1, x2, k_simsiam,
                                                          return_features=True)
  if cfg.pairs != "temporal":  # SimSiam saw other images: encode the transition itself
    h1 = simsiam.encode(state.simsiam, batch.obs, train=False)
    h2 = simsiam.encode(state.simsiam, batch.next_obs, train=False)
  h1, h2 = jax.lax.stop_gradient(h1), jax.lax.stop_gradient(h2)
  kw = dict(k=cfg.knn_k, average=cfg.knn_average, clip=cfg.knn_clip)
  if cfg.knn_normalize:
    reward, rms = apt.knn_reward_normalized(h2, h2, state.reward_rms, **kw)
  else:
    reward, rms = apt.knn_reward(h2, h2, **kw), state.reward_rms
  metrics = {f"simsiam/{k}": v for k, v in ss_metrics.items()}
  metrics.update({"reward/mean": reward.mean(), "reward/std": reward.std(),
                  "features/norm": jnp.linalg.norm(h2, axis=-1).mean()})
  sac_state = state.sac
  if cfg.action_source == "policy":
    transition = sac.Transition(obs=h1, action=batch.action, reward=reward, next_obs=h2,
                                discount=jnp.ones_like(reward))
    sac_state, sac_metrics = sac.update(state.sac, transition, k_sac)
    metrics.update({f"sac/{k}": v for k, v in sac_metrics.items()})
  return state.replace(simsiam=ss_state, sac=sac_state, reward_rms=rms), metrics


LOOPS = ("auto", "scan", "host")


def resolve_loop(loop: str, platform: str) -> str:
  """`auto` → `host` on CPU, `scan` elsewhere (see `make_chunk`)."""
  if loop == "auto":
    return "host" if platform == "cpu" else "scan"
  return loop


def make_iteration(cfg: StepConfig, env: LatentEnv, mesh: Mesh, *, control_flow: bool = True):
  """`iteration(state, replay, gen_vars, env_params, real_bank) -> (state, replay, metrics)`.

  `control_flow=True` skips the updates during warm-up with `lax.cond` and loops over
  `updates_per_step` with `lax.scan`. `control_flow=False` unrolls that loop and computes
  the updates every iteration, keeping their result only after warm-up (`select`): for
  XLA:CPU, which runs gradient convolutions inside `cond`/`scan` bodies ~30x slower than at
  the top level of a program. Both compute the same function.
  """

  def updates(state, replay, key, gen_vars, env_params, real_bank):
    def one(state, u):
      return update(cfg, env, mesh, state, replay, jax.random.fold_in(key, u), gen_vars,
                     env_params, real_bank)
    if control_flow:
      state, metrics = jax.lax.scan(one, state, jnp.arange(cfg.updates_per_step))
    else:
      per_update = []
      for u in range(cfg.updates_per_step):
        state, m = one(state, u)
        per_update.append(m)
      metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *per_update)
    return state, jax.tree.map(jnp.mean, metrics)

  def iteration(state: PalmState, replay, gen_vars, env_params: EnvParams, real_bank):
    key = jax.random.fold_in(state.key, state.iteration)
    k_act, k_env, k_upd = jax.random.split(key, 3)
    action = act(cfg, state, k_act)
    replay = replay_lib.insert(replay, state.obs, action, state.first, state.env.label)
    obs, env_state, first = env.step(k_env, state.env, action, gen_vars, env_params)

    args = (replay, k_upd, gen_vars, env_params, real_bank)
    # After warm-up, and once the ring holds a transition (it restarts empty when a run
    # resumes from a checkpoint saved without its replay).
    do_update = (state.iteration >= cfg.warmup_iterations) & (replay.size >= 2)
    if control_flow:
      state, metrics = _cond_traced_once(do_update, updates, state, args)
    else:
      new_state, metrics = updates(state, *args)
      state = jax.tree.map(lambda new, old: jnp.where(do_update, new, old), new_state, state)
      metrics = jax.tree.map(lambda m: jnp.where(do_update, m, jnp.zeros_like(m)), metrics)
    metrics["updated"] = do_update.astype(jnp.float32)
    metrics["env/episode_ends"] = first.mean()
    state = state.replace(iteration=state.iteration + 1, env=env_state, obs=obs, first=first)
    return state, replay, metrics

  return iteration


def _cond_traced_once(pred, fn, state, args):
  """`lax.cond(pred, fn(state, *args), (state, zeros like fn's metrics))`, tracing `fn` once.

  The skip branch needs the metrics' shapes; `jax.eval_shape` would trace `fn` a second
  time (the whole update: encoder, SimSiam and SAC gradients). `make_jaxpr` traces it once
  and gives both the program and its output shapes; the cond runs that program.
  """
  flat, tree = jax.tree.flatten((state, args))
  closed, out_shape = jax.make_jaxpr(
      lambda *leaves: fn(*_unflatten_call(tree, leaves)), return_shape=True)(*flat)
  run = jax.extend.core.jaxpr_as_fun(closed)
  out_tree = jax.tree.structure(out_shape)

  def do(leaves):
    return jax.tree.unflatten(out_tree, run(*leaves))

  def skip(leaves):
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out_shape[1])
    return jax.tree.unflatten(tree, leaves)[0], zeros
  return jax.lax.cond(pred, do, skip, flat)


def _unflatten_call(tree, leaves):
  state, args = jax.tree.unflatten(tree, leaves)
  return (state, *args)


def _average(metrics: dict) -> dict:
  """Per-iteration metrics `[length]` → update metrics averaged over updating iterations."""
  weight = metrics["updated"]
  denom = jnp.maximum(weight.sum(), 1.0)
  out = {k: (v * weight).sum() / denom for k, v in metrics.items()
         if k not in ("updated", "env/episode_ends")}
  out["updated"] = weight.mean()
  out["env/episode_ends"] = metrics["env/episode_ends"].mean()
  return out


def make_chunk(cfg: StepConfig, env: LatentEnv, mesh: Mesh, length: int, state_sharding: Any,
               replay_sharding: Any, loop: str = "scan", members: int = 0):
  """`chunk(state, replay, gen_vars, env_params, real_bank) -> (state, replay, metrics)`.

  Runs `length` iterations; metrics are averaged over the iterations that ran updates
  (`updated` is the fraction that did). `state` and `replay` are donated.
  `members > 0`: a population (palm_jax/palm/population.py): `state`, `replay` and `env_params`
  carry a leading member axis and the iteration is `jax.vmap`ped over it (generator and
  real bank shared); metrics are `[members]`.
  `loop="scan"`: one jitted `lax.scan` over the iterations (accelerators: one dispatch per
  chunk). `loop="host"`: a Python loop dispatching one jitted, control-flow-free iteration
  at a time, without host syncs (XLA:CPU; see `make_iteration`).
  """
  rep = sharding.replicated(mesh)
  in_shardings = (state_sharding, replay_sharding, rep, rep, rep)
  out_shardings = (state_sharding, replay_sharding, rep)
  over_members = ((lambda f: jax.vmap(f, in_axes=(0, 0, None, 0, None))) if members
                  else (lambda f: f))
  average_ = jax.vmap(_average, in_axes=1) if members else _average  # [length, members]
  if loop == "host":
    step = sharding.start_together(jax.jit(
        over_members(make_iteration(cfg, env, mesh, control_flow=False)),
        in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=(0, 1)),
        "palm iteration")
    average = sharding.start_together(jax.jit(
        lambda ms: average_(jax.tree.map(lambda *xs: jnp.stack(xs), *ms)),
        out_shardings=rep), "chunk average")

    def host_chunk(state, replay, gen_vars, env_params, real_bank):
      per_iteration = []
      for _ in range(length):
        state, replay, metrics = step(state, replay, gen_vars, env_params, real_bank)
        per_iteration.append(metrics)
      return state, replay, average(per_iteration)
    host_chunk.step = step    # the jitted iteration (benchmarks compile it ahead of time)
    return host_chunk

  iteration = over_members(make_iteration(cfg, env, mesh))

  def chunk(state, replay, gen_vars, env_params, real_bank):
    def body(carry, _):
      state, replay = carry
      state, replay, metrics = iteration(state, replay, gen_vars, env_params, real_bank)
      return (state, replay), metrics
    (state, replay), metrics = jax.lax.scan(body, (state, replay), None, length=length)
    return state, replay, average_(metrics)

  return sharding.start_together(jax.jit(
      chunk, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=(0, 1)),
      "palm chunk")


def make_rollout(env: LatentEnv, num: int, length: int, action_source: str = "policy"):
  """Jitted `rollout(state, gen_vars, env_params, key) -> (frames uint8 [num, length, H, W,
  C], classes int32 [num])`.

  Fresh episodes acted by the current stochastic policy, or uniformly at random for the
  random-action ablation (rows = trajectories, columns = time): what the agent sees.
  """
  def rollout(state: PalmState, gen_vars, env_params, key):
    k_reset, k_steps = jax.random.split(key)
    obs, env_state = env.reset(k_reset, gen_vars, env_params, num)

    def step(carry, k):
      obs, env_state = carry
      k_act, k_env = jax.random.split(k)
      if action_source == "random":
        action = random_actions(k_act, num, env.action_dim)
      else:
        action = sac.act(state.sac, simsiam.encode(state.simsiam, obs, train=False), k_act)
      nxt, env_state, _ = env.step(k_env, env_state, action, gen_vars, env_params)
      return (nxt, env_state), nxt

    _, frames = jax.lax.scan(step, (obs, env_state), jax.random.split(k_steps, length - 1))
    frames = jnp.concatenate([obs[None], frames], axis=0)
    return jnp.swapaxes(frames, 0, 1), env_state.label  # episodes keep their class

  return sharding.start_together(jax.jit(rollout), "rollout")
