"""`config.job = "linear_eval"`: linear-probe top-1 of a run's frozen encoder.

The job restores the encoder of RUN_DIR (or the random one `config.encoder_init="random"`
asks for) and hands it to the library, `palm_jax.evaluation.linear_eval`, whose docstring
gives the command and what is measured: the probe, the weighted kNN classifier and, with
`config.cv.repeats`, the cross-validation. Beside a checkpoint's top-1 it prints the floor
the palm job prints at the end of training: the same probe on a randomly initialised
encoder of the same architecture (`random_floor_test_top1` in the result; cached, so free
after the first time; `config.random_floor=False` skips it). With `config.log.wandb=True`
the numbers (`linear_eval/...`) join the summary of the W&B run RUN_DIR's training logged
to (`wandb_log.evaluation_settings`).
"""
from __future__ import annotations

import jax
from absl import logging

from palm_jax.evaluation import features as features_lib
from palm_jax.evaluation.linear_eval import (check_labelled, describe, describe_knn_cv,
                                             evaluate_linear, load_split, random_floor,
                                             write_result)
from palm_jax.runtime import checkpoint, sharding, wandb_log
from palm_jax.runtime.errors import require

CONFIG = "configs/linear_eval.py"
REQUIRED = ("seed", "batch_size", "data")  # read without a default (checked by jobs.run_job)


def encoder_from_config(config, workdir: str) -> features_lib.Encoder:
  """The job's encoder: `config.encoder_init`, `config.step` (-1 = latest), `config.encoder`."""
  step = int(config.get("step", -1))
  return features_lib.load_encoder(
      workdir, step=None if step < 0 else step, init=config.get("encoder_init", "checkpoint"),
      kwargs=dict(config.get("encoder", {}) or {}), seed=int(config.get("seed", 0)),
      image_size=int(config.data.get("image_size", 32) or 32),
      dtype=config.get("dtype", "float32"))


def require_encoder(config, workdir: str) -> None:
  """One sentence when RUN_DIR has nothing to evaluate (and no random floor was asked)."""
  require(config.get("encoder_init", "checkpoint") == "random"
          or checkpoint.has_encoder(workdir),
          f"--workdir={workdir} holds no checkpoint to evaluate; point it at a PALM run's "
          "directory, or pass --config.encoder_init=random for the random-encoder floor.")


def run(config, workdir: str) -> None:
  """The job: `config` as in configs/linear_eval.py."""
  mesh = sharding.make_mesh()
  sharding.check_divisible("batch_size", int(config.batch_size), mesh)
  seed = int(config.seed)
  # Data first: a wrong path or spec should fail before the encoder is built or compiled.
  train = load_split(config.data.train, config.data, seed=seed, field="data.train")
  test = load_split(config.data.test, config.data, seed=seed, field="data.test")
  check_labelled(train, "training")
  check_labelled(test, "test")
  require_encoder(config, workdir)
  wandb = wandb_log.evaluation_settings(config, workdir)
  wandb_log.require_installed(wandb)
  encoder = encoder_from_config(config, workdir)
  result = evaluate_linear(encoder, train, test,
                           batch_size=int(config.batch_size), probe=config.get("probe"),
                           data=config.data, seed=seed, mesh=mesh, knn=config.get("knn"),
                           cv=config.get("cv"))
  floor = ""
  if config.get("random_floor", True) and encoder.init != "random":
    result["random_floor_test_top1"] = random_floor(
        encoder.kwargs, train, test, seed=seed, mesh=mesh, batch_size=int(config.batch_size),
        probe=config.get("probe"))["test_top1"]
    floor = (f" (a random encoder of the same architecture: "
             f"{result['random_floor_test_top1']:.4f})")
  path = write_result(workdir, result)
  wandb_log.write_summary(workdir, wandb, wandb_log.flat_numbers(result, "linear_eval"))
  logging.info("Linear probe of %s on %s: test top-1 %.4f%s, train top-1 %.4f (weight decay "
               "%g) → %s", describe(encoder, workdir), result["dataset"],
               result["test_top1"], floor, result["train_top1"], result["weight_decay"], path)
  if jax.process_index() == 0:
    print(f"linear_eval: test top-1 {result['test_top1']:.4f}{floor}, train top-1 "
          f"{result['train_top1']:.4f} ({result['num_train']} train / "
          f"{result['num_test']} test images){describe_knn_cv(result)} with "
          f"{describe(encoder, workdir)}; wrote {path}")
