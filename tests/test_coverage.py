"""Coverage (Table 3): the tiled nearest-neighbour search, the metric, and the job."""
import json
import os

import jax
import numpy as np
import pytest

from palm_jax.evaluation import coverage
from palm_jax.jobs import coverage as coverage_eval
from palm_jax.palm import coverage_sources
from palm_jax.runtime.errors import UserError


def _brute_force(queries, refs):
  """float64 squared distances, first index among ties (NumPy's argmin)."""
  d = ((queries[:, None, :].astype(np.float64) - refs[None].astype(np.float64)) ** 2).sum(-1)
  return d.argmin(1), d.min(1)


def test_nn_matches_brute_force_with_ragged_tiles():
  rng = np.random.default_rng(0)
  refs, queries = rng.normal(size=(77, 5)), rng.normal(size=(45, 5))   # 77 % 16, 45 % 16
  nn = coverage.NearestNeighbours(refs, query_tile=16, ref_tile=16)
  index, dist = nn(queries)
  want_index, want_dist = _brute_force(queries, refs)
  np.testing.assert_array_equal(index, want_index)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-5)
  assert nn.tile_shapes["distances"] == (16, 16)


def test_nn_ties_take_the_smallest_index_across_tiles():
  rng = np.random.default_rng(1)
  # Small integers: exact in float32, so equal distances are exactly equal and duplicates
  # of one reference sit in different reference tiles (ties broken by the lowest index).
  refs = rng.integers(0, 3, size=(53, 3)).astype(np.float32)
  queries = rng.integers(0, 3, size=(37, 3)).astype(np.float32) + 0.5
  index, _ = coverage.NearestNeighbours(refs, query_tile=8, ref_tile=8)(queries)
  want_index, want_dist = _brute_force(queries, refs)
  np.testing.assert_array_equal(index, want_index)
  ties = (((queries[:, None] - refs[None]) ** 2).sum(-1) == want_dist[:, None]).sum(1)
  assert (ties > 1).mean() > 0.5   # the case is really about ties


def test_coverage_known_answers():
  rng = np.random.default_rng(2)
  train = rng.normal(size=(50, 4)).astype(np.float32)
  nn = coverage.NearestNeighbours(train, query_tile=16, ref_tile=16)
  # Generated == train: every image is its own nearest neighbour -> 100 %.
  index, _ = nn(train)
  np.testing.assert_array_equal(index, np.arange(50))
  assert coverage.coverage_of(index) == 1.0
  # All generated images near one training image -> 1/N.
  near_one = train[7] + 1e-3 * rng.normal(size=(50, 4)).astype(np.float32)
  index, _ = nn(near_one)
  assert set(index.tolist()) == {7} and coverage.coverage_of(index) == pytest.approx(1 / 50)
  with pytest.raises(UserError):
    coverage.coverage_of(np.zeros((0,), np.int64))


def test_10k_by_10k_search_is_memory_bounded():
  n, dim = 10_240, 8
  rng = np.random.default_rng(3)
  refs = rng.normal(size=(n, dim)).astype(np.float32)
  queries = rng.normal(size=(n, dim)).astype(np.float32)
  nn = coverage.NearestNeighbours(refs, query_tile=1024, ref_tile=2048)
  assert nn.tile_shapes == {"queries": (1024, dim), "refs": (n, dim),
                            "distances": (1024, 2048)}
  mem = nn.lowered().compile().memory_analysis()
  full_matrix = n * n * 4
  if mem is not None:   # per-device program: queries are split over the devices
    assert mem.temp_size_in_bytes < 4 * 1024 * 2048 * 4 < full_matrix / 10
  index, _ = nn(queries)
  assert index.shape == (n,)
  sample = rng.choice(n, 64, replace=False)
  np.testing.assert_array_equal(index[sample], _brute_force(queries[sample], refs)[0])


def test_pairs_grid_and_labels():
  g = np.full((5, 4, 4, 3), 10, np.uint8)
  r = np.full((5, 4, 4, 3), 200, np.uint8)
  grid = coverage_eval.pairs_grid(g, r, rows=8, pairs_per_row=4)
  assert grid.shape == (2 * 5 + 1, 8 * 5 + 1, 3)
  assert grid[1, 1, 0] == 10 and grid[1, 6, 0] == 200      # sample, then its neighbour
  assert coverage_eval.source_label("npz:/x/frames_a.npz") == "frames_a"
  assert coverage_eval.parse_sources("uniform, palm") == ["uniform", "palm"]
  with pytest.raises(UserError):
    coverage_eval.parse_sources("uniform,uniform")


