"""The training budget a PALM config implies, and how much of the latent the agent steers.

Printed once when a run starts (`log_budget`), so the budget is a choice, not an accident.
With `N = env.num_envs` environments, batch `B`, `U` updates per iteration (one iteration =
one step of every environment) and `I` iterations after warm-up:

    SimSiam updates         = I · U
    samples per frame (UTD) = U · B / N          (how often each generated frame is sampled,
                                                  on average, over the run)
    epochs equivalent       = I · U · B / EPOCH_IMAGES   (as if the same images were a
                                                  50,000-image CIFAR-10 train split)

SimSiam's CIFAR schedule (Chen & He 2021, Sec. 4 / their `main_simsiam.py` CIFAR note):
800 epochs of 50,000 images in batches of 512, i.e. 78,125 updates.

`agent.samples_per_frame` is the update-to-data knob: when set, `U = spf · N / B` (it must
come out a positive integer); when unset, `agent.updates_per_step` is `U` as before.

Control share. With a constant action `a` held for a whole episode (`latent_env.ema_latent`,
`z_0 = eps_0`, `z_t = β z_{t−1} + (1−β)(α s a + (1−α) eps_t)`, eps i.i.d. N(0, I_D)), the
frame at index `t` is, exactly,

    z_t = α s (1 − β^t) a  +  β^t eps_0 + (1−β)(1−α) Σ_{k=1..t} β^{t−k} eps_k ,

so for a saturated action (`|a_i| = 1`, `||a||² = D`)

    E||action part||² / D = α² s² (1 − β^t)²
    E||noise part||²  / D = β^{2t} + (1−β)² (1−α)² (1 − β^{2t}) / (1 − β²)    (β < 1)

and the action's share of `E||z_t||²` (the cross term has mean 0) is
`A_t / (A_t + N_t)`. Reported at the episode's last frame `t = episode_length − 1` and
averaged over the episode's frames. (The mapping network normalises `z`, so this energy
share is the share of the direction the agent sets.)
"""
from __future__ import annotations

import math

from absl import logging

from palm_jax.runtime.errors import UserError

EPOCH_IMAGES = 50_000          # CIFAR-10's train split: the unit of "epochs equivalent"
SIMSIAM_CIFAR_UPDATES = 78_125  # 800 epochs x 50,000 / 512 (SimSiam's CIFAR schedule)


def updates_per_step(config) -> int:
  """`U`: from `agent.samples_per_frame` when set, else `agent.updates_per_step`."""
  spf = config.agent.get("samples_per_frame", None)
  if spf is None:
    return int(config.agent.updates_per_step)
  n, b = int(config.env.num_envs), int(config.batch_size)
  u = float(spf) * n / b
  if u < 1 - 1e-9 or abs(u - round(u)) > 1e-6:
    lo = max(1, math.floor(u))
    raise UserError(
        f"config.agent.samples_per_frame={spf} gives {u:g} updates per iteration "
        f"(samples_per_frame * num_envs {n} / batch_size {b}), which must be a positive "
        f"integer; use e.g. {lo * b / n:g} or {(lo + 1) * b / n:g}, or unset it and set "
        "agent.updates_per_step.")
  return int(round(u))


def action_share(alpha: float, beta: float, t: int, action_scale: float = 1.0) -> float:
  """Share of `E||z_t||²` due to a constant saturated action, at frame `t` (module doc)."""
  a = (alpha * action_scale * (1.0 - beta ** t)) ** 2
  if beta < 1.0:
    geo = (1.0 - beta ** (2 * t)) / (1.0 - beta ** 2)
  else:
    geo = float(t)
  noise = beta ** (2 * t) + (1.0 - beta) ** 2 * (1.0 - alpha) ** 2 * geo
  return a / (a + noise) if a + noise > 0 else 0.0


def episode_action_share(alpha: float, beta: float, episode_length: int,
                         action_scale: float = 1.0) -> tuple[float, float]:
  """`(share at the last frame, mean share over the frames 0..L−1)`."""
  shares = [action_share(alpha, beta, t, action_scale) for t in range(episode_length)]
  return shares[-1], sum(shares) / len(shares)


def summary(config, total_iterations: int, warmup_iterations: int) -> dict:
  """The numbers of the module doc for a config and its iteration counts."""
  u = updates_per_step(config)
  n, b = int(config.env.num_envs), int(config.batch_size)
  updates = max(total_iterations - warmup_iterations, 0) * u
  frames = total_iterations * n
  end, mean = episode_action_share(float(config.env.alpha), float(config.env.beta),
                                   int(config.env.episode_length),
                                   float(config.env.action_scale))
  return {"updates_per_step": u, "simsiam_updates": updates,
          "samples_per_frame": u * b / n, "frames": frames,
          "samples_per_frame_run": updates * b / max(frames, 1),
          "epochs_equivalent": updates * b / EPOCH_IMAGES,
          "fraction_of_simsiam_schedule": updates * b / (SIMSIAM_CIFAR_UPDATES * 512),
          "action_share_end": end, "action_share_mean": mean}


def log_budget(config, total_iterations: int, warmup_iterations: int) -> dict:
  """Logs the budget block once at the start of a run; returns `summary(...)`."""
  s = summary(config, total_iterations, warmup_iterations)
  e = config.env
  logging.info(
      "Training budget:\n"
      "  SimSiam updates         %s (%d per iteration of %d envs, batch %d)\n"
      "  samples per frame       %.3f per iteration (%.3f over the run, warm-up included)\n"
      "  epochs equivalent       %.1f of %s images (SimSiam's CIFAR schedule: 800 = %s "
      "updates of 512; this run: %.1f%% of its samples)\n"
      "  action's share of ||z||^2 for a constant saturated action (alpha %g, beta %g, "
      "episode %d, action_scale %g): %.3f at the episode's end, %.3f averaged over it",
      f"{s['simsiam_updates']:,}", s["updates_per_step"], e.num_envs, config.batch_size,
      s["samples_per_frame"], s["samples_per_frame_run"], s["epochs_equivalent"],
      f"{EPOCH_IMAGES:,}", f"{SIMSIAM_CIFAR_UPDATES:,}",
      100 * s["fraction_of_simsiam_schedule"], e.alpha, e.beta, e.episode_length,
      e.action_scale, s["action_share_end"], s["action_share_mean"])
  return s
