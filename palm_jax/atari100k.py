r"""The `atari100k` job: DrQ(ε) on one game for 100k agent steps, then evaluation.

    python -m palm_jax.main --config=configs/atari/drq.py:pong --workdir=/tmp/drq_pong

One game, one seed (`config.seed`). Trains `config.total_env_steps` agent steps (100k =
400k frames, the Atari 100k budget of Kaiser et al. 2019), then plays
`config.eval_episodes` whole games at ε_eval (100 episodes and ε = 0.001 in Dopamine's
DrQ_eps.gin: `MaxEpisodeEvalRunner.num_eval_episodes`, `JaxDQNAgent.epsilon_eval`) and
writes `WORKDIR/score.json`:

    {"game", "seed", "score": mean eval return, "eval_scores": [...], "hns",
     "random", "human", "env_steps", "train_seconds", "eval_seconds", "encoder_init", ...}

Training metrics (loss, ε, steps/s, recent game scores) go to `WORKDIR/metrics.jsonl`.

The encoder (the conv torso, `palm_jax/models/atari_encoder.py`) starts from scratch
(`config.encoder_init = "random"`) or from a PALM run's saved encoder
(`"palm"`, with `config.encoder_workdir` that run's workdir, read by
`palm_jax.checkpoint.restore_encoder`); `config.freeze_encoder = True` keeps it fixed and
trains only the Q head. "PALM + DrQ" against "DrQ" is that one switch.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import logging

from palm_jax.agents import drq, drq_loop
from palm_jax.envs import atari
from palm_jax.errors import UserError
from palm_jax.evaluation import atari_scores
from palm_jax.metrics import MetricWriter
from palm_jax.models.atari_encoder import atari_q_network

ENCODER_INITS = ("random", "palm")


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
  atari.game_id(config.game)
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
  a = agent_config(config)
  if a.batch_size < 1 or a.update_horizon < 1 or a.update_period < 1 or \
     a.target_update_period < 1:
    raise UserError("config.agent.batch_size, update_horizon, update_period and "
                    "target_update_period must all be at least 1.")


def read_palm_encoder(encoder_workdir: str):
  """`restore_encoder` of a PALM run, refused with one sentence when there is none."""
  from palm_jax.checkpoint import restore_encoder  # pylint: disable=g-import-not-at-top
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


def run(config, workdir: str) -> dict:
  check_config(config)
  agent = agent_config(config)
  # Read the PALM encoder first: a wrong workdir is refused before anything compiles.
  restored = (read_palm_encoder(config.encoder_workdir)
              if config.encoder_init == "palm" else None)
  env_kwargs = dict(terminal_on_life_loss=config.terminal_on_life_loss,
                    noop_max=config.noop_max, max_episode_steps=config.max_episode_steps,
                    repeat_action_probability=config.repeat_action_probability)
  game = atari.game_id(config.game)
  env = atari.AtariVectorEnv(game, config.num_envs, config.seed * 1000, **env_kwargs)
  network = atari_q_network(env.num_actions, freeze_encoder=config.freeze_encoder)
  params = initial_params(config, network, restored)
  writer = MetricWriter(workdir)

  def on_log(step, row):
    writer.write_scalars(step, row)
    logging.info("%s step %d: %s", game, step,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items()))

  result = drq_loop.train(env, network, agent, int(config.total_env_steps), config.seed,
                          params=params, log_every=int(config.log_every), on_log=on_log)
  eval_env = atari.AtariVectorEnv(game, config.eval_num_envs, config.seed * 1000 + 500,
                                  **env_kwargs)
  start = time.time()
  scores = drq_loop.evaluate(eval_env, network, result.state.params,
                             int(config.eval_episodes), agent.epsilon_eval,
                             config.seed + 1,
                             max_env_steps=int(config.eval_max_env_steps) or None)
  eval_seconds = time.time() - start
  score = float(np.mean(scores))
  out = {
      "game": game, "seed": int(config.seed), "score": score,
      "eval_scores": scores, "hns": atari_scores.human_normalized(game, score),
      "random": atari_scores.RANDOM_SCORES[atari_scores.score_key(game)],
      "human": atari_scores.HUMAN_SCORES[atari_scores.score_key(game)],
      "env_steps": result.env_steps, "train_seconds": result.seconds,
      "eval_seconds": eval_seconds, "train_games": len(result.game_scores),
      "train_score_last10": (float(np.mean(result.game_scores[-10:]))
                             if result.game_scores else None),
      "encoder_init": config.encoder_init, "freeze_encoder": bool(config.freeze_encoder),
  }
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "score.json"), "w") as f:
      json.dump(out, f, indent=2)
  writer.close()
  logging.info("%s: score %.2f (HNS %.3f) over %d episodes; train %.0f s, eval %.0f s",
               game, score, out["hns"], len(scores), result.seconds, eval_seconds)
  return out