def _job_config(train_spec, sources, features="pixels"):
  import pathlib
  import runpy
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "coverage.py"
  c = runpy.run_path(str(path))["get_config"]("smoke")
  c.data.train, c.sources, c.num_images, c.features = train_spec, sources, 48, features
  c.nn.query_tile, c.nn.ref_tile = 16, 32
  c.batch_size = 16
  return c


def _tiny_palm_run(workdir):
  """A PALM run directory (config_palm.json + one checkpoint of the initial state)."""
  import pathlib
  import runpy

  from palm_jax.palm import generator, programs
  from palm_jax.runtime import checkpoint, sharding
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "smoke.py"
  c = runpy.run_path(str(path))["get_config"]()
  c.env.num_envs, c.batch_size, c.reward.k = 8, 8, 2
  c.replay.capacity, c.agent.warmup_env_steps, c.total_env_steps = 32, 16, 64
  c.env.episode_length = 4
  c.generator_kwargs.img_resolution = 8   # the smallest synthesis network: compiles fastest
  mesh = sharding.make_mesh()
  gen = generator.load_env_generator(c, workdir)
  _, _, init_fn, _, _ = programs.build_single(c, mesh, gen, programs.Plan(c))
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  abstract, _ = jax.eval_shape(init_fn, np.asarray(jax.random.PRNGKey(c.seed)), gen_vars,
                               programs.env_params_from(c))
  # Positive random values in the state's exact structure and shardings: compiling the
  # real initialiser costs minutes on 2 busy cores, and restore + rollout need only the
  # structure (a float leaf of 0 would make BatchNorm variances degenerate).
  rng = np.random.default_rng(0)
  state = jax.tree.map(
      lambda s: jax.device_put(
          (np.abs(rng.normal(size=s.shape)) * 0.1).astype(s.dtype)
          if np.issubdtype(s.dtype, np.floating) else np.zeros(s.shape, s.dtype), s.sharding),
      abstract)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config_palm.json"), "w") as f:
    f.write(c.to_json_best_effort())
  ckpt = checkpoint.Checkpointer(checkpoint.checkpoint_dir(workdir), async_save=False)
  ckpt.save(24, state=state, meta={"job": "palm", "config": c.to_dict()})
  ckpt.close()


def test_job_end_to_end(tmp_path):
  rng = np.random.default_rng(4)
  train = rng.integers(0, 256, size=(48, 8, 8, 3), dtype=np.uint8)
  np.savez(tmp_path / "train.npz", images=train, labels=rng.integers(0, 4, size=48))
  # Frames "handed in" = the training images themselves (re-ordered): coverage 100 %.
  np.savez(tmp_path / "frames.npz", images=train[::-1].copy())
  spec = f"npz:{tmp_path / 'train.npz'}"
  run_dir = str(tmp_path / "run")
  _tiny_palm_run(run_dir)
  config = _job_config(spec, f"uniform,palm,npz:{tmp_path / 'frames.npz'}")
  config.data.image_size, config.generator = 8, ""   # the run's own generator
  coverage_eval.run(config, run_dir)
  out = json.loads((tmp_path / "run" / "eval" / "coverage_pixels.json").read_text())
  assert out["feature_space"] == "pixels" and out["num_images"] == 48
  assert out["coverage"]["frames"] == 1.0
  assert out["sources"]["palm"]["step"] == 24 and out["sources"]["palm"]["run"] == run_dir
  assert out["sources"]["palm"]["frames"] == "all"
  for label in ("uniform", "palm"):
    assert 1 / 48 <= out["coverage"][label] <= 1.0
    assert out["sources"][label]["distinct_neighbours"] == round(out["coverage"][label] * 48)
  for label in ("uniform", "palm", "frames"):
    assert os.path.isfile(tmp_path / "run" / "eval" / f"coverage_pixels_{label}.png")
  # A missing Inception file is one sentence, before anything heavy runs.
  with pytest.raises(UserError, match="config.inception"):
    coverage_eval.run(_job_config(spec, "uniform", "inception"), run_dir)
  with pytest.raises(UserError, match="PALM run"):
    coverage_eval.run(_job_config(spec, "palm"), str(tmp_path / "empty"))
  # One frame per episode: the last frames of 48 rollouts equal those of "all" at t = T-1.
  config = _job_config(spec, "palm")
  config.data.image_size, config.generator, config.palm_frames = 8, "", "last"
  from palm_jax.runtime import sharding
  run, mesh = coverage_sources.setup(config, run_dir), sharding.make_mesh()
  last = coverage_sources.palm_images(run, 8, seed=0, size=8, step=None, mesh=mesh,
                                      frames="last")[0]
  every = coverage_sources.palm_images(run, 32, seed=0, size=8, step=None, mesh=mesh)[0]
  np.testing.assert_array_equal(last[:8], every.reshape(8, 4, 8, 8, 3)[:, -1])
  config.palm_frames = "first"
  with pytest.raises(UserError, match="palm_frames='first'"):
    coverage_eval.run(config, run_dir)


