"""The experience log of a PALM run (palm_jax/experience_log.py): a CLI run killed with
SIGKILL after a checkpoint and resumed logs every env step exactly once, with the frames of
an uninterrupted run."""
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from palm_jax import checkpoint, train
from palm_jax.data import frame_log
from palm_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/test_palm_smoke.py's config (3 chunks of 8 iterations of 64 environments, a
# checkpoint after each, rollouts every 2), so every compiled program is shared with those
# tests through the persistent cache; the log adds only its small gather.
OVERRIDES = {"total_env_steps": 64 * 24, "log.chunk_iterations": 8,
             "checkpoint.every_chunks": 1, "log.rollout_every_chunks": 2, "eval.train": "",
             "experience.log": True}


def _config():
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  for k, v in OVERRIDES.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


def _read(workdir):
  log = frame_log.FrameLog(os.path.join(str(workdir), "experience"))
  return log, log.read(range(len(log)))


def test_config_mistakes_are_one_sentence(tmp_path, monkeypatch):
  c = _config()
  c.experience.every = 0
  with pytest.raises(UserError, match=r"config.experience.every=0 must lie in \[1, "):
    train.train(c, str(tmp_path))
  c = _config()
  c.replay.capacity = 64 * 4
  with pytest.raises(UserError, match=r"4 time slots .* fewer than log.chunk_iterations=8"):
    train.train(c, str(tmp_path))

  # A disk too small for the whole log: refused at start, one sentence (the init program
  # has not been compiled yet: the check runs right after tracing shapes).
  monkeypatch.setattr(checkpoint, "free_bytes", lambda path: 10_000)
  with pytest.raises(UserError, match=r"the experience log \(config.experience.log\) needs "
                     r"about [0-9.]+ MB for 1,536 frames .* 0.01 MB is free; subsample frames"):
    train.train(_config(), str(tmp_path / "small_disk"))


@pytest.mark.slow
def test_cli_sigkill_then_resume_logs_each_step_once_with_the_uninterrupted_frames(tmp_path,
                                                                                  caplog):
  config = _config()
  train.train(config, str(tmp_path / "full"))  # in process: the reference
  ref_log, ref = _read(tmp_path / "full")
  n, length = config.env.num_envs, config.env.episode_length
  iterations = config.total_env_steps // n
  assert len(ref_log) == iterations * n and list(ref_log.shards) == [0, 1, 2]
  # Online order: iteration-major, then environment, every (iteration, env) once.
  np.testing.assert_array_equal(ref["iteration"], np.repeat(np.arange(iterations), n))
  np.testing.assert_array_equal(ref["env"], np.tile(np.arange(n), iterations))
  # Episodes: t counts 0..L-1 one step at a time, the episode counter and class change
  # exactly when t wraps to 0, and every (env, episode, t) appears once.
  t = ref["t"].reshape(iterations, n)
  episode, label = ref["episode"].reshape(iterations, n), ref["label"].reshape(iterations, n)
  np.testing.assert_array_equal(t[1:], (t[:-1] + 1) % length)
  np.testing.assert_array_equal(episode[1:] - episode[:-1], (t[1:] == 0).astype(int))
  assert (label[1:] == label[:-1])[t[1:] != 0].all()
  assert episode[0].min() == 0 and (t[0] > 0).any()  # staggered starts
  keys = set(zip(ref["env"].tolist(), ref["episode"].tolist(), ref["t"].tolist()))
  assert len(keys) == len(ref_log)
  assert ref["frame"].shape[1:] == (16, 16, 3) and ref["frame"].std() > 0
  # Actions as the agent took them (uniform in [-1, 1] during warm-up), stored as float16.
  assert np.abs(ref["action"]).max() <= 1 and ref["action"].dtype == np.float16

  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "palm_jax.main", f"--config={ROOT}/configs/smoke.py",
         f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  # Kill once the first checkpoint exists and the second chunk's shard is written: the
  # second checkpoint may not be (then the resume drops that shard and writes it again).
  ckpts, shard = workdir / "checkpoints", workdir / "experience" / frame_log.shard_name(1)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and not (
      (ckpts / "512").is_dir() and shard.exists()):
    time.sleep(0.02)
  assert proc.poll() is None, proc.communicate()[0][-3000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (ckpts / "1536").exists()
  caplog.set_level(logging.INFO)
  train.train(config, str(workdir))  # resume (in process: one interpreter start fewer)
  assert "Resumed from the checkpoint" in caplog.text
  assert re.search(r"Experience log: kept (512|1,024) frames up to iteration (8|16)",
                   caplog.text), caplog.text[-2000:]
  log, got = _read(workdir)
  assert len(log) == len(ref_log) and log.shards == ref_log.shards
  assert not [p for p in os.listdir(workdir / "experience") if p.endswith(".tmp")]
  for k in ("iteration", "env", "episode", "t", "label", "action", "frame"):
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
