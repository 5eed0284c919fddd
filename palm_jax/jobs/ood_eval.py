"""`config.job = "ood_eval"`: out-of-distribution detection with a run's frozen encoder.

    python -m palm_jax.main --config=configs/ood_eval.py --workdir=RUN_DIR \
        --config.data.train=npz:.../cifar10_train_partial.npz \
        --config.data.test=npz:.../cifar10_test_partial.npz \
        --config.data.ood=npz:.../cifar100_test_partial.npz,tfds:svhn_cropped:test,interp

In-distribution: `config.data.train` (the probe's training split and the kNN bank) and
`config.data.test` (the positives). Each comma-separated spec of `config.data.ood` is one
OOD set (the negatives); a bare `interp` means `interp:<config.data.test>`. For every set
and both scores of `palm_jax.evaluation.ood` (msp, knn) the AUROC is computed with
in-distribution as the positive class. Outputs under `RUN_DIR/eval/`:
  ood.json          `{set: {score: auroc}}`
  ood_details.json  step, encoder_init, the specs, sizes, probe test top-1, the weighted
                    kNN classifier's test top-1 (`knn_top1`), the cross-validated probe
                    and kNN on train + test pooled (`cv`, with config.cv.repeats > 0;
                    linear_eval.knn_and_cv), k, and FPR at 95% TPR per set and score
  ood_roc.png       ROC curves, one panel per score, one curve per OOD set
  ood_<in-dist>__<sets>_<encoder_init>_step<step>.json   the record of this evaluation
                    (never overwritten by a different one; ood.json is the latest copy)
and the AUROCs as TensorBoard scalars `ood/<in-distribution>/<set>/<score>`. With
`config.log.wandb=True` the numbers of ood_details.json (`ood/auroc/<set>/<score>`, ...)
join the summary of the W&B run RUN_DIR's training logged to.
"""
from __future__ import annotations

import os
import time

import jax
from absl import logging

from palm_jax.data import Dataset, make_interp, parse_spec_list
from palm_jax.evaluation import features as features_lib
from palm_jax.evaluation import linear_eval, linear_probe, ood, roc_plot
from palm_jax.jobs import linear_eval as linear_eval_job
from palm_jax.runtime import files, sharding, wandb_log
from palm_jax.runtime.errors import require
from palm_jax.runtime.metrics import MetricWriter

CONFIG = "configs/ood_eval.py"
REQUIRED = ("seed", "batch_size", "data", "knn_k")  # read without a default (jobs.run_job)


def ood_specs(ood_field: str, test_spec: str) -> list[str]:
  """Splits `config.data.ood`; a bare `interp` becomes `interp:<test spec>`."""
  raw = [s.strip() for s in (ood_field or "").split(",") if s.strip()]
  require(bool(raw), "config.data.ood is empty; set it to comma-separated dataset specs, "
                     "e.g. tfds:svhn_cropped:test,tfds:cifar100:test,interp.")
  specs = [f"interp:{test_spec.strip()}" if s == "interp" else s for s in raw]
  return parse_spec_list(",".join(specs))


def _unique(name: str, taken: set) -> str:
  out, i = name, 2
  while out in taken:
    out, i = f"{name}_{i}", i + 1
  taken.add(out)
  return out


