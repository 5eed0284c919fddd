r"""`config.job = "coverage"`: how much of the training set generated images cover (Table 3).

    python -m palm_jax.main --config=configs/coverage.py --workdir=RUN_DIR \
        --config.data.train=npz:../shared/data/cifar_subset/cifar10_train_partial.npz \
        --config.inception=/path/pt_inception-2015-12-05-6726825d.pth

N = `config.num_images` real training images (a random subset of `config.data.train`,
seeded) are the references; every source of `config.sources` (palm_jax/evaluation/
coverage_sources.py: `uniform`, `palm`, `framelog:<a run's experience log>`, or a dataset
spec such as `npz:frames.npz`) gives
N generated images. Each generated image's nearest training image in `config.features`
(inception | encoder | pixels) is found by `coverage.NearestNeighbours`, and
coverage = distinct nearest neighbours / N. Outputs under `RUN_DIR/eval/`, keyed by the
feature space so evaluations in different spaces never overwrite each other:
  coverage_<space>.json          {"coverage": {source: value}, feature space, N, seed,
                                  specs, checkpoint step, mean NN distance, timings};
                                  a rerun with other sources adds them (`keep_earlier`)
  coverage_<space>_<source>.png  rows of (generated image, its nearest training image),
                                  captioned
and the values as TensorBoard scalars `coverage/<space>/<source>`.
"""
from __future__ import annotations

import json
import os
import textwrap
import time

import jax
import numpy as np
from absl import logging

from palm_jax.data import parse_spec
from palm_jax.evaluation import coverage, linear_eval
from palm_jax.jobs import linear_eval as linear_eval_job
from palm_jax.palm import coverage_sources
from palm_jax.runtime import files, images, sharding
from palm_jax.runtime.errors import UserError, require
from palm_jax.runtime.metrics import MetricWriter

CONFIG = "configs/coverage.py"
# Read without a default (checked by jobs.run_job before anything runs).
REQUIRED = ("seed", "num_images", "sources", "features", "inception", "run", "run_step",
            "data", "batch_size", "nn", "generator")


def parse_sources(field: str) -> list[str]:
  """`config.sources` → names; each is `uniform`, `palm` or a dataset spec."""
  names = [s.strip() for s in (field or "").split(",") if s.strip()]
  require(bool(names), "config.sources is empty; set it to e.g. uniform,palm (or a frames "
                       "file npz:/path/frames.npz).")
  for name in names:
    if name not in coverage_sources.BUILTIN and not name.startswith(coverage_sources.FRAMELOG):
      try:
        parse_spec(name)
      except UserError as e:
        raise UserError(f"config.sources entry {name!r} is neither uniform, palm nor a "
                        f"dataset spec ({e}).") from e
  require(len(set(names)) == len(names), f"config.sources={field!r} names a source twice.")
  return names


def source_label(name: str) -> str:
  """A file-name-safe label: `uniform`, `palm`, `log_<dir name>` for a frame log, or the
  spec's file stem."""
  if name in coverage_sources.BUILTIN:
    return name
  if name.startswith(coverage_sources.FRAMELOG):
    stem = "log_" + os.path.basename(os.path.normpath(name[len(coverage_sources.FRAMELOG):]))
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
  stem = os.path.splitext(os.path.basename(name.split(":", 1)[-1].split(":")[0]))[0]
  return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem) or "images"


def pairs_grid(generated: np.ndarray, nearest: np.ndarray, rows: int = 8,
               pairs_per_row: int = 4) -> np.ndarray:
  """uint8 grid: each row holds `pairs_per_row` (generated, nearest training) pairs."""
  k = min(rows * pairs_per_row, generated.shape[0])
  rows = max(1, -(-k // pairs_per_row))
  pad = rows * pairs_per_row - k
  g = np.concatenate([generated[:k], np.zeros((pad,) + generated.shape[1:], np.uint8)])
  r = np.concatenate([nearest[:k], np.zeros((pad,) + nearest.shape[1:], np.uint8)])
  both = np.stack([g, r], axis=1)                        # [k', 2, H, W, C]
  return images.make_grid(both.reshape((rows, 2 * pairs_per_row) + g.shape[1:]))


# The settings under which coverage values of different runs of the job are comparable.
SAME_SETTINGS = ("feature_space", "num_images", "seed", "train", "image_size", "encoder",
                 "inception")


def keep_earlier(path: str, result: dict) -> dict:
  """`result` merged with the sources an earlier evaluation wrote to `path`.

  Rerunning the job with other sources keeps the earlier sources' values (this run's win
  where both have one). An earlier file made under other settings (`SAME_SETTINGS`) is not
  merged but kept beside it as `<path stem>_<its modification time>.json`.
  """
  if not os.path.exists(path) or jax.process_index() != 0:
    return result
  with open(path) as f:
    earlier = json.load(f)
  if any(earlier.get(k) != result.get(k) for k in SAME_SETTINGS):
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(path)))
    kept = f"{os.path.splitext(path)[0]}_{stamp}.json"
    os.replace(path, kept)
    logging.info("%s was made under other settings; kept it as %s.", path, kept)
    return result
  merged = dict(result)
  merged["coverage"] = {**earlier.get("coverage", {}), **result["coverage"]}
  merged["sources"] = {**earlier.get("sources", {}), **result["sources"]}
  return merged


