"""A run written before the redesign (issue 23) restores and resumes with today's code.

tests/fixtures/old_layout_smoke/ was written by the flat-layout code of commit 391b84a
(tests/fixtures/make_old_layout_run.py): configs/smoke.py for 1,024 env steps, its newest
checkpoint, config_palm.json, metrics.jsonl, and the encoder that code's `restore_encoder`
returned.
"""
import json
import os
import pathlib
import runpy
import shutil

import jax
import numpy as np

from palm_jax.jobs import run_job
from palm_jax.runtime import checkpoint

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "old_layout_smoke"


def _config(total):
  c = runpy.run_path(str(ROOT / "configs" / "smoke.py"))["get_config"]()
  c.eval.train = ""                       # the settings make_old_layout_run.py used
  c.total_env_steps = total
  c.log.chunk_iterations = 8
  c.checkpoint.every_chunks = 1
  c.log.rollout_every_chunks = 0
  return c


def test_old_layout_checkpoint_restores_and_resumes(tmp_path, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(FIXTURE, workdir)
  _, variables, meta = checkpoint.restore_encoder(str(workdir))
  old = np.load(workdir / "encoder_by_old_code.npz")
  flat = dict((jax.tree_util.keystr(k), np.asarray(v))
              for k, v in jax.tree_util.tree_flatten_with_path(variables)[0])
  assert sorted(flat) == sorted(old.files)
  for k in old.files:
    np.testing.assert_array_equal(flat[k], old[k])
  old_meta = json.loads((workdir / "encoder_meta_by_old_code.json").read_text())
  assert {k: meta[k] for k in old_meta} == old_meta

  with caplog.at_level("INFO"):           # the finished old run: nothing to train
    run_job(_config(1024), str(workdir))
  assert "already complete (1,024 env steps)" in caplog.text
  caplog.clear()
  with caplog.at_level("INFO"):           # extended: resumes from the old checkpoint
    run_job(_config(2048), str(workdir), allow_config_change=True)
  assert "Resumed from the checkpoint at env step 1,024" in caplog.text, caplog.text[-2000:]
  assert "Run finished at 2,048 env steps" in caplog.text
  steps = [json.loads(l)["step"] for l in open(workdir / "metrics.jsonl")]
  assert steps == sorted(set(steps)) and steps[-1] == 2048
  assert checkpoint.restore_encoder(str(workdir))[2]["env_steps"] == 2048
  assert os.path.isdir(workdir / "checkpoints" / "2048")
