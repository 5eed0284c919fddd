"""The DQN/DrQ(ε) host loop: act ε-greedily, step N environments, store, update; evaluate.

Emulators run on the host (ALE is C++ behind Python), so this loop is a Python loop over
agent steps around three jitted programs — act, update, and (for CartPole) the env step —
as Dopamine's Runner is. Per iteration, with N environments:

    a_t   = ε-greedy(Q_θ(s_t)),  ε = linearly_decaying_epsilon(env steps so far)
    o', r, terminal, game_over = env.step(a_t)      (games that end are reset by the env)
    store (o_t, a_t, clip(r), terminal, end = terminal ∨ game_over, first_t)
    s_{t+1} = push(o') or restart from o' where the agent's episode ended
    one update per `update_period` env steps once more than `min_replay_history`
    transitions are stored (Dopamine's `_train_step`)

A life loss ends the *agent's* episode (terminal for the bootstrap, fresh frame stack), not
the game; scores are whole-game sums of raw rewards, as Dopamine's Runner reports them.
Evaluation plays `num_episodes` whole games at ε_eval without storing or updating, each of
the N environments playing ⌈episodes / N⌉ of them (so short games are not over-counted).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import numpy as np

from palm_jax.agents import drq
from palm_jax.agents.nstep_replay import NStepReplay
from palm_jax.envs.atari import FrameStack


@dataclasses.dataclass
class TrainResult:
  state: drq.DrQState
  env_steps: int
  game_scores: list          # raw score of every game finished during training, in order
  seconds: float             # wall time of the loop (compilation included)
  losses: list              # (env step, loss) at each log point


def _log_point(every: int, before: int, after: int) -> bool:
  return every > 0 and after // every > before // every


def train(env, network, config: drq.DrQConfig, num_env_steps: int, seed: int, *,
          stack: int = 4, params: Any = None, clip_rewards: bool = True,
          log_every: int = 0, on_log: Callable[[int, dict], None] | None = None,
          frame_dtype=np.uint8) -> TrainResult:
  """Trains for `num_env_steps` environment steps (rounded up to whole iterations)."""
  n = env.num_envs
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  optimizer = drq.make_optimizer(config)
  frames = FrameStack(n, env.frame_shape, stack, frame_dtype)
  state = drq.init_state(network, optimizer, frames.state[:1], init_key, params)
  update = drq.make_update(network, optimizer, config)
  act = drq.make_act(network, env.num_actions)
  replay = NStepReplay(min(config.replay_capacity, math.ceil(num_env_steps / n) + 1), n,
                       env.frame_shape, frame_dtype, stack, config.update_horizon,
                       config.gamma, seed)
  obs = env.reset()
  first = np.ones(n, bool)
  frames.update(obs, first)
  scores, running = [], np.zeros(n, np.float64)
  losses, metrics = [], {}
  steps, owed = 0, 0.0
  start = time.time()
  while steps < num_env_steps:
    key, act_key = jax.random.split(key)
    eps = drq.linearly_decaying_epsilon(steps, config)
    action = np.asarray(act(state.params, frames.state, act_key, eps))
    obs, reward, terminal, game_over = env.step(action)
    end = terminal | game_over
    replay.add(frames.state[..., -1], action,
               np.clip(reward, -1.0, 1.0) if clip_rewards else reward, terminal, end, first)
    running += reward
    for i in np.nonzero(game_over)[0]:
      scores.append(float(running[i]))
      running[i] = 0.0
    first = end
    frames.update(obs, end)
    before, steps = steps, steps + n
    if replay.num_transitions > config.min_replay_history:
      owed += n / config.update_period
      while owed >= 1.0:
        state, metrics = update(state, replay.sample(config.batch_size))
        owed -= 1.0
    if _log_point(log_every, before, steps):
      row = {"epsilon": float(eps), "steps_per_s": steps / (time.time() - start)}
      if metrics:
        row["loss"] = float(metrics["loss"])
        losses.append((steps, row["loss"]))
      if scores:
        row["train_score_last10"] = float(np.mean(scores[-10:]))
      if on_log is not None:
        on_log(steps, row)
  return TrainResult(state=state, env_steps=steps, game_scores=scores,
                     seconds=time.time() - start, losses=losses)


def evaluate(env, network, params: Any, num_episodes: int, epsilon: float, seed: int, *,
             stack: int = 4, frame_dtype=np.uint8, max_env_steps: int | None = None) -> list:
  """Raw scores of `num_episodes` whole games played ε-greedily (no learning)."""
  n = env.num_envs
  quota = np.full(n, math.ceil(num_episodes / n))
  act = drq.make_act(network, env.num_actions)
  key = jax.random.PRNGKey(seed)
  frames = FrameStack(n, env.frame_shape, stack, frame_dtype)
  frames.update(env.reset(), np.ones(n, bool))
  scores, running, steps = [], np.zeros(n, np.float64), 0
  while (quota > 0).any():
    key, k = jax.random.split(key)
    action = np.asarray(act(params, frames.state, k, epsilon))
    obs, reward, terminal, game_over = env.step(action)
    running += reward
    for i in np.nonzero(game_over)[0]:
      if quota[i] > 0:
        scores.append(float(running[i]))
        quota[i] -= 1
      running[i] = 0.0
    frames.update(obs, terminal | game_over)
    steps += n
    if max_env_steps is not None and steps >= max_env_steps:
      break
  if not scores:  # the cap came before any game ended: score the unfinished games
    scores = [float(r) for r in running]
  return scores[:num_episodes]