def run(config, workdir: str) -> None:
  """The job: `config` as in configs/coverage.py."""
  mesh = sharding.make_mesh()
  n, seed = int(config.num_images), int(config.seed)
  require(n >= 1, f"config.num_images={n} must be at least 1 (the paper's N; e.g. 10000).")
  names = parse_sources(config.sources)
  palm_frames = config.get("palm_frames", "all")
  require(palm_frames in coverage_sources.PALM_FRAMES, f"config.palm_frames={palm_frames!r} "
          f"must be one of {coverage_sources.PALM_FRAMES}.")
  require(config.features in coverage.FEATURE_SPACES,
          f"config.features={config.features!r} is not a feature space; use one of "
          f"{coverage.FEATURE_SPACES}.")
  require(config.features != "inception" or bool(config.inception),
          "config.features='inception' needs config.inception, the FID weights file "
          "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth or its .npz); or use "
          "config.features=pixels or encoder.")
  run_dir = config.run or workdir
  step = None if int(config.run_step) < 0 else int(config.run_step)

  t0 = time.time()
  train = linear_eval.load_split(config.data.train, config.data, seed=seed,
                                 field="data.train")
  require(len(train) >= n, f"config.data.train={train.spec!r} has {len(train)} images, fewer "
                           f"than config.num_images={n}; lower num_images.")
  real_idx = np.sort(np.random.default_rng(seed).permutation(len(train))[:n])
  real = train.images[real_idx]
  size = real.shape[1]
  # Every source's images, before anything compiles for features.
  generated, meta = {}, {}
  needs_gen = any(s in coverage_sources.BUILTIN for s in names)
  run = coverage_sources.setup(config, run_dir) if needs_gen else None
  for name in names:
    t = time.time()
    if name == "uniform":
      generated[name] = coverage_sources.uniform_images(run, n, seed=seed, size=size)
      meta[name] = {"generator": run.config.generator}
    elif name == "palm":
      generated[name], got = coverage_sources.palm_images(
          run, n, seed=seed, size=size, step=step, mesh=mesh,
          frames=palm_frames)
      meta[name] = {"run": run.workdir, "step": got, "generator": run.config.generator,
                    "episode_length": int(run.config.env.episode_length),
                    "frames": palm_frames}
    elif name.startswith(coverage_sources.FRAMELOG):
      generated[name], meta[name] = coverage_sources.framelog_images(name, n, size=size)
    else:
      ds = linear_eval.load_split(name, dict(config.data.to_dict(), limit=0), seed=seed,
                                  field="sources")
      require(len(ds) >= n, f"source {name!r} has {len(ds)} images, fewer than "
                            f"config.num_images={n}; lower num_images.")
      generated[name] = ds.images[:n]
      meta[name] = {"spec": name}
    meta[name]["image_seconds"] = round(time.time() - t, 3)
  image_seconds = time.time() - t0

  encoder = (linear_eval_job.encoder_from_config(config, config.encoder_run or run_dir)
             if config.features == "encoder" else None)
  space, featurize = coverage.make_featurizer(
      config.features, inception_path=config.inception, encoder=encoder,
      batch_size=int(config.batch_size), mesh=mesh)
  t1 = time.time()
  search = coverage.NearestNeighbours(featurize(real), query_tile=int(config.nn.query_tile),
                                      ref_tile=int(config.nn.ref_tile), mesh=mesh)
  values, eval_dir, pngs = {}, os.path.join(workdir, "eval"), []
  for name in names:
    index, sq_dist = search(featurize(generated[name]))
    label = source_label(name)
    values[label] = coverage.coverage_of(index)
    meta[name].update({"distinct_neighbours": int(np.unique(index).size),
                       "mean_nn_distance": float(np.mean(np.sqrt(sq_dist)))})
    logging.info("coverage[%s] in %s space: %.4f", label, space, values[label])
    if jax.process_index() == 0:
      # A seeded random selection: rollout frames come in episode order.
      pick = np.random.default_rng(seed).permutation(n)[:32]
      grid = pairs_grid(generated[name][pick], real[index[pick]])
      # Pillow's default font is ~6 px per character: the caption wraps to the grid's width.
      caption = textwrap.wrap(
          f"coverage, {space} features, source {label}: {values[label]:.1%}. In each pair: "
          f"LEFT a generated image, RIGHT its nearest real training image.",
          max(20, grid.shape[1] // 6))
      pngs.append(images.save_png(os.path.join(eval_dir, f"coverage_{space}_{label}.png"),
                                  images.add_caption(grid, caption)))
  result = {
      "feature_space": space, "coverage": values, "num_images": n, "seed": seed,
      "train": train.spec, "num_train_available": len(train), "image_size": size,
      "sources": {source_label(k): v for k, v in meta.items()},
      "encoder": (None if encoder is None else
                  {"init": encoder.init, "step": int(encoder.step), **encoder.kwargs}),
      "inception": config.inception if config.features == "inception" else None,
      "nn_tiles": search.tile_shapes, "image_seconds": round(image_seconds, 3),
      "search_seconds": round(time.time() - t1, 3), "num_devices": int(mesh.size),
      "platform": jax.devices()[0].platform}
  path = os.path.join(eval_dir, f"coverage_{space}.json")
  files.write_json(path, keep_earlier(path, result))
  writer = MetricWriter(eval_dir)
  writer.write_scalars(int(meta.get("palm", {}).get("step", 0)),
                       {f"coverage/{space}/{k}": v for k, v in values.items()})
  writer.close()
  if jax.process_index() == 0:
    table = ", ".join(f"{k} {v:.2%}" for k, v in values.items())  # this run's sources
    print(f"coverage ({space} features, N={n}): {table}; wrote {path}")
