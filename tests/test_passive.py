"""Passive PALM (palm_jax/palm/passive.py): temporal pairs from an experience log,
ordered and random orders, and an exact resume of the job on a synthetic log."""
import os
import runpy

import jax
import numpy as np
import pytest

from palm_jax.data import frame_log
from palm_jax.evaluation import features
from palm_jax.jobs import palm as palm_job
from palm_jax.palm import experience_log, offline, passive
from palm_jax.runtime import checkpoint
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fields(num_envs, iterations, length, seed=0):
  """The experience log's fields of a run: staggered episodes of `length` frames."""
  t0 = np.random.default_rng(seed).integers(0, length, num_envs)
  it = np.repeat(np.arange(iterations), num_envs)
  env = np.tile(np.arange(num_envs), iterations)
  t = (t0[env] + it) % length
  return {"iteration": it, "env": env, "t": t, "episode": (it - t + length - 1) // length}


def test_pairs_are_consecutive_frames_of_one_episode_in_any_record_order():
  f = _fields(num_envs=5, iterations=12, length=4)
  perm = np.random.default_rng(1).permutation(f["t"].size)  # records in any order
  g = {k: v[perm] for k, v in f.items()}
  a, b = passive.temporal_pairs(g["iteration"], g["env"], g["t"])
  assert np.all(g["env"][a] == g["env"][b])
  assert np.all(g["iteration"][b] == g["iteration"][a] + 1)
  assert np.all(g["t"][b] == g["t"][a] + 1)
  assert np.all(g["episode"][a] == g["episode"][b])  # never across an episode boundary
  # Every consecutive in-episode pair is found (NumPy brute force over all record pairs).
  want = {(int(x), int(y)) for x in range(perm.size) for y in range(perm.size)
          if g["env"][x] == g["env"][y] and g["iteration"][y] == g["iteration"][x] + 1
          and g["t"][y] == g["t"][x] + 1}
  assert set(zip(a.tolist(), b.tolist())) == want
  # Sorted in online order (iteration, then env) of the first frame.
  order = g["iteration"][a] * 5 + g["env"][a]
  assert np.all(np.diff(order) > 0)
  with pytest.raises(UserError, match="twice"):
    passive.temporal_pairs(np.r_[g["iteration"], 0], np.r_[g["env"], g["env"][perm == 0]],
                           np.r_[g["t"], 0])


def _sampler(order, **kw):
  f = _fields(num_envs=6, iterations=30, length=5)
  args = dict(order=order, window=8, batch_size=7, seed=3, warmup_iterations=4,
              updates_per_step=2)
  return f, passive.PairSampler(f, **dict(args, **kw))


def test_ordered_sees_time_order_through_a_sliding_window():
  f, s = _sampler("ordered")
  prev_hi = 0
  for k in range(4, 30):
    lo, hi = s.window_bounds(k)
    assert hi >= prev_hi and hi > lo
    prev_hi = hi
    for u in range(2):
      a, b = s.pairs(k, u)
      first = f["iteration"][a]
      assert first.min() >= k - 8 + 1 and first.max() <= k - 1  # what the replay held
      assert np.all(f["iteration"][b] <= k)
    np.testing.assert_array_equal(s.pairs(k, 1)[0], s.pairs(k, 1)[0])  # deterministic
  with pytest.raises(UserError, match="no pair in iterations"):
    s.pairs(40, 0)


def test_random_is_a_permutation_of_all_pairs_each_epoch():
  _, s = _sampler("random")
  p = s.num_pairs
  updates = -(-2 * p // s.batch)  # two epochs and a bit
  pos = np.concatenate([s.positions(4 + g // 2, g % 2) for g in range(updates)])
  np.testing.assert_array_equal(np.sort(pos[:p]), np.arange(p))
  np.testing.assert_array_equal(np.sort(pos[p:2 * p]), np.arange(p))
  assert not np.array_equal(pos[:p], pos[p:2 * p])  # a fresh shuffle per epoch
  assert not np.array_equal(pos[:p], np.arange(p))  # shuffled, not the online order


def _write_log(directory, num_envs, iterations, length, chunk, action_dim=16):
  """A synthetic experience log in the experience job's layout (random frames)."""
  f = _fields(num_envs, iterations, length)
  rng = np.random.default_rng(0)
  w = frame_log.FrameLogWriter(directory, frame_shape=(16, 16, 3),
                               fields=experience_log.fields(action_dim))
  per = num_envs * chunk
  for c in range(iterations // chunk):
    sl = slice(c * per, (c + 1) * per)
    w.submit(c, rng.integers(0, 256, (per, 16, 16, 3), dtype=np.uint8),
             iteration=f["iteration"][sl], env=f["env"][sl], episode=f["episode"][sl],
             t=f["t"][sl], label=rng.integers(0, 4, per),
             action=rng.uniform(-1, 1, (per, action_dim)).astype(np.float16))
  w.close()


def _config(log_dir, **overrides):
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.job = "passive"
  c.eval.train = ""
  c.total_env_steps = 64 * 24   # 3 chunks of 8 iterations of 64 envs; 20 updates
  c.log.chunk_iterations = 8
  c.checkpoint.every_chunks = 1
  c.passive.log = log_dir
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


@pytest.mark.slow
def test_passive_job_resumes_exactly_and_writes_the_palm_layout(tmp_path, monkeypatch):
  log_dir = str(tmp_path / "run" / "experience")
  _write_log(log_dir, num_envs=64, iterations=24, length=6, chunk=8)
  config = _config(str(tmp_path / "run"), **{"passive.order": "random"})
  full = palm_job.run(config, str(tmp_path / "full"))[0]
  assert np.isfinite(full.metrics["simsiam/loss"])

  real = offline.ckpt_lib.checkpointers

  def crash_after_first_save(workdir, *args):
    ckpt, snaps = real(workdir, *args)
    save = ckpt.save

    def save_then_crash(step, **kw):
      save(step, **kw)
      ckpt.wait()
      raise KeyboardInterrupt("simulated crash")
    ckpt.save = save_then_crash
    return ckpt, snaps
  monkeypatch.setattr(offline.ckpt_lib, "checkpointers", crash_after_first_save)
  with pytest.raises(KeyboardInterrupt):
    palm_job.run(config, str(tmp_path / "resumed"))[0]
  monkeypatch.setattr(offline.ckpt_lib, "checkpointers", real)
  palm_job.run(config, str(tmp_path / "resumed"))[0]

  step_a, a, meta = checkpoint.restore_encoder(str(tmp_path / "full"))
  step_b, b, _ = checkpoint.restore_encoder(str(tmp_path / "resumed"))
  assert step_a == step_b == 64 * 24 and meta["job"] == "passive"
  assert meta["simsiam_updates"] == 20  # the online run's budget (warm-up 4 iterations)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, a),
               jax.tree.map(np.asarray, b))
  assert features.load_encoder(str(tmp_path / "full")).step == 64 * 24  # linear_eval reads it

  with pytest.raises(UserError, match="passive PALM trains on the log's temporal pairs"):
    palm_job.run(_config(log_dir, **{"simsiam.pairs": "same_class"}), str(tmp_path / "x"))[0]
  with pytest.raises(UserError, match="no pair in iterations"):  # the log is too short
    palm_job.run(_config(log_dir, total_env_steps=64 * 40), str(tmp_path / "y"))[0]
  with pytest.raises(UserError, match="holds no frame log"):
    palm_job.run(_config(str(tmp_path / "nothing")), str(tmp_path / "z"))[0]


def test_a_stop_signal_saves_a_passive_run_and_the_rerun_finishes(tmp_path, monkeypatch):
  """SIGTERM/SIGINT in passive PALM: the chunk ends, a checkpoint is saved, Preempted."""
  from palm_jax.runtime import preemption
  log_dir = str(tmp_path / "run" / "experience")
  _write_log(log_dir, num_envs=64, iterations=24, length=6, chunk=8)
  config = _config(str(tmp_path / "run"), **{"checkpoint.every_chunks": 3})
  asked = iter([False, True])   # the signal arrives during the second chunk
  monkeypatch.setattr(preemption, "requested", lambda sync=True: next(asked, False))
  workdir = str(tmp_path / "passive")
  with pytest.raises(preemption.Preempted, match=r"after 2 chunks: checkpoint saved at env "
                                                 r"step 1,024"):
    palm_job.run(config, workdir)
  assert os.listdir(checkpoint.checkpoint_dir(workdir)) == ["1024"]
  palm_job.run(config, workdir)
  assert checkpoint.restore_encoder(workdir)[0] == 64 * 24
