"""The linear evaluation of a frozen encoder: probe top-1, weighted kNN, cross-validation.

    python -m palm_jax.main --config=configs/linear_eval.py --workdir=RUN_DIR \
        --config.data.train=npz:../shared/data/cifar_subset/cifar10_train_partial.npz \
        --config.data.test=npz:../shared/data/cifar_subset/cifar10_test_partial.npz

Restores only the encoder of RUN_DIR (latest checkpoint, or `config.step`); a RUN_DIR
without a checkpoint is refused (a mistyped path must not silently evaluate a random
network) unless `config.encoder_init="random"` asks for the floor every number is compared
with. Features of the train and test splits (eval mode, no augmentation) feed
`linear_probe.fit_linear_probe`. Results are never overwritten by a different evaluation:

  eval/linear_eval_<train>__<test>_<encoder_init>_step<step>.json   the record (one per
                     datasets + encoder + step; rerunning the same evaluation rewrites it)
  eval/linear_eval.json   a copy of the latest record, for scripts that want "the" result
  eval/metrics.jsonl, tb/  scalars `linear_eval/<train>/<name>` at the encoder's step

The palm job (`palm_jax.jobs.palm`) calls the same code at the end of training:

    from palm_jax.evaluation import features, linear_eval
    encoder = features.from_variables(encoder_variables, encoder_kwargs, step=step)
    result = linear_eval.evaluate_linear(encoder, config.eval.train, config.eval.test)
    linear_eval.write_result(workdir, result)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from palm_jax.data import Dataset, load_dataset
from palm_jax.evaluation import cv_probe, feature_spectrum, knn_classifier, linear_probe
from palm_jax.evaluation import features as features_lib
from palm_jax.runtime import files, sharding
from palm_jax.runtime.errors import require
from palm_jax.runtime.metrics import MetricWriter

RESULT_FILE = "linear_eval.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _slug(text: str) -> str:
  return _UNSAFE.sub("-", str(text)).strip("-") or "data"


def record_name(result: Mapping[str, Any], kind: str = "linear_eval") -> str:
  """`<kind>_<train>__<test>_<encoder_init>_step<step>.json`: one file per evaluation."""
  test = result.get("test_name") or result.get("dataset")
  return (f"{kind}_{_slug(result.get('dataset'))}__{_slug(test)}_"
          f"{_slug(result.get('encoder_init'))}_step{int(result.get('step', 0))}.json")


def load_split(spec: str | Dataset, data: Mapping[str, Any] | None = None, *, seed: int = 0,
               field: str = "data") -> Dataset:
  """A `Dataset` from a spec (with `config.data`'s options) or as given."""
  if isinstance(spec, Dataset):
    return spec
  data = dict(data or {})
  require(isinstance(spec, str) and bool(spec.strip()),
          f"config.{field} is empty; set it to a dataset spec such as tfds:cifar10:test or "
          "npz:/path/file.npz.")
  return load_dataset(spec.strip(), image_size=int(data.get("image_size", 32)) or None,
                      limit=int(data.get("limit", 0)) or None, seed=seed,
                      data_dir=data.get("tfds_data_dir") or None,
                      download=bool(data.get("download", True)))


def probe_settings(probe: Mapping[str, Any] | None) -> dict:
  """`config.probe` → keyword arguments of `fit_linear_probe`."""
  probe = dict(probe or {})
  return {"weight_decays": tuple(probe.get("weight_decays",
                                           linear_probe.DEFAULT_WEIGHT_DECAYS)),
          "holdout_fraction": float(probe.get("holdout_fraction", 0.1)),
          "folds": int(probe.get("folds", 5)),
          "max_iter": int(probe.get("max_iter", 1000)), "tol": float(probe.get("tol", 1e-5))}


def knn_and_cv(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
               test_y: np.ndarray | None, num_classes: int, *,
               knn: Mapping[str, Any] | None = None, cv: Mapping[str, Any] | None = None,
               probe: Mapping[str, Any] | None = None, seed: int = 0,
               mesh: Mesh | None = None) -> dict:
  """The label metrics beside the split's linear probe, JSON-ready:

    knn_top1   {k: top-1} of the weighted kNN classifier (train bank → test split),
               `config.knn.ks` / `.temperature` (knn_classifier.py)
    cv         repeated stratified k-fold over train + test pooled (cv_probe.py), when
               `config.cv.repeats` > 0: probe and kNN top-1 with standard errors; with
               `config.cv.images="train"` over the training split alone (the test images
               untouched: for choosing settings, e.g. a budget, without the test set)
    features   has the representation collapsed? `normalised_std` and `effective_rank` of
               the train + test features (feature_spectrum.py; no labels used)
  """
  knn, cv = dict(knn or {}), dict(cv or {})
  ks = tuple(int(k) for k in knn.get("ks", knn_classifier.DEFAULT_KS))
  if any(k > len(train_x) for k in ks):  # tiny splits (smoke runs): the k that fit
    logging.warning("kNN k=%s: only %d training images; k larger than that is skipped.",
                    list(ks), len(train_x))
    ks = tuple(k for k in ks if k <= len(train_x))
  temperature = float(knn.get("temperature", knn_classifier.DEFAULT_TEMPERATURE))
  out: dict = {"knn_temperature": temperature,
               "features": feature_spectrum.spectrum_stats(np.concatenate([train_x, test_x]))}
  if test_y is not None and ks:
    out["knn_top1"] = {str(k): v for k, v in knn_classifier.knn_top1(
        train_x, train_y, test_x, test_y, num_classes=num_classes, ks=ks,
        temperature=temperature, mesh=mesh).items()}
  repeats = int(cv.get("repeats", 0))
  images = cv.get("images", "all")
  require(images in ("all", "train"), f"config.cv.images={images!r}; use 'all' (train + "
          "test pooled) or 'train' (the training split only: choosing settings without "
          "looking at the test images).")
  if repeats > 0 and (test_y is not None or images == "train"):
    settings = probe_settings(probe)
    t0 = time.time()
    x, y = ((train_x, train_y) if images == "train" else
            (np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])))
    result = cv_probe.cross_validate(
        x, y, num_classes,
        folds=int(cv.get("folds", 5)), repeats=repeats, seed=seed, knn_ks=ks,
        knn_temperature=temperature, weight_decays=settings["weight_decays"],
        inner_folds=max(settings["folds"], 2), max_iter=settings["max_iter"],
        tol=settings["tol"], mesh=mesh)
    out["cv"] = dict(result.to_json(), images=images, seconds=round(time.time() - t0, 3))
  return out