def test_framelog_source_reads_a_runs_experience_log(tmp_path):
  from palm_jax.data import frame_log
  rng = np.random.default_rng(5)
  train = rng.integers(0, 256, size=(48, 8, 8, 3), dtype=np.uint8)
  np.savez(tmp_path / "train.npz", images=train, labels=rng.integers(0, 4, size=48))
  # A run whose experience log holds the training images, reversed, over 3 shards.
  log_dir = tmp_path / "run" / "experience"
  w = frame_log.FrameLogWriter(str(log_dir), frame_shape=(8, 8, 3), fields=("env",))
  frames = train[::-1].copy()
  for shard, part in enumerate(np.array_split(np.arange(48), 3)):
    w.submit(shard, frames[part], env=part)
  w.close()
  spec = f"npz:{tmp_path / 'train.npz'}"
  assert coverage_eval.source_label(f"framelog:{tmp_path / 'run'}/") == "log_run"
  coverage_eval.run(_job_config(spec, f"framelog:{tmp_path / 'run'}"), str(tmp_path / "out"))
  out = json.loads((tmp_path / "out" / "eval" / "coverage_pixels.json").read_text())
  assert out["coverage"]["log_run"] == 1.0                 # every training image, once
  assert out["sources"]["log_run"]["log_frames"] == 48
  png = tmp_path / "out" / "eval" / "coverage_pixels_log_run.png"
  from PIL import Image
  pairs = coverage_eval.pairs_grid(np.zeros((32, 8, 8, 3), np.uint8),
                                   np.zeros((32, 8, 8, 3), np.uint8))
  captioned = np.asarray(Image.open(png))
  assert captioned.shape[0] > pairs.shape[0]              # a caption band above the pairs
  assert (captioned[:captioned.shape[0] - pairs.shape[0]] < 128).any()  # with text in it
  # A rerun with another source keeps the first source's value beside the new one.
  np.savez(tmp_path / "frames.npz", images=train[:24].repeat(2, axis=0))
  coverage_eval.run(_job_config(spec, f"npz:{tmp_path / 'frames.npz'}"), str(tmp_path / "out"))
  out = json.loads((tmp_path / "out" / "eval" / "coverage_pixels.json").read_text())
  assert out["coverage"] == {"log_run": 1.0, "frames": 0.5}
  assert out["sources"]["log_run"]["log_frames"] == 48
  # Other settings (N) are not merged: the earlier file is kept beside the new one.
  config = _job_config(spec, f"npz:{tmp_path / 'frames.npz'}")
  config.num_images = 24
  coverage_eval.run(config, str(tmp_path / "out"))
  out = json.loads((tmp_path / "out" / "eval" / "coverage_pixels.json").read_text())
  assert out["num_images"] == 24 and list(out["coverage"]) == ["frames"]
  kept = [p for p in os.listdir(tmp_path / "out" / "eval")
          if p.startswith("coverage_pixels_") and p.endswith(".json")]
  assert len(kept) == 1
  assert json.loads((tmp_path / "out" / "eval" / kept[0]).read_text())["coverage"] == {
      "log_run": 1.0, "frames": 0.5}
  # Fewer frames than N, or gray Atari frames, are one sentence each.
  for name, shape, count, match in (("short", (8, 8, 3), 40, "has 40 frames, fewer than "
                                      "config.num_images=48"), ("gray", (8, 8, 1), 48, "RGB")):
    w = frame_log.FrameLogWriter(str(tmp_path / name), frame_shape=shape)
    w.submit(0, np.zeros((count,) + shape, np.uint8))
    w.close()
    with pytest.raises(UserError, match=match):
      coverage_eval.run(_job_config(spec, f"framelog:{tmp_path / name}"), str(tmp_path / "o"))
