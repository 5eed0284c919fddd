"""What one sweep member's files hold, as rows of results.csv (aggregate.py writes them).

Metrics are read from every `runs/<member>/eval/*.json`, by content rather than file name
(so other eval file names, e.g. one file per dataset or snapshot step, are read too):

  * a linear probe result (palm_jax/evaluation/linear_eval.py: a dict with `test_top1`,
    `dataset`, `step`)            → metric `linear_eval/test_top1`
  * an OOD details file (palm_jax/jobs/ood_eval.py `ood_details.json`: `auroc` =
    {set: {score: auroc}}, `step`, `probe_test_top1`) → metrics `ood/<set>/<score>` and
    `ood/probe_test_top1` (the linear probe behind MSP, on the in-distribution test
    set: the probe top-1 of a sweep whose only eval is ood_eval); a bare `ood.json`
    ({set: {score: auroc}}) is read only when no file of the member carries `auroc`
  * the label metrics beside either (linear_eval.knn_and_cv): `knn_top1` ({k: top-1} of
    the weighted kNN classifier on the split) → `knn/k<k>_top1`; `cv` (repeated stratified
    k-fold over every labelled image) → `probe/cv_top1` and `knn/cv_k<k>_top1`
  * `features` beside them (evaluation/feature_spectrum.py: has the representation
    collapsed?) → `features/normalised_std`, `features/effective_rank`
  * anything else (ROC curves, later analyses' files) is ignored; extra fields are fine.

From the member's training log (`runs/<member>/metrics.jsonl`, when it has one), family
`train`: the mean over the last fifth of its chunks (at least one) of the exploration
metrics and the losses a reader checks beside the probe — `train/apt_gain`,
`train/action_share_policy`, `train/action_share_random`, `train/pair_change`
(palm_jax/palm/exploration.py),
`train/sac_alpha`, `train/sac_entropy`, `train/simsiam_loss`; a member without a key has
no value for it (offline members play no policy).

Each value keeps the file's `dataset` and `step` fields, so a curve over snapshot steps (one
file per step) stays one metric with several steps. Duplicates of (metric, dataset, step)
keep the first file in sorted order.
"""
from __future__ import annotations

import glob
import json
import math
import os
from typing import Sequence

from palm_jax.experiments import runner
from palm_jax.experiments import spec as spec_lib

# metrics.jsonl key → results metric (family "train"), averaged over the last fifth.
TRAIN_METRICS = (("explore/apt_gain", "train/apt_gain"),
                 ("explore/action_share_policy", "train/action_share_policy"),
                 ("explore/action_share_random", "train/action_share_random"),
                 ("explore/pair_change", "train/pair_change"),
                 ("sac/alpha", "train/sac_alpha"), ("sac/entropy", "train/sac_entropy"),
                 ("simsiam/loss", "train/simsiam_loss"))


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
      float(value))


def _auroc_map(obj) -> bool:
  return isinstance(obj, dict) and bool(obj) and all(
      isinstance(v, dict) and v and all(_number(x) for x in v.values()) for v in obj.values())


def read_metrics(member_dir: str) -> list[dict]:
  """[{metric, dataset, step, value, file}] from `member_dir/eval/*.json` (see module doc)."""
  files = sorted(glob.glob(os.path.join(member_dir, "eval", "*.json")))
  loaded = []
  for path in files:
    try:
      with open(path) as f:
        loaded.append((os.path.basename(path), json.load(f)))
    except (OSError, ValueError):
      continue  # half-written or foreign file: the member's status tells what happened
  has_details = any(isinstance(o, dict) and _auroc_map(o.get("auroc")) for _, o in loaded)
  out, seen = [], set()

  def add(metric, dataset, step, value, name):
    key = (metric, dataset, step)
    if key not in seen and _number(value):
      seen.add(key)
      out.append({"metric": metric, "dataset": dataset, "step": step,
                  "value": float(value), "file": name})

  for name, obj in loaded:
    if not isinstance(obj, dict):
      continue
    step = obj.get("step") if _number(obj.get("step")) else None
    step = int(step) if step is not None else None
    if _number(obj.get("test_top1")):
      add("linear_eval/test_top1", str(obj.get("dataset") or ""), step, obj["test_top1"],
          name)
    if isinstance(obj.get("knn_top1"), dict):
      for k, value in obj["knn_top1"].items():
        add(f"knn/k{k}_top1", str(obj.get("dataset") or ""), step, value, name)
    if isinstance(obj.get("features"), dict):
      for key in ("normalised_std", "effective_rank"):
        add(f"features/{key}", str(obj.get("dataset") or ""), step, obj["features"].get(key),
            name)
    cv = obj.get("cv")
    if isinstance(cv, dict):
      add("probe/cv_top1", str(obj.get("dataset") or ""), step, cv.get("probe_top1"), name)
      for k, value in (cv.get("knn_top1") or {}).items():
        add(f"knn/cv_k{k}_top1", str(obj.get("dataset") or ""), step, value, name)
    if _auroc_map(obj.get("auroc")):
      dataset = str(obj.get("dataset") or "")  # ood_details.json names no dataset today
      for set_name, by_score in obj["auroc"].items():
        for score, value in by_score.items():
          add(f"ood/{set_name}/{score}", dataset, step, value, name)
      add("ood/probe_test_top1", dataset, step, obj.get("probe_test_top1"), name)
    elif not has_details and _auroc_map(obj):
      for set_name, by_score in obj.items():
        for score, value in by_score.items():
          add(f"ood/{set_name}/{score}", "", step, value, name)
  for metric, (value, step) in read_training(member_dir).items():
    add(metric, "", step, value, "metrics.jsonl")
  return out


