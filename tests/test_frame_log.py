"""The frame log (palm_jax/data/frame_log.py): round trip, background writes, truncation,
Grain, disk check. Pure NumPy + ArrayRecord: no JAX program is compiled."""
import json
import os

import numpy as np
import pytest

from palm_jax.data import frame_log as fl
from palm_jax.runtime.errors import UserError

FIELDS = ("env", "episode", "t", ("label", "int32", ()), ("action", "float32", (3,)))


def _chunk(rng, n, start=0):
  return dict(frames=rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8),
              env=np.arange(start, start + n), episode=rng.integers(0, 9, n),
              t=np.arange(n) % 4, label=rng.integers(0, 10, n).astype(np.int32),
              action=rng.normal(size=(n, 3)).astype(np.float32))


def _write(w, index, c):
  w.submit(index, c["frames"], **{k: v for k, v in c.items() if k != "frames"})


def test_round_trip_in_shard_order_with_background_writes(tmp_path):
  rng = np.random.default_rng(0)
  w = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  chunks = [_chunk(rng, n, 100 * i) for i, n in enumerate((7, 1, 5))]
  for i in (2, 0, 1):  # any submission order; reading follows shard order
    _write(w, i, chunks[i])
  w.close()
  assert sorted(os.listdir(tmp_path)) == ["index.json"] + sorted(
      [fl.shard_name(i) for i in range(3)] + [fl.fields_name(i) for i in range(3)])
  log = fl.FrameLog(str(tmp_path))
  assert len(log) == 13 and log.shards == {0: 7, 1: 1, 2: 5}
  assert log.fields == ["env", "episode", "t", "label", "action"]
  want = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  for i in range(len(log)):
    rec = log[i]
    np.testing.assert_array_equal(rec["frame"], want["frames"][i])
    for k in ("env", "episode", "t", "label", "action"):
      np.testing.assert_array_equal(rec[k], want[k][i])
  assert log[-1]["env"] == want["env"][-1]
  with pytest.raises(IndexError):
    log[13]
  batch = log.read([12, 0, 7])
  np.testing.assert_array_equal(batch["frame"], want["frames"][[12, 0, 7]])
  np.testing.assert_array_equal(batch["action"], want["action"][[12, 0, 7]])
  assert batch["label"].dtype == np.int32 and batch["env"].dtype == np.int64
  side = log.read_fields(("env", "episode", "t", "label"))  # from the *.fields.npz
  np.testing.assert_array_equal(log.read_fields(("action",))["action"], want["action"])
  with pytest.raises(UserError, match="no field"):
    log.read_fields(("frame",))
  for i in range(3):
    os.remove(tmp_path / fl.fields_name(i))
  for k, v in fl.FrameLog(str(tmp_path)).read_fields().items():  # from the records
    if k in side:
      np.testing.assert_array_equal(side[k], v)
      assert side[k].dtype == v.dtype
  np.testing.assert_array_equal(side["episode"], want["episode"])


def test_grain_reads_the_log(tmp_path):
  grain = pytest.importorskip("grain")  # a requirement; skipped only in a foreign venv
  rng = np.random.default_rng(1)
  w = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  _write(w, 0, _chunk(rng, 9))
  w.close()
  ds = grain.MapDataset.source(fl.FrameLog(str(tmp_path))).shuffle(seed=3)
  envs = sorted(int(ds[i]["env"]) for i in range(len(ds)))
  assert envs == list(range(9))  # a permutation of the log


def test_truncate_drops_later_shards_and_unfinished_writes(tmp_path):
  rng = np.random.default_rng(2)
  w = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  for i in range(4):
    _write(w, i, _chunk(rng, 3))
  w.wait()
  (tmp_path / (fl.shard_name(4) + ".tmp")).write_bytes(b"killed mid-write")
  # A resumed run reopens the directory (same layout) and truncates to its checkpoint.
  w2 = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  assert w2.truncate(after_shard=1) == 6
  assert sorted(os.listdir(tmp_path)) == ["index.json", fl.shard_name(0), fl.fields_name(0),
                                         fl.shard_name(1), fl.fields_name(1)]
  assert json.loads((tmp_path / "index.json").read_text())["shards"] == {"0": 3, "1": 3}
  c = _chunk(rng, 2)
  _write(w2, 2, c)
  w2.close()
  log = fl.FrameLog(str(tmp_path))
  assert len(log) == 8
  np.testing.assert_array_equal(log[7]["frame"], c["frames"][1])
  w.close()


def test_background_error_is_raised_on_the_next_call(tmp_path):
  w = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  bad = _chunk(np.random.default_rng(3), 3)
  bad["t"] = bad["t"][:2]  # one value short: fails inside the writer thread
  _write(w, 0, bad)
  with pytest.raises(RuntimeError, match="'t' has shape"):
    w.wait()
  w.wait()  # reported once
  w.close()


def test_layout_mismatch_and_missing_log_are_user_errors(tmp_path):
  fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS).close()
  with pytest.raises(UserError, match="holds"):
    fl.FrameLogWriter(str(tmp_path), frame_shape=(8, 8, 3), fields=FIELDS)
  with pytest.raises(UserError, match="no frame log"):
    fl.FrameLog(str(tmp_path / "nothing"))
  with pytest.raises(UserError, match="distinct name"):
    fl.FrameLogWriter(str(tmp_path / "x"), frame_shape=(4, 5, 3), fields=("t", "t"))


def test_expected_bytes_and_disk_check(tmp_path):
  # The figure: 50M CIFAR frames are ~150 GB of pixels (3,072 bytes each).
  pixels = 50_000_000 * 32 * 32 * 3
  assert fl.expected_bytes(50_000_000, (32, 32, 3), num_shards=0) == pixels + 50_000_000 * \
      fl.RECORD_OVERHEAD_BYTES
  assert fl.record_bytes((4, 5, 3), fields=FIELDS) == 60 + 2 * (3 * 8 + 4) + 12
  # The per-record overhead bound holds for a real shard.
  rng = np.random.default_rng(4)
  w = fl.FrameLogWriter(str(tmp_path), frame_shape=(4, 5, 3), fields=FIELDS)
  _write(w, 0, _chunk(rng, 50))
  w.close()
  size = os.path.getsize(tmp_path / fl.shard_name(0)) + os.path.getsize(
      tmp_path / fl.fields_name(0))
  assert size <= fl.expected_bytes(50, (4, 5, 3), fields=FIELDS)
  assert fl.check_disk(str(tmp_path), 10, (4, 5, 3)) > 0
  with pytest.raises(UserError, match=r"needs about [0-9,.]+ GB for 1,000,000,000,000,000 "
                     r"frames .* subsample frames \(config.experience.every\)"):
    fl.check_disk(str(tmp_path), 10**15, (32, 32, 3))
  assert fl.format_bytes(2.5e9) == "2.50 GB" and fl.format_bytes(1.5e6) == "1.50 MB"
