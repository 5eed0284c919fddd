"""Metric writer (JSON lines + TensorBoard), progress line, image grids, sharding checks."""
import json
import math
import os
import time

import numpy as np
import pytest
from PIL import Image

from palm_jax.runtime import images, metrics, sharding
from palm_jax.runtime.errors import UserError


def test_writer_jsonl_tensorboard_and_truncate(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  for step in (100, 200, 300):
    w.write_scalars(step, {"loss": np.float32(step / 100), "count": np.int32(3)})
  w.write_image(300, "grid", np.zeros((4, 4, 3), np.uint8))
  w.close()
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert rows[1] == {"step": 200, "loss": 2.0, "count": 3}
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
  w.truncate_after(200)
  assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [100, 200]
  with pytest.raises(ValueError, match="scalars"):
    w.write_scalars(1, {"bad": np.zeros(3)})


def test_disabled_writer_writes_nothing(tmp_path):
  w = metrics.MetricWriter(str(tmp_path / "x"), enabled=False)
  w.write_scalars(1, {"a": 1.0})
  assert not os.path.exists(tmp_path / "x")


def test_progress_rate_and_eta():
  p = metrics.Progress(1000, start=0)
  p._last_time -= 2.0  # pretend 2 s passed
  out = p.update(100)
  assert 45 < out["rate"] <= 50
  assert 17 < out["eta_s"] < 20
  assert metrics.format_duration(3725) == "1h02m05s"
  assert metrics.format_duration(float("nan")) == "?"


def test_progress_rate_is_the_run_average_without_compile_and_writing(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(metrics.time, "time", lambda: clock[0])
  p = metrics.Progress(4000, start=0)
  clock[0] += 60.0                        # the chunk that compiled: 60 s for 1,000 steps
  assert math.isnan(p.update(1000, timed=False)["rate"])
  clock[0] += 10.0                        # 1,000 steps in 10 s
  assert p.update(2000)["rate"] == pytest.approx(100.0)
  clock[0] += 40.0                        # 1,000 steps in 2 s + 38 s writing a checkpoint
  assert p.update(3000, excluded_s=38.0)["rate"] == pytest.approx(2000 / 12)
  clock[0] += 30.0                        # one slow chunk moves the average, not all of it
  out = p.update(4000)
  assert out["rate"] == pytest.approx(3000 / 42) and out["eta_s"] == 0
  assert metrics.plural(1, "chunk") == "1 chunk" and metrics.plural(3, "chunk") == "3 chunks"


def test_process_start_is_before_this_test():
  assert time.time() - 3 * 86400 < metrics.PROCESS_START <= time.time()
  assert metrics.since_start() != "?"


def test_grid_layout_and_png(tmp_path):
  imgs = np.zeros((2, 3, 4, 5, 3), np.float32)
  imgs[1, 2] = 1.0  # white tile at row 1, col 2
  grid = images.make_grid(imgs, pad=1)
  assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
  assert (grid[6:10, 13:18] == 255).all() and (grid[1:5, 1:6] == 128).all()
  path = images.save_png(str(tmp_path / "a" / "g.png"), grid)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
  assert images.to_uint8(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]


def test_check_divisible_names_value_and_fix():
  mesh = sharding.make_mesh()
  sharding.check_divisible("env.num_envs", 16, mesh)
  with pytest.raises(UserError, match=r"config.env.num_envs=12 .* multiple of 8 \(e.g. 8 or 16\)"):
    sharding.check_divisible("env.num_envs", 12, mesh)


def _events(path):
  """Events of one TensorBoard file (TFRecord: u64 length, u32 crc, data, u32 crc)."""
  import struct

  from tensorboardX.proto import event_pb2
  out, data = [], open(path, "rb").read()
  while data:
    (n,) = struct.unpack("<Q", data[:8])
    out.append(event_pb2.Event.FromString(data[12:12 + n]))
    data = data[16 + n:]
  return out


def test_resumed_writer_purges_tensorboard_steps_after_the_resume_point(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  for step in range(100, 301, 5):
    w.write_scalars(step, {"loss": 1.0})
  w.flush()  # what a checkpoint does: TensorBoard never lags the checkpoint
  first = os.listdir(tmp_path / "tb")
  # Every point is on disk right after flush (tensorboardX's own flush leaves queued ones).
  assert [e.step for e in _events(tmp_path / "tb" / first[0])
          if e.summary.value] == list(range(100, 301, 5))
  w.close()
  resumed = metrics.MetricWriter(str(tmp_path))
  resumed.truncate_after(200)
  resumed.write_scalars(300, {"loss": 2.0})
  resumed.close()
  events = [e for f in sorted(os.listdir(tmp_path / "tb")) for e in _events(tmp_path / "tb" / f)]
  starts = [e.step for e in events
            if e.HasField("session_log") and e.session_log.status == e.session_log.START]
  assert starts == [201]  # TensorBoard drops the earlier file's events from step 201 on


def test_rollout_images_are_upscaled_labelled_and_animated(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (2, 3, 16, 16, 3), np.uint8)
  paths = images.save_rollout(str(tmp_path / "r"), frames, np.array([3, 1]))
  assert [os.path.basename(p) for p in paths] == ["r.png", "r_row0.gif", "r_row1.gif"]
  grid = np.asarray(Image.open(paths[0]))
  assert grid.shape[0] >= 2 * 16 * 4 and grid.shape[1] >= 3 * 16 * 4  # x4 at least
  # Nearest neighbour: the first frame appears as 4x4 blocks of its pixels.
  np.testing.assert_array_equal(images.upscale(frames[0, 0], 4)[::4, ::4], frames[0, 0])
  gif = Image.open(paths[1])
  assert gif.n_frames == 3 and gif.size[0] == 16 * 4
  # Labels are drawn: the header and left margin are not blank.
  assert (grid[:14] < 128).any() and (grid[:, :50] < 128).any()
