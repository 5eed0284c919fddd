"""The experience log of a PALM run (palm_jax/palm/experience_log.py): its mistakes are one
sentence before compilation. What it records, and that a run killed by SIGTERM and then
SIGKILL logs every env step exactly once with the frames of an uninterrupted run, is
checked in tests/test_palm_smoke.py (the same runs check the checkpoints)."""
import os
import runpy

import pytest

from palm_jax.jobs import palm as palm_job
from palm_jax.runtime import files
from palm_jax.runtime.errors import UserError

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


def test_config_mistakes_are_one_sentence(tmp_path, monkeypatch):
  c = _config()
  c.experience.every = 0
  with pytest.raises(UserError, match=r"config.experience.every=0 must lie in \[1, "):
    palm_job.run(c, str(tmp_path))[0]
  c = _config()
  c.replay.capacity = 64 * 4
  with pytest.raises(UserError, match=r"4 time slots .* fewer than log.chunk_iterations=8"):
    palm_job.run(c, str(tmp_path))[0]

  # A disk too small for the whole log: refused at start, one sentence (the init program
  # has not been compiled yet: the check runs right after tracing shapes).
  monkeypatch.setattr(files, "free_bytes", lambda path: 10_000)
  with pytest.raises(UserError, match=r"the experience log \(config.experience.log\) needs "
                     r"about [0-9.]+ MB for 1,536 frames .* 0.01 MB is free; subsample frames"):
    palm_job.run(_config(), str(tmp_path / "small_disk"))[0]
