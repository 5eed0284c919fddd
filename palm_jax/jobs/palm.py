"""`config.job = "palm"` (and `"passive"`): pretrain an encoder, then evaluate it.

    python -m palm_jax.main --config=configs/cifar10.py --workdir=DIR

What to build, then the library (`palm_jax.palm`):
  * playing runs — one member, or `config.population.seeds` members in one program —
    train in `palm.trainer` (the one host loop);
  * `simsiam.pairs` in ("real", "real_aug") need no environment: offline SimSiam on
    `simsiam.real_data` (`palm.offline`; same budget and checkpoint layout);
  * `config.job = "passive"`: the same encoder and budget on a palm run's experience log
    (`palm.passive`).
Then the evaluator this job plugs in (big_vision's way: the trainer never imports an
evaluation): with `config.eval.train`/`test` set, the linear probe of every member's final
encoder beside a random encoder of the same architecture (`evaluation.linear_eval`),
written to `<member>/eval/linear_eval_*.json`. The datasets are loaded before anything
compiles, so a wrong spec fails in seconds, not after training.
"""
from __future__ import annotations

import json
import os

from absl import logging

from palm_jax.evaluation import features, linear_eval
from palm_jax.palm import offline, passive, programs, trainer
from palm_jax.palm.config import Plan
from palm_jax.representation import simsiam
from palm_jax.runtime import metrics as metrics_lib
from palm_jax.runtime import preemption, run_records, sharding, wandb_log
from palm_jax.runtime.errors import require

# The config file of each job here, and the top-level fields it reads without a default
# (checked by `jobs.run_job` before anything runs).
CONFIG = {"palm": "configs/cifar10.py", "passive": "configs/cifar10.py --config.job=passive"}
_PALM_FIELDS = ("seed", "total_env_steps", "batch_size", "generator", "generator_dtype", "env",
                "agent", "simsiam", "reward", "replay", "loop", "log", "checkpoint", "eval")
REQUIRED = {"palm": _PALM_FIELDS, "passive": _PALM_FIELDS + ("passive",)}


def eval_datasets(config):
  """`(train, test)` Datasets of `config.eval` loaded now (before compiling), or None."""
  if not config.eval.get("train"):
    return None
  require(bool(config.eval.get("test")), "config.eval.train is set but config.eval.test is "
          "empty; give both (e.g. tfds:cifar10:train and tfds:cifar10:test) or neither.")
  train = linear_eval.load_split(config.eval.train, seed=config.seed, field="eval.train")
  test = linear_eval.load_split(config.eval.test, seed=config.seed, field="eval.test")
  linear_eval.check_labelled(train, "eval.train")
  linear_eval.check_labelled(test, "eval.test")
  return train, test


def final_probe(result: trainer.TrainResult, ss_cfg, env_steps: int, mesh, eval_data) -> dict:
  """The linear probe of a member's final encoder on `config.eval` data, beside the floor
  of a random encoder of the same architecture (eval/linear_eval_*.json)."""
  config, state = result.config, result.state
  ss_state = state if isinstance(state, simsiam.SimSiamState) else state.simsiam
  meta = programs.encoder_meta(ss_cfg)
  encoder = features.from_variables(simsiam.encoder_variables(ss_state), meta, step=env_steps)
  done = os.path.join(result.workdir, "eval", linear_eval.record_name(
      {"dataset": eval_data[0].name, "test_name": eval_data[1].name,
       "encoder_init": encoder.init, "step": env_steps}))
  if os.path.exists(done):  # a finished run's rerun: report, do not evaluate (or log) again
    with open(done) as f:
      out = json.load(f)
    logging.info("The final encoder was already evaluated: test top-1 %.4f (random encoder "
                 "%.4f) in %s.", out["test_top1"], out.get("random_floor_test_top1", float("nan")),
                 done)
    return _scalars(out)
  out = linear_eval.evaluate_linear(encoder, *eval_data, seed=config.seed, mesh=mesh)
  floor = linear_eval.random_floor(meta, *eval_data, seed=config.seed, mesh=mesh)
  out["random_floor_test_top1"] = floor["test_top1"]
  path = linear_eval.write_result(result.workdir, out)
  wandb_log.write_summary(result.workdir, wandb_log.Settings.from_config(config),
                          _scalars(out))
  logging.info("Linear probe of the final encoder on %s: test top-1 %.4f (train %.4f; a "
               "random encoder of the same architecture: %.4f) -> %s", out["dataset"],
               out["test_top1"], out["train_top1"], floor["test_top1"], path)
  return _scalars(out)


def _scalars(out: dict) -> dict:
  return {f"eval/{k}": v for k, v in out.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _train_offline(config, workdir: str) -> list[trainer.TrainResult]:
  """SimSiam on real images only (pairs real / real_aug) or on a run's experience log."""
  _, plan, cadence = trainer.prepare(config)
  ss_cfg = programs.simsiam_config(config, plan.total_updates)
  loop = passive.train_passive if config.job == "passive" else offline.train_offline
  run_records.write_config(workdir, config.job, config)
  ss_state, metrics = loop(config, workdir, plan, cadence, ss_cfg,
                           meta_fn=lambda steps: programs.meta(config, plan, ss_cfg, steps))
  return [trainer.TrainResult(ss_state, metrics, workdir, config)]


def run(config, workdir: str, *, allow_config_change: bool = False
        ) -> list[trainer.TrainResult]:
  """The job: train (or resume) every member, then its final probe when asked."""
  eval_data = eval_datasets(config)  # every dataset resolved before compiling
  if offline.is_offline(config) or config.job == "passive":
    results = _train_offline(config, workdir)
  else:
    results = trainer.train(config, workdir, allow_config_change=allow_config_change)
  plan = Plan(config)
  env_steps = plan.total_env_steps
  ss_cfg = programs.simsiam_config(config, plan.total_updates)
  mesh = sharding.make_mesh()
  out = []
  for r in results:
    metrics = dict(r.metrics)
    if eval_data is not None:  # the checkpoint is saved: a stop signal needs no more saving
      with preemption.stop_at_once("training, during the final evaluation",
                                   f"env step {env_steps:,}"):
        metrics.update(final_probe(r, ss_cfg, env_steps, mesh, eval_data))
    keys = ("simsiam/loss", "reward/mean", "sac/critic_loss", "eval/test_top1",
            "eval/random_floor_test_top1")
    final = ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)
    logging.info("Run finished at %s env steps, %s after the process started; outputs in %s "
                 "(metrics.jsonl, tb/, rollouts/, checkpoints/, eval/)%s.", f"{env_steps:,}",
                 metrics_lib.since_start(), r.workdir, f"; final {final}" if final else "")
    out.append(r._replace(metrics=metrics))
  return out
