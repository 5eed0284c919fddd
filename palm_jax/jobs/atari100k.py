r"""The `atari100k` job: DrQ(ε) on one game for 100k agent steps, then evaluation.

    python -m palm_jax.main --config=configs/atari/drq.py:pong --workdir=/tmp/drq_pong

One game, one seed (`config.seed`). Trains `config.total_env_steps` agent steps (100k =
400k frames, the Atari 100k budget of Kaiser et al. 2019), then plays
`config.eval_episodes` whole games at ε_eval (100 episodes and ε = 0.001 in Dopamine's
DrQ_eps.gin: `MaxEpisodeEvalRunner.num_eval_episodes`, `JaxDQNAgent.epsilon_eval`) and
writes `WORKDIR/score.json`:

    {"game", "seed", "score": mean eval return, "eval_scores": [...], "hns",
     "random", "human", "env_steps", "train_seconds", "eval_seconds", "encoder_init", ...}

Training metrics (loss, ε, steps/s, recent game scores) go to `WORKDIR/metrics.jsonl`,
with progress and ETA in the log.

Resuming: every `config.checkpoint_every` agent steps, at the end of training and on
SIGTERM/SIGINT (`palm_jax.runtime.preemption`: exit status 3), `WORKDIR/checkpoints/<step>` gets
the whole loop — agent, optimiser, replay (0.7 GB of frames at 100k steps, raw), frame
stacks, counters and the emulators' machine states — and rerunning the same command
continues exactly where it stopped (the parameters equal an uninterrupted run's). A finished training is not
repeated: a rerun restores its last checkpoint and only evaluates. Saves are synchronous
(the replay is written in place by the next step); `config.checkpoint_keep` are kept.

`config.policy = "random"` trains nothing and scores the uniform random policy (ε = 1) in
the same wrapper and protocol: the baseline of a short run, measured rather than taken from
the table (whose random scores came from a different protocol, see `atari_scores`).

The encoder (the conv torso, `palm_jax/models/atari_encoder.py`) starts from scratch
(`config.encoder_init = "random"`) or from a PALM run's saved encoder
(`"palm"`, with `config.encoder_workdir` that run's workdir, read by
`palm_jax.runtime.checkpoint.restore_encoder`); `config.freeze_encoder = True` keeps it fixed and
trains only the Q head. "PALM + DrQ" against "DrQ" is that one switch.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import logging

from palm_jax.agents import drq
from palm_jax.atari import trainer as drq_loop
from palm_jax.envs import atari
from palm_jax.evaluation import atari_scores
from palm_jax.models.atari_encoder import atari_q_network
from palm_jax.runtime import files, host_loop, wandb_log
from palm_jax.runtime import run_records as preflight
from palm_jax.runtime.errors import UserError
from palm_jax.runtime.metrics import MetricWriter, Progress

CONFIG = "configs/atari/drq.py:<game>"
# Read without a default (checked by jobs.run_job before anything runs).
REQUIRED = ("game", "seed", "total_env_steps", "num_envs", "policy", "agent", "log_every",
            "checkpoint_every", "checkpoint_keep", "eval_episodes", "eval_num_envs",
            "eval_max_env_steps", "terminal_on_life_loss", "noop_max", "max_episode_steps",
            "repeat_action_probability", "encoder_init", "encoder_workdir", "freeze_encoder")

ENCODER_INITS = ("random", "palm")
POLICIES = ("drq", "random")


def agent_config(config) -> drq.DrQConfig:
  """`config.agent` (a ConfigDict with DrQConfig's fields) → DrQConfig."""
  fields = {k: v for k, v in config.agent.items()}
  unknown = set(fields) - set(drq.DrQConfig.__dataclass_fields__)
  if unknown:
    raise UserError(f"config.agent has unknown fields {sorted(unknown)}; the DrQ(ε) "
                    f"fields are {sorted(drq.DrQConfig.__dataclass_fields__)}.")
  return drq.DrQConfig(**fields)


def check_config(config) -> None:
  """Refuses bad values with one sentence, before anything is built."""
  # No silent default game: a 100k-step run of a game nobody chose is hours lost.
  if not str(config.game).strip():
    raise UserError("no Atari game given; name it after the config file, e.g. "
                    "--config=configs/atari/drq.py:pong (or --config.game=pong), one of the "
                    f"Atari 100k games: {', '.join(atari.ATARI_100K_GAMES)}.")
  atari.game_id(config.game)
  if config.policy not in POLICIES:
    raise UserError(f"config.policy={config.policy!r} is not one of {POLICIES} ('random': "
                    "no training, the uniform random policy's score in the same wrapper).")
  if int(config.checkpoint_every) < 0 or int(config.checkpoint_keep) < 1:
    raise UserError(f"config.checkpoint_every={config.checkpoint_every} must be >= 0 (0: only "
                    f"at the end) and config.checkpoint_keep={config.checkpoint_keep} >= 1.")
  if config.encoder_init not in ENCODER_INITS:
    raise UserError(f"config.encoder_init={config.encoder_init!r} is not one of "
                    f"{ENCODER_INITS}.")
  if config.encoder_init == "palm" and not config.encoder_workdir:
    raise UserError("config.encoder_init='palm' needs config.encoder_workdir, the workdir "
                    "of the PALM run whose encoder to load.")
  if config.freeze_encoder and config.encoder_init == "random":
    raise UserError("config.freeze_encoder=True with a random encoder trains only the head "
                    "on random features; set config.encoder_init='palm' (or unfreeze).")
  for name in ("total_env_steps", "eval_episodes", "num_envs", "eval_num_envs"):
    if int(config[name]) < 1:
      raise UserError(f"config.{name}={config[name]} must be at least 1.")
  wandb_log.require_installed(wandb_log.Settings.from_config(config))
  a = agent_config(config)
  if a.batch_size < 1 or a.update_horizon < 1 or a.update_period < 1 or \
     a.target_update_period < 1:
    raise UserError("config.agent.batch_size, update_horizon, update_period and "
                    "target_update_period must all be at least 1.")


def read_palm_encoder(encoder_workdir: str):
  """`restore_encoder` of a PALM run, refused with one sentence when there is none."""
  from palm_jax.runtime.checkpoint import restore_encoder  # pylint: disable=g-import-not-at-top
  restored = restore_encoder(encoder_workdir)
  if restored is None:
    raise UserError(f"no checkpoint in config.encoder_workdir={encoder_workdir!r}; point "
                    "it at a PALM run's workdir or use config.encoder_init='random'.")
  return restored


def load_palm_encoder(params, encoder_workdir: str, restored):
  """Puts a PALM run's encoder parameters into `params['params']['encoder']`."""
  step, variables, _ = restored
  enc = variables.get("params", variables)
  want = params["params"]["encoder"]
  shapes = lambda t: jax.tree.map(lambda x: tuple(np.shape(x)), t)  # noqa: E731
  if jax.tree.structure(enc) != jax.tree.structure(want) or shapes(enc) != shapes(want):
    raise UserError(f"the encoder saved in {encoder_workdir!r} is not the Atari conv torso "
                    "(its parameter shapes differ); pretrain it with an Atari PALM config "
                    "or use config.encoder_init='random'.")
  logging.info("Encoder from %s (PALM step %d).", encoder_workdir, step)
  new = dict(params["params"])
  new["encoder"] = jax.tree.map(lambda x: np.asarray(x, np.float32), enc)
  return {**params, "params": new}


def initial_params(config, network, restored):
  """Fresh parameters (seeded like `drq_loop.train`), with the PALM encoder if asked."""
  if restored is None:
    return None  # drq_loop.train initialises them
  key = jax.random.split(jax.random.PRNGKey(config.seed))[1]
  params = network.init(jax.random.split(key)[0],
                        np.zeros((1, 84, 84, atari.STACK_SIZE), np.float32))
  return load_palm_encoder(params, config.encoder_workdir, restored)


def _checkpointing(config, workdir: str):
  """(save, restore) callables over `WORKDIR/checkpoints` for `drq_loop.train`."""
  from palm_jax.runtime import checkpoint  # pylint: disable=g-import-not-at-top
  # Synchronous: the replay's arrays are written in place by the very next agent step.
  ckpt = checkpoint.Checkpointer(checkpoint.checkpoint_dir(workdir),
                                 max_to_keep=int(config.checkpoint_keep), async_save=False)
  meta = {"job": "atari100k", "game": atari.game_id(config.game), "seed": int(config.seed)}

  def save(carry: drq_loop.Carry) -> None:
    ckpt.save(carry.meta["steps"], state=carry.arrays, replay=carry.replay,
              meta={**meta, "loop": carry.meta})

  def restore(template: drq_loop.Carry):
    out = ckpt.restore(template.arrays, replay_template=template.replay)
    if out is None:
      return None
    step, arrays, replay, saved = out
    if replay is None:
      raise UserError(f"the checkpoint of step {step:,} in {ckpt.directory} has no readable "
                      "replay buffer, so the run cannot continue as it was; move it aside "
                      "or use a new --workdir.")
    logging.info("Resuming %s from agent step %s (%d games played).", meta["game"],
                 f"{step:,}", len(saved["loop"]["scores"]))
    return drq_loop.Carry(arrays=arrays, replay=replay, meta=saved["loop"])

  return ckpt, save, restore


def run(config, workdir: str) -> dict:
  check_config(config)
  agent = agent_config(config)
  preflight.write_config(workdir, "atari100k", config)  # what a resume is checked against
  # Read the PALM encoder first: a wrong workdir is refused before anything compiles.
  restored = (read_palm_encoder(config.encoder_workdir)
              if config.encoder_init == "palm" and config.policy == "drq" else None)
  env_kwargs = dict(terminal_on_life_loss=config.terminal_on_life_loss,
                    noop_max=config.noop_max, max_episode_steps=config.max_episode_steps,
                    repeat_action_probability=config.repeat_action_probability)
  game = atari.game_id(config.game)
  env = atari.AtariVectorEnv(game, config.num_envs, config.seed * 1000, **env_kwargs)
  network = atari_q_network(env.num_actions, freeze_encoder=config.freeze_encoder)
  writer = MetricWriter(workdir, wandb=wandb_log.Settings.from_config(config))
  if config.policy == "random":  # the baseline: no training, uniform random actions
    result = None
    params = network.init(jax.random.PRNGKey(config.seed),
                          np.zeros((1, 84, 84, atari.STACK_SIZE), np.float32))
    epsilon = 1.0
  else:
    params = initial_params(config, network, restored)
    ckpt, save, restore = _checkpointing(config, workdir)
    progress = Progress(int(config.total_env_steps), unit="agent steps")

    def on_log(step, row):
      writer.write_scalars(step, row)
      logging.info("%s step %d: %s", game, step,
                   ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
      progress.update(step)

    def restore_and_trim(template):
      saved = restore(template)
      if saved is not None:  # metrics logged after the checkpoint are logged again
        writer.truncate_after(int(saved.meta["steps"]))
        progress.update(int(saved.meta["steps"]), timed=False)
      return saved

    with host_loop.HostLoop(game, ckpt=ckpt) as loop:
      loop.own(ckpt)
      result = drq_loop.train(env, network, agent, int(config.total_env_steps), config.seed,
                              params=params, log_every=int(config.log_every),
                              on_log=on_log, checkpoint_every=int(config.checkpoint_every),
                              save=save, restore=restore_and_trim,
                              stop_requested=loop.stop_requested)
      if result.stopped:
        loop.own(writer)
        loop.stop(f"{result.env_steps:,} agent steps of {game}",
                  f"agent step {result.env_steps:,} in {ckpt.directory}")
    params, epsilon = result.state.params, agent.epsilon_eval
  eval_env = atari.AtariVectorEnv(game, config.eval_num_envs, config.seed * 1000 + 500,
                                  **env_kwargs)
  start = time.time()
  scores = drq_loop.evaluate(eval_env, network, params, int(config.eval_episodes), epsilon,
                             config.seed + 1,
                             max_env_steps=int(config.eval_max_env_steps) or None)
  eval_seconds = time.time() - start
  score = float(np.mean(scores))
  out = {
      "game": game, "seed": int(config.seed), "score": score,
      "eval_scores": scores, "hns": atari_scores.human_normalized(game, score),
      "random": atari_scores.RANDOM_SCORES[atari_scores.score_key(game)],
      "human": atari_scores.HUMAN_SCORES[atari_scores.score_key(game)],
      "policy": config.policy, "eval_epsilon": epsilon,
      "env_steps": result.env_steps if result else 0,
      "train_seconds": result.seconds if result else 0.0,
      "eval_seconds": eval_seconds, "train_games": len(result.game_scores) if result else 0,
      "train_score_last10": (float(np.mean(result.game_scores[-10:]))
                             if result and result.game_scores else None),
      "encoder_init": config.encoder_init, "freeze_encoder": bool(config.freeze_encoder),
  }
  files.write_json(os.path.join(workdir, "score.json"), out)
  writer.write_summary({k: out[k] for k in ("score", "hns", "train_score_last10")
                        if out[k] is not None})
  writer.close()
  logging.info("%s: score %.2f (HNS %.3f) over %d episodes; train %.0f s, eval %.0f s",
               game, score, out["hns"], len(scores), out["train_seconds"], eval_seconds)
  return out
