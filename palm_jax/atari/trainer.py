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

Resuming (Dopamine's Runner checkpoints agent and replay every iteration): `Carry` is all
the loop holds — agent state, PRNG key, frame stacks, replay, counters and the emulators'
machine states — so a run saved and restored at any step continues bit for bit as if it
had never stopped (`tests/test_atari100k_job.py` checks this).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from palm_jax.agents import drq
from palm_jax.agents.nstep_replay import NStepReplay
from palm_jax.envs.atari import FrameStack
from palm_jax.runtime.errors import UserError


@dataclasses.dataclass
class TrainResult:
  state: drq.DrQState
  env_steps: int
  game_scores: list          # raw score of every game finished during training, in order
  seconds: float             # wall time of the loop (compilation included), over all resumes
  losses: list              # (env step, loss) at each log point
  stopped: bool = False      # `stop_requested` ended the loop early (a checkpoint was saved)


def _log_point(every: int, before: int, after: int) -> bool:
  return every > 0 and after // every > before // every


class Carry(NamedTuple):
  """What the loop holds between agent steps, as a checkpoint stores it.

  `arrays` (the agent's state, PRNG key, frame stacks, running game scores, episode starts)
  and `replay` (the replay's columns) are array pytrees; `meta` is JSON: the counters, the
  finished games' scores, the replay's and the emulators' states (`AtariVectorEnv.get_state`:
  ALE's serialised machine state with its RNG, so a resumed run plays the same frames).
  """
  arrays: dict
  replay: dict
  meta: dict


class _Loop:
  """The host loop's state and one agent step; `carry()` / `load()` round-trip it."""

  def __init__(self, env, network, config: drq.DrQConfig, num_env_steps: int, seed: int,
               stack: int, params: Any, clip_rewards: bool, frame_dtype):
    n = env.num_envs
    self.env, self.config, self.clip_rewards = env, config, clip_rewards
    key = jax.random.PRNGKey(seed)
    self.key, init_key = jax.random.split(key)
    optimizer = drq.make_optimizer(config)
    self.frames = FrameStack(n, env.frame_shape, stack, frame_dtype)
    self.state = drq.init_state(network, optimizer, self.frames.state[:1], init_key, params)
    self.update = drq.make_update(network, optimizer, config)
    self.act = drq.make_act(network, env.num_actions)
    self.replay = NStepReplay(min(config.replay_capacity, math.ceil(num_env_steps / n) + 1),
                              n, env.frame_shape, frame_dtype, stack, config.update_horizon,
                              config.gamma, seed)
    self.first = np.ones(n, bool)
    self.frames.update(env.reset(), self.first)
    self.scores, self.running = [], np.zeros(n, np.float64)
    self.losses, self.metrics = [], {}
    self.steps, self.owed, self.seconds_before = 0, 0.0, 0.0

  def step(self) -> float:
    """One agent step in every environment (and the updates it owes); returns ε."""
    config, n = self.config, self.env.num_envs
    self.key, act_key = jax.random.split(self.key)
    eps = drq.linearly_decaying_epsilon(self.steps, config)
    action = np.asarray(self.act(self.state.params, self.frames.state, act_key, eps))
    obs, reward, terminal, game_over = self.env.step(action)
    end = terminal | game_over
    self.replay.add(self.frames.state[..., -1], action,
                    np.clip(reward, -1.0, 1.0) if self.clip_rewards else reward,
                    terminal, end, self.first)
    self.running += reward
    for i in np.nonzero(game_over)[0]:
      self.scores.append(float(self.running[i]))
      self.running[i] = 0.0
    self.first = end
    self.frames.update(obs, end)
    self.steps += n
    if self.replay.num_transitions > config.min_replay_history:
      self.owed += n / config.update_period
      while self.owed >= 1.0:
        self.state, self.metrics = self.update(self.state,
                                               self.replay.sample(config.batch_size))
        self.owed -= 1.0
    return float(eps)

  def carry(self, seconds: float) -> Carry:
    if not hasattr(self.env, "get_state"):
      raise UserError(f"{type(self.env).__name__} cannot save its state, so this loop "
                      "cannot be checkpointed; run it without checkpoint_every.")
    arrays = {"agent": self.state, "key": self.key, "frames": self.frames.state,
              "running": self.running, "first": self.first}
    meta = {"steps": self.steps, "owed": self.owed, "scores": self.scores,
            "losses": self.losses, "seconds": self.seconds_before + seconds,
            "replay": self.replay.get_meta(), "env": self.env.get_state()}
    return Carry(arrays=arrays, replay=self.replay.get_arrays(), meta=meta)

  def load(self, carry: Carry) -> None:
    a, m = carry.arrays, carry.meta
    self.state, self.key = a["agent"], a["key"]
    self.frames.state[...] = a["frames"]
    self.running, self.first = np.array(a["running"]), np.array(a["first"])
    self.steps, self.owed, self.seconds_before = int(m["steps"]), float(m["owed"]), \
        float(m["seconds"])
    self.scores, self.losses = list(m["scores"]), [tuple(x) for x in m["losses"]]
    self.replay.load(carry.replay, m["replay"])
    self.env.set_state(m["env"])


def train(env, network, config: drq.DrQConfig, num_env_steps: int, seed: int, *,
          stack: int = 4, params: Any = None, clip_rewards: bool = True,
          log_every: int = 0, on_log: Callable[[int, dict], None] | None = None,
          frame_dtype=np.uint8, checkpoint_every: int = 0,
          save: Callable[[Carry], None] | None = None,
          restore: Callable[[Carry], Carry | None] | None = None,
          stop_requested: Callable[[], bool] | None = None) -> TrainResult:
  """Trains for `num_env_steps` environment steps (rounded up to whole iterations).

  Checkpointing (all optional): `restore(template)` is called once before the first step
  with the fresh loop's `Carry` (shapes to restore into) and returns a saved `Carry` or
  None; `save(carry)` is called every `checkpoint_every` env steps, after the last step, and
  when `stop_requested()` (polled after every step) turns true — the loop then returns with
  `stopped=True`. A resumed run continues the same computation: same PRNG streams, replay,
  and emulator states, so its parameters equal an uninterrupted run's.
  """
  loop = _Loop(env, network, config, num_env_steps, seed, stack, params, clip_rewards,
               frame_dtype)
  saving = save is not None and (checkpoint_every > 0 or stop_requested is not None)
  if restore is not None:
    saved = restore(loop.carry(0.0))
    if saved is not None:
      loop.load(saved)
  start, start_steps, stopped = time.time(), loop.steps, False
  while loop.steps < num_env_steps:
    before = loop.steps
    eps = loop.step()
    if _log_point(log_every, before, loop.steps):
      row = {"epsilon": eps,
             "steps_per_s": (loop.steps - start_steps) / (time.time() - start)}
      if loop.metrics:
        row["loss"] = float(loop.metrics["loss"])
        loop.losses.append((loop.steps, row["loss"]))
      if loop.scores:
        row["train_score_last10"] = float(np.mean(loop.scores[-10:]))
      if on_log is not None:
        on_log(loop.steps, row)
    stopped = stop_requested is not None and loop.steps < num_env_steps and stop_requested()
    if saving and (stopped or _log_point(checkpoint_every, before, loop.steps)
                   or loop.steps >= num_env_steps):
      save(loop.carry(time.time() - start))
    if stopped:
      break
  return TrainResult(state=loop.state, env_steps=loop.steps, game_scores=loop.scores,
                     seconds=loop.seconds_before + time.time() - start, losses=loop.losses,
                     stopped=stopped)


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
