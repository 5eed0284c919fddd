"""`python -m palm_jax.bench features`: the evaluation's cost, features + linear probe.

    python -m palm_jax.bench features --train=50000 --test=10000 --dtype=bfloat16

A random CIFAR ResNet-18 (configs/linear_eval.py's encoder) on synthetic uint8 32×32
images — the cost does not depend on the pixels: `FeatureExtractor` seconds for the train
and test splits after one compiled warm-up batch (and the program's compile seconds and
memory plan), then `fit_linear_probe` (the λ grid of configs/linear_eval.py, one jitted
L-BFGS solve of 2·|grid| problems; its wall time includes that one compilation).
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from palm_jax.bench import timing

RESNET18 = dict(stage_sizes=(2, 2, 2, 2), width=64)   # configs/linear_eval.py's encoder


def add_features_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--train", type=int, default=50_000, help="training images (CIFAR: 50k)")
  p.add_argument("--test", type=int, default=10_000, help="test images (CIFAR: 10k)")
  p.add_argument("--batch_size", type=int, default=512)
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  p.add_argument("--width", type=int, default=64, help="ResNet width (64: ResNet-18)")
  p.add_argument("--max_iter", type=int, default=1000, help="L-BFGS iterations per λ")


def measure_features(*, train: int = 50_000, test: int = 10_000, batch_size: int = 512,
                     dtype: str = "bfloat16", width: int = 64, stage_sizes=(2, 2, 2, 2),
                     max_iter: int = 1000, num_classes: int = 10) -> dict:
  """One row: feature seconds per split, images/s, probe seconds, compile, memory."""
  from palm_jax.evaluation import features, linear_probe  # pylint: disable=import-outside-toplevel
  from palm_jax.runtime import sharding  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  images = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            for s, n in (("train", train), ("test", test))}
  labels = rng.integers(0, num_classes, train).astype(np.int32)
  row = dict(train=train, test=test, batch_size=batch_size, dtype=dtype, width=width)
  try:
    encoder = features.random_encoder(dict(stage_sizes=stage_sizes, width=width),
                                      dtype=dtype)
    extractor = features.FeatureExtractor(encoder, batch_size=batch_size)
    mesh = extractor.mesh
    batch = sharding.host_to_global(images["test"][:batch_size], mesh)
    program = features.encode_batch  # jitted, the model static
    _, compile_s, memory = timing.compile_aot(program, encoder.model,
                                              extractor._variables, batch)  # pylint: disable=protected-access
    extractor(images["test"][:batch_size])                     # the call path's warm-up
    seconds, feats = {}, {}
    for split in ("train", "test"):
      start = time.perf_counter()
      feats[split] = extractor(images[split])
      seconds[split] = time.perf_counter() - start
    start = time.perf_counter()
    probe, _ = linear_probe.fit_linear_probe(feats["train"], labels, num_classes,
                                             max_iter=max_iter, mesh=mesh)
    jax.block_until_ready(probe)
    probe_s = time.perf_counter() - start
  except Exception as e:  # pylint: disable=broad-except
    if not timing.is_oom(e):
      raise
    return dict(row, oom=True, error=timing.oom_message(e))
  return dict(row, oom=False, features_train_s=seconds["train"],
              features_test_s=seconds["test"],
              images_per_s=(train + test) / (seconds["train"] + seconds["test"]),
              probe_s=probe_s, compile_s=compile_s, memory=memory,
              peak_bytes=None if memory is None else memory["peak_bytes"])


def format_row(row: dict) -> str:
  if row["oom"]:
    return f"features {row['train']}+{row['test']}: out of memory ({row['error']})"
  return (f"features {row['train']}+{row['test']} ({row['dtype']}, width {row['width']}): "
          f"{row['features_train_s']:.1f} + {row['features_test_s']:.1f} s "
          f"({row['images_per_s']:,.0f} img/s), probe {row['probe_s']:.1f} s, encoder "
          f"compile {row['compile_s']:.1f} s, memory plan {timing.gib(row['peak_bytes'])}")


def bench_features(args: argparse.Namespace) -> list[dict]:
  row = measure_features(train=args.train, test=args.test, batch_size=args.batch_size,
                         dtype=args.dtype, width=args.width, max_iter=args.max_iter)
  print(format_row(row), flush=True)
  return [row]
