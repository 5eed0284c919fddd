"""The collect job on a real ROM: deterministic given the seed, and a resumed collection
ends byte for byte where an uninterrupted one does."""
import os
import runpy

import numpy as np
import pytest

from palm_jax.atari import collect as atari_collect
from palm_jax.data.frame_log import FrameLog, shard_name
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**kw):
  c = runpy.run_path(os.path.join(ROOT, "configs", "atari", "collect.py"))["get_config"](
      "pong,tiny")
  c.update(kw)
  return c


def _all(log):
  return log.read(np.arange(len(log)))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  return _all(atari_collect.collect(_config(), str(tmp_path_factory.mktemp("full"))))


def test_collect_writes_frames_and_fields(full):
  assert full["frame"].shape == (120, 84, 84) and full["frame"].dtype == np.uint8
  assert full["frame"].std() > 0                       # real screens, not zeros
  # Emulator-major shards: records 0..19 are emulator 0's first 20 steps, in order.
  np.testing.assert_array_equal(full["env"][:40], np.repeat([0, 1], 20))
  np.testing.assert_array_equal(full["t"][:20], np.arange(20))
  assert set(np.unique(full["action"])) <= set(range(6))   # Pong's minimal action set


def test_collect_is_deterministic_and_resumes_exactly(full, tmp_path):
  # Interrupted after two shards, with a half-written third shard left behind.
  atari_collect.collect(_config(total_frames=80), str(tmp_path))
  frames_dir = tmp_path / atari_collect.FRAMES_DIR
  (frames_dir / (shard_name(2) + ".tmp")).write_bytes(b"killed mid-write")
  resumed = _all(atari_collect.collect(_config(), str(tmp_path)))
  assert not list(frames_dir.glob("*.tmp"))
  for k in full:
    np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)
  # Another seed plays other games.
  other = _all(atari_collect.collect(_config(seed=1, total_frames=40), str(tmp_path / "s1")))
  assert not np.array_equal(other["frame"], full["frame"][:40])
  # A log of other shard sizes is refused, not mixed.
  with pytest.raises(UserError, match="frames_per_shard=20"):
    atari_collect.collect(_config(frames_per_shard=20), str(tmp_path))
  assert len(FrameLog(str(frames_dir))) == 120


def test_a_stop_signal_keeps_the_finished_shards_and_the_rerun_completes(full, tmp_path,
                                                                         monkeypatch):
  """SIGTERM/SIGINT between shards (runtime.host_loop): the shards done are written, the
  job raises Preempted (exit status 3); the rerun collects the rest, byte for byte."""
  from palm_jax.runtime import preemption
  asked = iter([False, False, True])   # the signal arrives while shard 1 is collected
  monkeypatch.setattr(preemption, "requested", lambda sync=True: next(asked, True))
  config = _config(num_processes=1)
  with pytest.raises(preemption.Preempted, match=r"after 2 of 3 shards: checkpoint saved at "
                                                 r"2 complete shards .*rerun the same command"):
    atari_collect.collect(config, str(tmp_path))
  assert len(FrameLog(str(tmp_path / atari_collect.FRAMES_DIR))) == 80
  monkeypatch.undo()
  resumed = _all(atari_collect.collect(config, str(tmp_path)))
  for k in full:
    np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)


def test_collect_refuses_when_the_disk_is_too_small(tmp_path, monkeypatch):
  from palm_jax.runtime import files
  monkeypatch.setattr(files, "free_bytes", lambda d: 10_000)
  with pytest.raises(UserError, match=r"only .* is free; collect fewer frames "
                     r"\(config.total_frames\)"):
    atari_collect.collect(_config(), str(tmp_path))
