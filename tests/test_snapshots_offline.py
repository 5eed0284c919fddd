"""Permanent snapshots, the offline (real-image) SimSiam path and per-chunk exploration metrics.

Both runs are the smoke config's sizes (the PALM one exactly tests/test_palm_smoke.py's, so
its chunk comes from the persistent compile cache when that file ran first).
"""
import json
import os
import runpy
import shutil

import jax
import numpy as np
import pytest

from palm_jax.evaluation import features
from palm_jax.jobs import palm as palm_job
from palm_jax.palm import exploration, offline
from palm_jax.representation import pairs
from palm_jax.runtime import checkpoint
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.eval.train = ""
  c.total_env_steps = 64 * 24   # 3 chunks of 8 iterations of 64 envs (512 steps each)
  c.log.chunk_iterations = 8
  c.checkpoint.every_chunks = 1
  c.log.rollout_every_chunks = 2
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_palm_snapshots_outlive_rotation_and_exploration_metrics_are_logged(tmp_path):
  workdir = str(tmp_path / "palm")
  config = _config(**{"checkpoint.keep": 1, "checkpoint.snapshot_steps": (512,),
                      "log.explore_envs": 8})
  palm_job.run(config, workdir)[0]
  assert checkpoint.Checkpointer(checkpoint.checkpoint_dir(workdir)).all_steps() == [1536]
  assert checkpoint.all_encoder_steps(workdir) == [512, 1536]
  step, snap, meta = checkpoint.restore_encoder(workdir, 512)   # from snapshots/
  assert step == 512 and meta["snapshot"] and meta["lr_schedule"] == "cosine"
  assert meta["simsiam_updates"] == 4 and meta["simsiam_total_updates"] == 20
  assert checkpoint.restore_encoder(workdir)[0] == 1536          # latest: rolling
  last = features.load_encoder(workdir)                          # what linear_eval reads
  enc = features.load_encoder(workdir, step=512)
  assert enc.step == 512
  differs = jax.tree.map(lambda a, b: not np.allclose(a, b), enc.variables["params"],
                         last.variables["params"])
  assert any(jax.tree.leaves(differs))                          # a different encoder
  # A run cut short before its first rolling checkpoint still has its snapshots, and the
  # eval jobs take them (they refused with "holds no checkpoint" before).
  shutil.rmtree(checkpoint.checkpoint_dir(workdir))
  assert checkpoint.has_encoder(workdir)
  assert features.load_encoder(workdir).step == 512
  # Its rerun starts from step 0 and gets to 512 again: the old snapshot moves to
  # snapshots/ahead/ instead of failing that save ("Checkpoint for step 512 already exists").
  palm_job.run(config, workdir)
  assert checkpoint.all_encoder_steps(workdir) == [512, 1536]
  assert os.listdir(os.path.join(checkpoint.snapshot_dir(workdir), "ahead")) == ["512"]
  rows = _rows(workdir)
  assert len(rows) == 3
  for row in rows:
    assert 1 <= row["explore/replay_classes"] <= 4
    assert 0 <= row["explore/action_share_policy"] <= 1
    assert 0 < row["explore/replay_feature_spread"] <= 1
    assert 0 < row["explore/pair_change"] < 1      # consecutive frames: closer than random
    assert np.isfinite(row["explore/apt_gain"])
    assert row["explore/apt_gain"] == pytest.approx(
        row["explore/apt_policy"] - row["explore/apt_random"], abs=1e-5)
  # Random actions of a uniform [-1, 1] action under alpha 0.5, beta 0.95, 6 frames: the
  # action part is small (budget.py: 0.021 for a saturated action; uniform has 1/3 of it).
  assert rows[-1]["explore/action_share_random"] < 0.021
  with pytest.raises(UserError, match="snapshot_steps holds 700.*multiples of"):
    palm_job.run(_config(**{"checkpoint.snapshot_steps": (700,)}), str(tmp_path / "bad"))[0]


