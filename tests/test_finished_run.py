"""The end of a palm run: a stop signal during the final evaluation stops it like one during
training (one line, exit status 3), and a finished run's rerun reports its result instead of
evaluating, logging and writing TensorBoard files again (issue 24)."""
import os
import pathlib
import runpy
import signal

import numpy as np
import pytest

from palm_jax.evaluation import linear_eval
from palm_jax.jobs import run_job
from palm_jax.runtime import preemption

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _config(tmp_path):
  rng = np.random.default_rng(0)
  for name, n in (("train", 64), ("test", 32)):
    np.savez(tmp_path / f"{name}.npz", labels=np.arange(n) % 4,
             images=rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8))
  c = runpy.run_path(str(ROOT / "configs" / "smoke.py"))["get_config"]()
  c.total_env_steps = 64 * 16
  c.log.chunk_iterations = 8
  c.checkpoint.every_chunks = 1
  c.log.rollout_every_chunks = 0
  c.eval.train = f"npz:{tmp_path / 'train.npz'}"
  c.eval.test = f"npz:{tmp_path / 'test.npz'}"
  return c


def test_stop_during_final_evaluation_then_rerun_then_finished(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path / "cache"))  # the floor is not cached
  config, workdir = _config(tmp_path), str(tmp_path / "run")
  evaluate = linear_eval.evaluate_linear

  def interrupted(*args, **kwargs):  # Ctrl-C arrives while the probe is being fitted
    os.kill(os.getpid(), signal.SIGINT)
    return evaluate(*args, **kwargs)
  monkeypatch.setattr(linear_eval, "evaluate_linear", interrupted)
  with caplog.at_level("INFO"), pytest.raises(
      preemption.Preempted, match=r"^stopped by SIGINT after training, during the final "
      r"evaluation: checkpoint saved at env step 1,024; rerun"):
    run_job(config, workdir)
  # Every compilation is announced; two saves, one line (the rest at debug level).
  assert "Compiling and running the initialiser" in caplog.text
  assert "Compiling the training chunk" in caplog.text
  ours = [r for r in caplog.records if r.getMessage().startswith("Saving checkpoint ")
          and r.levelname == "INFO" and "checkpoint_manager" not in r.pathname]
  assert len(ours) == 1 and "later saves are logged" in ours[0].getMessage()
  caplog.clear()
  assert not os.path.exists(os.path.join(workdir, "eval", "metrics.jsonl"))
  monkeypatch.setattr(linear_eval, "evaluate_linear", evaluate)

  with caplog.at_level("INFO"):                      # the rerun evaluates, nothing retrains
    run_job(config, workdir)
  assert "already complete" in caplog.text and "Linear probe of the final encoder" in caplog.text
  assert "Compiling" not in caplog.text and "after the process started" in caplog.text
  eval_dir = pathlib.Path(workdir) / "eval"
  lines = (eval_dir / "metrics.jsonl").read_text().splitlines()
  boards = sorted(os.listdir(eval_dir / "tb"))
  caplog.clear()
  with caplog.at_level("INFO"):                      # finished: report, evaluate nothing
    result = run_job(config, workdir)[0]
  assert "The final encoder was already evaluated" in caplog.text
  assert "Linear probe of the final encoder" not in caplog.text
  assert (eval_dir / "metrics.jsonl").read_text().splitlines() == lines
  assert sorted(os.listdir(eval_dir / "tb")) == boards
  assert 0 <= result.metrics["eval/test_top1"] <= 1
  assert "eval/random_floor_test_top1" in result.metrics
