"""A PALM run's config, typed once at the boundary: the plan and the host loop's cadence.

    plan = Plan(config)          # iteration counts: chunk, warm-up, updates (computed once)
    cadence = Cadence(config)    # when the host loop logs, draws, checkpoints, snapshots

The trainers (`palm.trainer`, `palm.offline`, `palm.passive`) and the experience log take
these instead of reaching into `config.log`, `config.checkpoint` and `config.agent`; the
jitted side takes its own typed configs (`palm.step.StepConfig`, `agents.sac.SACConfig`,
`representation.simsiam.SimSiamConfig`, `envs.latent_env.EnvParams`), built by
`palm.programs`. Everything is checked by `palm.validate` before it gets here.
"""
from __future__ import annotations

import dataclasses
import math

from palm_jax.palm import budget


class Plan:
  """Iteration counts derived from the config (one iteration = one step of all envs)."""

  def __init__(self, config):
    n = config.env.num_envs
    self.chunk = int(config.log.chunk_iterations)
    iters = math.ceil(config.total_env_steps / n)
    self.total_iterations = math.ceil(iters / self.chunk) * self.chunk
    self.warmup_iterations = math.ceil(config.agent.warmup_env_steps / n)
    self.updates_per_step = budget.updates_per_step(config)
    self.total_updates = (max(self.total_iterations - self.warmup_iterations, 0)
                          * self.updates_per_step)
    self.env_steps_per_iteration = n

  @property
  def chunk_env_steps(self) -> int:
    return self.chunk * self.env_steps_per_iteration

  @property
  def total_env_steps(self) -> int:
    return self.total_iterations * self.env_steps_per_iteration

  def updates_at(self, env_steps: int) -> int:
    """SimSiam updates done after `env_steps` (none during the warm-up iterations)."""
    iteration = env_steps // self.env_steps_per_iteration
    return max(iteration - self.warmup_iterations, 0) * self.updates_per_step


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the host loop acts, in chunks (`config.log`, `config.checkpoint`)."""
  checkpoint_every_chunks: int
  keep: int                      # rolling checkpoints kept
  save_replay: bool
  snapshot_steps: tuple          # sorted env steps of permanent encoder snapshots
  rollout_every_chunks: int      # 0: never
  rollout_rows: int
  explore_envs: int              # fresh episodes of the exploration metrics (0: off)

  def __init__(self, config):
    c, log = config.checkpoint, config.log
    set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
    set_("checkpoint_every_chunks", int(c.every_chunks))
    set_("keep", int(c.keep))
    set_("save_replay", bool(c.get("save_replay", False)))
    set_("snapshot_steps", tuple(sorted({int(s) for s in c.get("snapshot_steps", ()) or ()})))
    set_("rollout_every_chunks", int(log.get("rollout_every_chunks", 0) or 0))
    set_("rollout_rows", int(log.get("rollout_rows", 8)))
    set_("explore_envs", int(log.get("explore_envs", 0) or 0))
