"""Atari frame data: the DQN Replay reader on files built in the dataset's layout, and the
frame stream the gan job trains from (bounded memory, every frame once per epoch)."""
import gzip
import os

import numpy as np
import pytest

from palm_jax.data import dqn_replay, frame_stream
from palm_jax.data.frame_log import FrameLogWriter
from palm_jax.runtime.errors import UserError


def _frames(n, start=0):
  """uint8 [n, 84, 84] frames numbered start.. in their first two pixels."""
  f = np.random.default_rng(start).integers(0, 256, (n, 84, 84)).astype(np.uint8)
  idx = np.arange(start, start + n)
  f[:, 0, 0], f[:, 0, 1] = idx % 256, idx // 256
  return f


def _ids(frames):
  frames = frames.reshape(frames.shape[:3] + (-1,))[..., 0]
  return frames[:, 0, 0].astype(int) + 256 * frames[:, 0, 1].astype(int)


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("Pong") / "1" / "replay_logs")
  dqn_replay.write_checkpoint(d, 0, _frames(50, 0))
  dqn_replay.write_checkpoint(d, 1, _frames(40, 50), add_count=30)  # buffer never filled
  # What else Dopamine writes beside the observations: ignored by the frame reader.
  with gzip.open(os.path.join(d, "$store$_action_ckpt.0.gz"), "wb") as f:
    np.save(f, np.zeros(50, np.int32))
  return d


def test_dqn_replay_reads_the_layout_in_chunks(replay_dir):
  assert dqn_replay.list_checkpoints(replay_dir) == [0, 1]
  # The file is exactly what Dopamine's save writes: gzip(np.save(uint8 [N, 84, 84])).
  with gzip.open(os.path.join(replay_dir, "$store$_observation_ckpt.0.gz")) as f:
    np.testing.assert_array_equal(np.load(f, allow_pickle=False), _frames(50, 0))
  chunks = list(dqn_replay.iter_frames(replay_dir, 0, chunk=16))
  assert [len(c) for c in chunks] == [16, 16, 16, 2]
  np.testing.assert_array_equal(np.concatenate(chunks), _frames(50, 0))
  assert dqn_replay.num_frames(replay_dir, 1) == 30          # capped by add_count
  np.testing.assert_array_equal(np.concatenate(list(dqn_replay.iter_frames(replay_dir, 1))),
                                _frames(40, 50)[:30])
  assert dqn_replay.parse_spec(f"dqn_replay:{replay_dir}:1-5") == (replay_dir, [1])


def test_dqn_replay_bad_files_are_one_sentence_errors(replay_dir, tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    dqn_replay.list_checkpoints(str(tmp_path / "nope"))
  with pytest.raises(UserError, match="no .*observation_ckpt"):
    dqn_replay.list_checkpoints(str(tmp_path))
  with pytest.raises(UserError, match="no checkpoint in \\[7, 9\\]"):
    dqn_replay.parse_spec(f"dqn_replay:{replay_dir}:7-9")
  bad = str(tmp_path / "bad")
  os.makedirs(bad)
  with open(dqn_replay.observation_file(bad, 0), "wb") as f:       # not gzip at all
    f.write(b"this is not a gzip file")
  with pytest.raises(UserError, match="not a DQN Replay observation file"):
    dqn_replay.num_frames(bad, 0)
  dqn_replay.write_checkpoint(bad, 1, _frames(10))
  raw = gzip.decompress(open(dqn_replay.observation_file(bad, 1), "rb").read())
  with gzip.open(dqn_replay.observation_file(bad, 2), "wb") as f:  # truncated download
    f.write(raw[:len(raw) // 2])
  with pytest.raises(UserError, match="truncated"):
    list(dqn_replay.iter_frames(bad, 2))
  with gzip.open(dqn_replay.observation_file(bad, 3), "wb") as f:  # wrong array
    np.save(f, np.zeros((4, 84, 84), np.float32))
  with pytest.raises(UserError, match="float32 array of shape"):
    dqn_replay.num_frames(bad, 3)


def test_frame_stream_is_bounded_and_yields_each_frame_once_per_epoch(tmp_path):
  writer = FrameLogWriter(str(tmp_path / "frames"), frame_shape=(84, 84))
  for s in range(8):                                  # 8 shards x 64 = 512 frames
    writer.write_shard(s, _frames(64, 64 * s))
  writer.close()
  stream = frame_stream.FrameStream(f"framelog:{tmp_path / 'frames'}", resolution=84,
                                    batch=8, buffer=64, seed=0, chunk=16, cycle=2)
  assert stream.frame_shape == (84, 84, 1)
  seen = np.concatenate([_ids(next(stream)) for _ in range((512 - 64) // 8)])
  assert len(np.unique(seen)) == len(seen) == 448     # no frame twice within an epoch
  assert stream.peak_resident_frames <= 64 + 16       # the buffer + one chunk, never 512
  assert len(np.unique(seen[:64] // 64)) >= 2         # shards interleave from the start
  # The same seed gives the same batches.
  again = frame_stream.FrameStream(f"framelog:{tmp_path / 'frames'}", resolution=84,
                                   batch=8, buffer=64, seed=0, chunk=16, cycle=2)
  np.testing.assert_array_equal(_ids(next(again)), seen[:8])
  # Downsampling for the GAN: 84 -> 16 by area averaging (a mean of whole 5.25-px cells).
  small = frame_stream.FrameStream(f"framelog:{tmp_path / 'frames'}", resolution=16,
                                   batch=4, buffer=16, seed=1, chunk=16)
  batch = next(small)
  assert batch.shape == (4, 16, 16, 1) and batch.dtype == np.uint8
  # Area averaging against a brute-force reference: upsample x16 by repetition (84*16 =
  # 16*84), then each output pixel is the mean of its 84x84 block.
  x = _frames(2)
  big = np.repeat(np.repeat(x.astype(np.float64), 16, axis=1), 16, axis=2)
  want = big.reshape(2, 16, 84, 16, 84).mean(axis=(2, 4))
  got = frame_stream.Preprocess((84, 84), 16)(x)
  assert got.shape == (2, 16, 16, 1)
  np.testing.assert_allclose(got[..., 0], np.clip(np.rint(want), 0, 255), atol=1)


def test_frame_stream_over_dqn_replay(replay_dir):
  stream = frame_stream.FrameStream(f"dqn_replay:{replay_dir}", resolution=84, batch=10,
                                    buffer=20, seed=0, chunk=8)
  seen = np.concatenate([_ids(next(stream)) for _ in range(6)])  # 60 of the 80 valid
  assert len(np.unique(seen)) == 60 and seen.max() < 80          # never past add_count


def test_gan_job_refuses_bad_stream_configs_before_compiling(tmp_path):
  import runpy

  from palm_jax.gan import train as gan_train
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  base = lambda: runpy.run_path(os.path.join(root, "configs", "atari", "gan.py"))[  # noqa: E731
      "get_config"]("pong,tiny")
  c = base()
  c.aug = "ada"
  with pytest.raises(UserError, match="colour ops need RGB"):
    gan_train.train_gan(c, str(tmp_path))
  c = base()
  c.cond = True
  with pytest.raises(UserError, match="set config.cond=False"):
    gan_train.train_gan(c, str(tmp_path))
  c = base()
  c.data = "npz:/nowhere.npz"
  with pytest.raises(UserError, match="needs a frame stream"):
    gan_train.train_gan(c, str(tmp_path))