def run(config, workdir: str) -> None:
  """The job: `config` as in configs/ood_eval.py."""
  mesh = sharding.make_mesh()
  batch_size, seed, k = int(config.batch_size), int(config.seed), int(config.knn_k)
  sharding.check_divisible("batch_size", batch_size, mesh)
  require(k >= 1, f"config.knn_k={k} must be at least 1 (e.g. 50).")
  specs = ood_specs(config.data.ood, config.data.test)  # Checked before any heavy work.
  train = linear_eval.load_split(config.data.train, config.data, seed=seed,
                                 field="data.train")
  test = linear_eval.load_split(config.data.test, config.data, seed=seed, field="data.test")
  linear_eval.check_labelled(train, "in-distribution training")
  # interp of the test split is made from the images already loaded.
  ood_sets = [Dataset(make_interp(test.images, seed), None, None, "interp", s)
              if s == f"interp:{test.spec}" else
              linear_eval.load_split(s, config.data, seed=seed, field="data.ood")
              for s in specs]
  linear_eval_job.require_encoder(config, workdir)
  wandb = wandb_log.evaluation_settings(config, workdir)
  wandb_log.require_installed(wandb)
  encoder = linear_eval_job.encoder_from_config(config, workdir)

  t0 = time.time()
  extractor = features_lib.FeatureExtractor(encoder, batch_size=batch_size, mesh=mesh)
  train_x, test_x = extractor(train.images), extractor(test.images)
  num_classes = max(train.num_classes or 0, int(train.labels.max()) + 1)
  solver = sharding.solver_mesh(mesh)  # multi-process: no solver step crosses hosts
  probe, fit = linear_probe.fit_linear_probe(
      train_x, train.labels, num_classes, seed=seed, mesh=solver,
      **linear_eval.probe_settings(config.get("probe")))
  labels = linear_eval.knn_and_cv(train_x, train.labels, test_x, test.labels, num_classes,
                                  knn=config.get("knn"), cv=config.get("cv"),
                                  probe=config.get("probe"), seed=seed, mesh=solver)
  knn = ood.KnnScorer(train_x, k=k, chunk=batch_size, mesh=solver)
  scores_in = ood.score_all(probe, knn, test_x)

  aurocs, details, panels, taken = {}, {}, {s: {} for s in ood.SCORES}, set()
  for ds in ood_sets:
    name = _unique(ds.name, taken)
    evaluated = ood.evaluate_scores(scores_in, ood.score_all(probe, knn, extractor(ds.images)))
    aurocs[name] = {s: v["auroc"] for s, v in evaluated.items()}
    details[name] = {"spec": ds.spec, "num_images": len(ds),
                     "fpr95": {s: v["fpr95"] for s, v in evaluated.items()}}
    for s, v in evaluated.items():
      panels[s][name] = v
    logging.info("OOD %s: %s", name, ", ".join(f"{s} AUROC {v:.4f}"
                                               for s, v in aurocs[name].items()))
  seconds = time.time() - t0

  eval_dir = os.path.join(workdir, "eval")
  test_top1 = (linear_probe.top1_accuracy(probe, test_x, test.labels)
               if test.labels is not None else None)
  # The record of this evaluation, never overwritten by a different one (datasets, encoder
  # and step in its name); ood.json / ood_details.json are copies of the latest.
  record = linear_eval.record_name({"dataset": test.name, "test_name": "+".join(aurocs),
                                    "encoder_init": encoder.init, "step": encoder.step}, "ood")
  files.write_json(os.path.join(eval_dir, "ood.json"), aurocs)
  files.write_json(os.path.join(eval_dir, record), {
      "record": record, "in_distribution": test.name, "step": int(encoder.step),
      "encoder_init": encoder.init, "auroc": aurocs})
  summary = {
      "record": record,
      "step": int(encoder.step), "encoder_init": encoder.init, "encoder": encoder.kwargs,
      "in_distribution": {"train": train.spec, "test": test.spec, "num_train": len(train),
                          "num_test": len(test)},
      "scores": {"msp": "max softmax probability of the linear probe",
                 "knn": f"minus the distance to the k-th (k={k}) nearest normalised train feature"},
      "knn_k": k, "probe_weight_decay": fit.weight_decay, "probe_test_top1": test_top1,
      **labels,
      "sets": details, "auroc": aurocs, "seconds": round(seconds, 3)}
  files.write_json(os.path.join(eval_dir, "ood_details.json"), summary)
  png = os.path.join(eval_dir, "ood_roc.png")
  if jax.process_index() == 0:
    roc_plot.save_roc_png(png, panels)
  writer = MetricWriter(eval_dir)
  writer.write_scalars(int(encoder.step), {f"ood/{test.name}/{name}/{s}": v
                                           for name, by in aurocs.items()
                                           for s, v in by.items()})
  writer.close()
  wandb_log.write_summary(workdir, wandb, wandb_log.flat_numbers(
      {k: v for k, v in summary.items() if k not in ("encoder", "in_distribution")}, "ood"))
  if jax.process_index() == 0:
    table = "; ".join(f"{name}: " + ", ".join(f"{s} {v:.4f}" for s, v in by.items())
                      for name, by in aurocs.items())
    print(f"ood_eval AUROC with {linear_eval.describe(encoder, workdir)} "
          f"(in-distribution {test.name}): {table}; probe test top-1 "
          f"{test_top1 if test_top1 is None else round(test_top1, 4)}"
          f"{linear_eval.describe_knn_cv(labels)}; wrote {eval_dir}/ood.json and {png}")