def check_labelled(ds: Dataset, role: str) -> None:
  require(ds.labels is not None,
          f"the {role} set {ds.spec!r} has no labels; the linear probe needs a labelled "
          "split (an npz with 'labels', a folder with class sub-folders, or a tfds split).")


def evaluate_linear(encoder: features_lib.Encoder, train: str | Dataset, test: str | Dataset,
                    *, batch_size: int = 512, probe: Mapping[str, Any] | None = None,
                    data: Mapping[str, Any] | None = None, seed: int = 0,
                    mesh: Mesh | None = None, knn: Mapping[str, Any] | None = None,
                    cv: Mapping[str, Any] | None = None) -> dict:
  """Linear-probe top-1 of `encoder` trained on `train`, tested on `test`.

  Args:
    encoder: `features.load_encoder(...)`, `features.from_variables(...)` or
      `features.random_encoder(...)`.
    train, test: dataset specs (or loaded `Dataset`s), labelled.
    batch_size: images per feature-extraction batch (a multiple of the device count).
    probe: `config.probe` settings (weight_decays, holdout_fraction, max_iter, tol).
    data: `config.data` loading options (image_size, limit, tfds_data_dir, download).
    knn, cv: `config.knn` / `config.cv` (see `knn_and_cv`).
  Returns:
    A JSON-ready dict: dataset, step, encoder_init, test_top1, train_top1, num_train,
    num_test, num_classes, weight_decay (chosen), the grid with held-out top-1, timings,
    knn_top1 ({k: top-1}) and, with cv.repeats > 0, cv (cv_probe.CVResult's fields).
  """
  mesh = mesh or sharding.make_mesh()
  train_ds = load_split(train, data, seed=seed, field="data.train")
  test_ds = load_split(test, data, seed=seed, field="data.test")
  check_labelled(train_ds, "training")
  check_labelled(test_ds, "test")
  num_classes = max(train_ds.num_classes or 0, test_ds.num_classes or 0,
                    int(train_ds.labels.max()) + 1, int(test_ds.labels.max()) + 1)
  t0 = time.time()
  extractor = features_lib.FeatureExtractor(encoder, batch_size=batch_size, mesh=mesh)
  train_x, test_x = extractor(train_ds.images), extractor(test_ds.images)
  t1 = time.time()
  solver = sharding.solver_mesh(mesh)  # multi-process: no solver step crosses hosts
  probe_state, fit = linear_probe.fit_linear_probe(
      train_x, train_ds.labels, num_classes, seed=seed, mesh=solver, **probe_settings(probe))
  result = {
      "dataset": train_ds.name, "test_name": test_ds.name, "train_data": train_ds.spec, "test_data": test_ds.spec,
      "step": int(encoder.step), "encoder_init": encoder.init, "encoder": encoder.kwargs,
      "test_top1": linear_probe.top1_accuracy(probe_state, test_x, test_ds.labels),
      "train_top1": linear_probe.top1_accuracy(probe_state, train_x, train_ds.labels),
      "num_train": len(train_ds), "num_test": len(test_ds), "num_classes": num_classes,
      "feature_dim": int(train_x.shape[1]), "weight_decay": fit.weight_decay,
      "weight_decay_grid": [float(f"{v:.7g}") for v in fit.weight_decays],
      "holdout_top1": [None if np.isnan(v) else round(float(v), 6) for v in fit.holdout_top1],
      "solver_iterations": fit.iterations, "solver_grad_norm": fit.grad_norm,
      "feature_seconds": round(t1 - t0, 3), "probe_seconds": round(time.time() - t1, 3),
      "num_devices": int(mesh.size), "platform": jax.devices()[0].platform,
  }
  result.update(knn_and_cv(train_x, train_ds.labels, test_x, test_ds.labels, num_classes,
                           knn=knn, cv=cv, probe=probe, seed=seed, mesh=solver))
  return result