def read_training(member_dir: str) -> dict:
  """{train metric: (mean over the last fifth of the chunks that log it, last step)}."""
  path = os.path.join(member_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  lines = []
  with open(path) as f:
    for line in f:
      try:
        obj = json.loads(line)
      except ValueError:
        continue  # a line torn by a kill
      if isinstance(obj, dict) and _number(obj.get("step")):
        lines.append(obj)
  out = {}
  for key, metric in TRAIN_METRICS:
    have = [o for o in lines if _number(o.get(key))]
    if have:
      tail = have[-max(1, math.ceil(len(have) / 5)):]
      out[metric] = (sum(float(o[key]) for o in tail) / len(tail), int(have[-1]["step"]))
  return out


def eval_data(members: Sequence[spec_lib.Member]) -> list[str]:
  """One line per distinct evaluation data the members' eval files name (specs, sizes)."""
  lines = []
  for m in members:
    for path in sorted(glob.glob(os.path.join(m.workdir, "eval", "*.json"))):
      try:
        with open(path) as f:
          obj = json.load(f)
      except (OSError, ValueError):
        continue
      if not isinstance(obj, dict):
        continue
      split = obj.get("in_distribution") if isinstance(obj.get("in_distribution"),
                                                       dict) else obj
      if not _number(split.get("num_train")):
        continue
      train = split.get("train") or split.get("train_data")
      test = split.get("test") or split.get("test_data")
      line = (f"probe and kNN trained on `{train}` ({split['num_train']} images), tested on "
              f"`{test}` ({split.get('num_test')} images)")
      cv = obj.get("cv")
      if isinstance(cv, dict):
        where = ("the training split's" if cv.get("images") == "train" else "all")
        line += (f"; cross-validated over {where} {cv.get('num_images')} images "
                 f"({cv.get('folds')} stratified folds x {cv.get('repeats')} repeats, weight "
                 "decay chosen inside each training fold)")
      if "knn_temperature" in obj:
        line += f"; kNN temperature {obj['knn_temperature']}"
      if line not in lines:
        lines.append(line)
  return lines


def member_status(member: spec_lib.Member) -> tuple[str, str]:
  """(done | failed | incomplete | missing, error sentence or "")."""
  if not os.path.isdir(member.workdir):
    return "missing", ""
  status = runner.read_status(member.workdir)
  state = status.get("state")
  if state == "done":
    return "done", ""
  if state == "failed":
    return "failed", f"{status.get('stage', '?')}: {status.get('error', '')}"
  if state == "running":
    return "incomplete", f"interrupted or still running in stage {status.get('stage', '?')}"
  return "missing", ""


def collect(members: Sequence[spec_lib.Member]) -> tuple[list[dict], list[str]]:
  """(rows of results.csv as dicts, axis labels) for these members (see module doc)."""
  labels = spec_lib.axis_labels([k for k, _ in members[0].axes]) if members else {}
  per_member, all_metrics = [], []
  for m in members:
    status, error = member_status(m)
    metrics = read_metrics(m.workdir) if os.path.isdir(m.workdir) else []
    per_member.append((m, status, error, metrics))
    for r in metrics:
      if r["metric"] not in all_metrics:
        all_metrics.append(r["metric"])
  rows = []
  for m, status, error, metrics in per_member:
    base = {"member": m.name, "condition": m.condition, "variant": m.variant,
            **{labels[k]: v for k, v in m.axes}}
    if spec_lib.SEED_KEY not in labels:  # no seed axis: the seed the member's config has
      base[spec_lib.SEED_KEY] = _config_seed(m.workdir)
    for metric in all_metrics or [""]:
      found = [r for r in metrics if r["metric"] == metric]
      for r in found or [{"dataset": "", "step": None, "value": ""}]:
        # A metric the member lacks is one row with no value: listed, never dropped.
        rows.append({**base, "metric": metric, "dataset": r["dataset"],
                     "step": "" if r["step"] is None else r["step"], "value": r["value"],
                     "status": status, "error": error})
  columns = list(labels.values())
  return rows, columns + ([] if spec_lib.SEED_KEY in labels else [spec_lib.SEED_KEY])


def _config_seed(member_dir: str):
  """`seed` of the member's training config (member.json), "" when unknown."""
  try:
    with open(os.path.join(member_dir, runner.MEMBER_FILE)) as f:
      return json.load(f)["stages"][0]["config"].get(spec_lib.SEED_KEY, "")
  except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
    return ""