def test_offline_real_aug_trains_without_the_environment_in_the_palm_layout(tmp_path,
                                                                           shared_dir):
  data = shared_dir / "data" / "cifar_subset" / "cifar10_test_partial.npz"
  workdir = str(tmp_path / "real_aug")
  config = _config(**{"simsiam.pairs": "real_aug", "simsiam.real_data": f"npz:{data}",
                      "simsiam.schedule": "constant", "checkpoint.snapshot_steps": (1024,),
                      "generator": "does-not-exist.npz"})  # never loaded: no env
  result = palm_job.run(config, workdir)[0]
  assert np.isfinite(result.metrics["simsiam/loss"])
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == [512, 1024, 1536]  # the PALM loop's chunk ends
  assert all(r["simsiam/lr"] == pytest.approx(0.03 * 32 / 256) for r in rows)  # constant
  assert not any(k.startswith(("sac/", "reward/")) for k in rows[-1])
  step, variables, meta = checkpoint.restore_encoder(workdir)
  assert step == 1536 and meta["simsiam_updates"] == 20 and meta["lr_schedule"] == "constant"
  assert checkpoint.all_encoder_steps(workdir) == [1024, 1536]
  enc = features.load_encoder(workdir, step=1024)
  assert enc.kwargs["stage_sizes"] == [1, 1] and enc.kwargs["width"] == 8
  feats = features.FeatureExtractor(enc, batch_size=16)(np.zeros((3, 32, 32, 3), np.uint8))
  assert feats.shape == (3, 16) and np.isfinite(feats).all()  # width 8 * 2 stages


def test_pair_change_by_hand():
  obs = np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), 10)]).astype(np.uint8)
  # Each pair moves by 1 grey level; the two unrelated frames differ by 10.
  assert float(exploration.pair_change(obs, obs + 1)) == pytest.approx(0.1)
  assert float(exploration.pair_change(obs, obs)) == 0.0


def test_offline_pair_sources():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (30, 4, 4, 3), dtype=np.uint8)
  labels = np.arange(30) % 3
  bank = pairs.make_real_bank(images, labels, 3)
  x1, x2 = offline.draw_pairs(jax.random.PRNGKey(0), "real", bank, 64)
  index = {im.tobytes(): lab for im, lab in zip(images, labels)}
  assert all(index[a.tobytes()] == index[b.tobytes()] for a, b in
             zip(np.asarray(x1), np.asarray(x2)))              # same class
  assert len({index[a.tobytes()] for a in np.asarray(x1)}) == 3  # classes drawn uniformly
  y1, y2 = offline.draw_pairs(jax.random.PRNGKey(0), "real_aug", bank, 64)
  np.testing.assert_array_equal(y1, y2)                         # one image, two views later
  assert offline.is_offline(_config(**{"simsiam.pairs": "real_aug"}))
  assert not offline.is_offline(_config())


@pytest.mark.parametrize("pairs_source", ["real_aug", "real"])
def test_a_stop_signal_saves_an_offline_run_and_the_rerun_finishes(tmp_path, shared_dir,
                                                                  monkeypatch, pairs_source):
  """SIGTERM/SIGINT in static PALM (pairs=real) or SimSiam on real images (real_aug): the
  chunk ends, a checkpoint is saved, the job raises Preempted (palm_jax.main: exit status 3,
  one line); the rerun resumes from it and finishes."""
  from palm_jax.runtime import preemption
  data = shared_dir / "data" / "cifar_subset" / "cifar10_test_partial.npz"
  config = _config(**{"simsiam.pairs": pairs_source, "simsiam.real_data": f"npz:{data}",
                      "checkpoint.every_chunks": 3, "generator": "does-not-exist.npz"})
  asked = iter([True])   # the signal arrives during the first chunk
  monkeypatch.setattr(preemption, "requested", lambda sync=True: next(asked, False))
  workdir = str(tmp_path / pairs_source)
  with pytest.raises(preemption.Preempted, match=r"after 1 chunk: checkpoint saved at env "
                                                 r"step 512 in .*rerun the same command"):
    palm_job.run(config, workdir)
  assert os.listdir(checkpoint.checkpoint_dir(workdir)) == ["512"]
  result = palm_job.run(config, workdir)[0]
  assert np.isfinite(result.metrics["simsiam/loss"])
  assert [r["step"] for r in _rows(workdir)] == [512, 1024, 1536]
  assert checkpoint.restore_encoder(workdir)[0] == 1536
