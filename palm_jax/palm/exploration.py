"""Is the agent exploring? Per-chunk exploration metrics (URLB users ask for exactly this).

Computed once per chunk by one jitted program on a small batch (`config.log.explore_envs`
fresh episodes), outside the hot loop, and logged with the chunk's scalars (metrics.jsonl
and TensorBoard, `explore/*`):

  apt_policy, apt_random   APT reward (`rewards.apt.knn_reward`, raw: no running-mean
                           normalisation) of the last frames of M fresh episodes acted by
                           the current policy, and by uniform random actions — same
                           classes, same first latents, same noise `eps` at every step (one
                           key for both arms), same encoder (eval-mode BatchNorm). The kNN
                           runs inside each arm's M frames with k = min(reward.k, M).
  apt_gain                 apt_policy − apt_random: > 0 when the policy reaches frames that
                           are more spread out, in the encoder's eyes, than chance does.
  action_share_policy,     share of ||z_T||² at the episode's end that is the action's
  action_share_random      part: the latent recursion is linear, so the action part is the
                           same EMA run on `α s a_t` alone (`A_0 = 0`,
                           `A_t = β A_{t−1} + (1−β) α s a_t`) and the share is
                           mean_i ||A_T,i||² / ||z_T,i||² (palm_jax/palm/budget.py gives its
                           closed form for a constant saturated action).
  replay_classes           distinct episode classes among the replay's filled slots.
  replay_feature_spread    tr Cov(h) / E||h||² of encoder features of a replay sample of
                           `batch_size` transitions: 0 for identical (or collapsed)
                           features, larger when the stored experience is spread out.
  pair_change              how different SimSiam's temporal pairs are: the mean absolute
                           pixel change from s_t to s_{t+1} over that replay sample, divided
                           by the mean absolute difference between two unrelated frames of it
                           (each s_t against the next transition's). 0: the two views are one
                           image; ≈ 1: as different as two random frames. With the paper's
                           β = 0.95 and 20-frame episodes it is small: the first latent
                           dominates the EMA all episode (BENCHMARKS.md, issue 22).

Only the latent space "z" has the action part in closed form; in "w" the same recursion
runs after the mapping (it is linear there too), so the metric is the same formula.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from palm_jax.agents import sac
from palm_jax.envs.latent_env import LatentEnv, random_actions
from palm_jax.palm import replay as replay_lib
from palm_jax.representation import simsiam
from palm_jax.rewards import apt
from palm_jax.runtime import sharding


def feature_spread(h: jax.Array) -> jax.Array:
  """`tr Cov(h) / E||h||²` for features `[B, F]` (a scalar in [0, 1])."""
  h = h.astype(jnp.float32)
  var = jnp.sum(jnp.var(h, axis=0))
  return var / jnp.maximum(jnp.mean(jnp.sum(h * h, axis=-1)), 1e-12)


def pair_change(obs: jax.Array, next_obs: jax.Array) -> jax.Array:
  """Mean |next_obs − obs| over mean |obs − obs rolled by one| (uint8 frames `[B, ...]`)."""
  x, y = obs.astype(jnp.float32), next_obs.astype(jnp.float32)
  return jnp.mean(jnp.abs(y - x)) / jnp.maximum(
      jnp.mean(jnp.abs(x - jnp.roll(x, 1, axis=0))), 1e-12)


def distinct_classes(replay: replay_lib.ReplayState, num_classes: int) -> jax.Array:
  """Number of classes with at least one frame in the replay's filled slots."""
  t = replay.labels.shape[0]
  age = (replay.ptr - 1 - jnp.arange(t)) % t
  filled = (age < replay.size)[:, None]
  onehot = jax.nn.one_hot(replay.labels, num_classes, dtype=jnp.float32) * filled[..., None]
  return jnp.sum(jnp.sum(onehot, axis=(0, 1)) > 0).astype(jnp.float32)


def make_explore_metrics(env: LatentEnv, mesh, *, num_envs: int, episode_length: int,
                         batch_size: int, knn_k: int, knn_average: bool, knn_clip: float,
                         policy: bool = True):
  """Jitted `explore(state, replay, gen_vars, env_params, key) -> {name: scalar}`.

  `policy=False` (the random-action ablation) still reports the random arm and the replay
  metrics; the policy arm then equals the random one.
  """
  m = int(num_envs)
  k = max(1, min(int(knn_k), m))

  def arm(state, gen_vars, env_params, key, use_policy: bool):
    k_reset, k_steps = jax.random.split(key)
    obs, env_state = env.reset(k_reset, gen_vars, env_params, m)
    part = jnp.zeros_like(env_state.latent)

    def step(carry, kk):
      obs, env_state, part = carry
      k_act, k_env = jax.random.split(kk)
      if use_policy:
        a = sac.act(state.sac, simsiam.encode(state.simsiam, obs, train=False), k_act)
      else:
        a = random_actions(k_act, m, env.action_dim)
      a = a.astype(jnp.float32)
      obs, env_state, _ = env.step(k_env, env_state, a, gen_vars, env_params)
      part = env_params.beta * part + (1.0 - env_params.beta) * env_params.alpha * \
          env_params.action_scale * a
      return (obs, env_state, part), None

    (obs, env_state, part), _ = jax.lax.scan(
        step, (obs, env_state, part), jax.random.split(k_steps, episode_length - 1))
    h = simsiam.encode(state.simsiam, obs, train=False)
    reward = apt.knn_reward(h, h, k=k, average=knn_average, clip=knn_clip)
    share = jnp.sum(part ** 2, -1) / jnp.maximum(jnp.sum(env_state.latent ** 2, -1), 1e-12)
    return reward.mean(), share.mean()

  def explore(state, replay, gen_vars, env_params, key):
    k_arm, k_sample = jax.random.split(key)
    r_rand, s_rand = arm(state, gen_vars, env_params, k_arm, False)
    if policy:
      r_pol, s_pol = arm(state, gen_vars, env_params, k_arm, True)
    else:
      r_pol, s_pol = r_rand, s_rand
    batch = replay_lib.sample(replay, k_sample, batch_size, mesh)
    h = simsiam.encode(state.simsiam, batch.obs, train=False)
    return {"explore/apt_policy": r_pol, "explore/apt_random": r_rand,
            "explore/apt_gain": r_pol - r_rand, "explore/action_share_policy": s_pol,
            "explore/action_share_random": s_rand,
            "explore/replay_classes": distinct_classes(replay, env.num_classes),
            "explore/replay_feature_spread": feature_spread(h),
            "explore/pair_change": pair_change(batch.obs, batch.next_obs)}

  return sharding.start_together(jax.jit(explore), "explore")