def write_result(workdir: str, result: Mapping[str, Any], *, filename: str = RESULT_FILE,
                 prefix: str = "linear_eval") -> str:
  """Writes the record `workdir/eval/<record_name>` and the latest copy `<filename>`, and
  logs the scalars as `<prefix>/<dataset>/<name>` (process 0). Returns the record's path."""
  eval_dir = os.path.join(workdir, "eval")
  path = os.path.join(eval_dir, record_name(result, os.path.splitext(filename)[0]))
  if jax.process_index() == 0:
    files.write_json(path, result)
    files.write_json(os.path.join(eval_dir, filename), dict(result, record=os.path.basename(path)))
  writer = MetricWriter(eval_dir)
  scalars = {f"{prefix}/{_slug(result.get('dataset'))}/{k}": v for k, v in result.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
  writer.write_scalars(int(result.get("step", 0)), scalars)
  writer.close()
  return path


def random_floor(kwargs: Mapping[str, Any], train: Dataset, test: Dataset, *, seed: int = 0,
                 mesh: Mesh | None = None, cache_dir: str | None = None,
                 batch_size: int = 512, probe: Mapping[str, Any] | None = None) -> dict:
  """Linear probe of a randomly initialised encoder with `kwargs` on `train`/`test` (the
  floor a trained encoder must beat), cached in `$PALM_JAX_CACHE/floors/` by architecture,
  seed, probe settings and the data's bytes so every later run prints it for free.
  `probe`: the trained encoder's `config.probe`, so both are fitted the same way."""
  ident = [dict(kwargs), seed, train.spec, test.spec]
  if probe:  # (without: the key the palm job's floors were cached under)
    ident.append(probe_settings(probe))
  key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode())
  for ds in (train, test):
    key.update(np.ascontiguousarray(ds.images[::max(len(ds) // 64, 1)]).tobytes())
    key.update(np.asarray(ds.labels).tobytes())
  cache = os.path.join(cache_dir or os.environ.get("PALM_JAX_CACHE")
                       or os.path.expanduser("~/.cache/palm_jax"), "floors",
                       f"{key.hexdigest()[:24]}.json")
  # Multi-process: every process must run the same collectives, and a cache file may be
  # visible to some processes only, so the floor is always computed there.
  if jax.process_count() == 1 and os.path.exists(cache):
    with open(cache) as f:
      return json.load(f)
  encoder = features_lib.random_encoder(dict(kwargs), seed=seed,
                                        image_size=int(train.images.shape[1]))
  result = evaluate_linear(encoder, train, test, seed=seed, mesh=mesh, batch_size=batch_size,
                          probe=probe)
  if jax.process_index() == 0:
    try:
      files.write_json(cache, result)
    except OSError:  # a read-only home: the floor is just recomputed next time
      pass
  return result


def describe(encoder: features_lib.Encoder, workdir: str) -> str:
  if encoder.init == "random":
    return f"a RANDOMLY INITIALISED encoder {encoder.kwargs} (no checkpoint used)"
  return f"the encoder of {workdir} at step {encoder.step}"


def describe_knn_cv(result: Mapping[str, Any]) -> str:
  """`; kNN k=20 0.3410, ...; CV (5 folds x 3, 6187 images) probe 0.3512 ± 0.0061 ...`."""
  text = "".join(f", kNN k={k} {v:.4f}" for k, v in result.get("knn_top1", {}).items())
  cv = result.get("cv")
  if cv:
    text += (f"; {cv['folds']}-fold CV x {cv['repeats']} on all {cv['num_images']} images: "
             f"probe {cv['probe_top1']:.4f} ± {cv['probe_top1_se']:.4f}" + "".join(
                 f", kNN k={k} {v:.4f}" for k, v in cv["knn_top1"].items()))
  return text
