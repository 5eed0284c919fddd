"""A sweep's results: `WORKDIR/results.csv` (member × metric) and `results.md` (mean ± std, n).

Rows come from `member_results.collect` (what each member's eval files and training log
hold, one row per member and metric).

results.csv: one row per member and metric (one per step/dataset where a member has
several): member, variant, every axis, seed (an axis, or the member config's), metric,
dataset, step, value, status, error. A member without a value for a metric that
others have (failed, missing, still running) gets one row with an empty value and its
status: it is listed, never dropped.

results.md: first the evaluation data the members' eval files name (specs and sizes), then
one table per metric family (linear_eval, ood, probe, knn, train), rows = conditions
(member name without the seed, plus dataset/step when those vary), cells = mean ± std
[95 % interval] (n) over the seeds that have a value; std is the sample standard deviation
(ddof = 1; "–" for n = 1), the interval the exact percentile bootstrap of the mean
(intervals.py). With `contrasts` ((a, b) condition pairs) a table of mean(a) − mean(b)
with its bootstrap and Welch intervals per contrast metric, "yes" where both exclude 0, and
with `contrast_metrics` one row per member (its final values and training metrics).
With `matrix` (sweep.py passes it for heat-map sweeps, Fig 5) a rows × columns table of one
metric per variant. Then every member not done, with its status and error sentence.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Sequence

from palm_jax.experiments import intervals, member_results
from palm_jax.experiments import spec as spec_lib
from palm_jax.runtime.errors import require


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
  """(mean, sample std with ddof = 1 (nan for n < 2), n)."""
  n = len(values)
  if n == 0:
    return math.nan, math.nan, 0
  mean = sum(values) / n
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
  return mean, std, n


def cell(values: Sequence[float]) -> str:
  """`mean ± std [low, high] (n=…)`: the interval is the bootstrap one of intervals.py."""
  mean, std, n = mean_std(values)
  if n == 0:
    return "– (n=0)"
  if n == 1:
    return f"{mean:.4f} ± – (n=1)"
  low, high = intervals.mean_interval(values)
  return f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}] (n={n})"


def contrast_lines(rows: Sequence[dict], contrasts: Sequence, metrics: Sequence[str]
                   ) -> list[str]:
  """The differences table: per metric and (a, b) pair, mean(a) − mean(b) and its interval."""
  values: dict = {}
  for r in rows:
    if r["metric"] in metrics and r["value"] != "":
      values.setdefault((r["metric"], r["condition"]), []).append(float(r["value"]))
  lines = ["## Differences between conditions", "",
           "mean(a) − mean(b) over seeds with two 95 % intervals: the stratified bootstrap "
           "(seeds of a and b resampled independently, exact enumeration) and Welch's t "
           "interval (palm_jax/experiments/intervals.py). A difference is called only when "
           "each side has two seeds or more and both intervals exclude 0: with 3 seeds the "
           "bootstrap alone covers the mean only about 75 % of the time.", "",
           "| metric | a | b | n a / b | a − b | bootstrap 95 % | Welch 95 % | called |",
           "|---|---|---|---|---|---|---|---|"]
  for metric in metrics:
    for a, b in contrasts:
      va, vb = values.get((metric, a), []), values.get((metric, b), [])
      if not va or not vb:
        lines.append(f"| {metric} | {a} | {b} | {len(va)} / {len(vb)} | – | – | – | – |")
        continue
      diff, low, high = intervals.difference_interval(va, vb)
      w_low, w_high = intervals.welch_interval(va, vb)
      welch = "–" if math.isnan(w_low) else f"[{w_low:+.4f}, {w_high:+.4f}]"
      verdict = ("yes" if intervals.called(va, vb) else "no") if min(len(va), len(vb)) > 1 \
          else "– (one seed)"
      lines.append(f"| {metric} | {a} | {b} | {len(va)} / {len(vb)} | {diff:+.4f} | "
                   f"[{low:+.4f}, {high:+.4f}] | {welch} | {verdict} |")
  return lines + [""]


def final_rows(rows: Sequence[dict], metric: str) -> list[dict]:
  """The rows of `metric` at each member's last evaluated step (a snapshot's evaluation,
  e.g. linear_eval_step48.json, is another row of the same member), and its empty ones."""
  step = lambda r: int(r["step"]) if str(r["step"]).strip() else -1  # noqa: E731
  last: dict = {}
  for r in rows:
    if r["metric"] == metric and r["value"] != "":
      last[r["member"]] = max(last.get(r["member"], -1), step(r))
  return [r for r in rows if r["metric"] == metric and
          (r["value"] == "" or step(r) == last[r["member"]])]


def member_lines(rows: Sequence[dict], metrics: Sequence[str]) -> list[str]:
  """One row per member: its value of each of `metrics` (final step) beside its training
  metrics (train/*: exploration, SAC, SimSiam), so no seed hides behind a mean."""
  train = [m for _, m in member_results.TRAIN_METRICS
           if any(r["metric"] == m and r["value"] != "" for r in rows)]
  columns = list(metrics) + train
  value = {(r["member"], m): float(r["value"]) for m in columns for r in final_rows(rows, m)
           if r["value"] != ""}
  members = list(dict.fromkeys(r["member"] for r in rows if r["member"]))
  lines = ["## Every member", "", "Each member's final evaluation beside its training "
           "metrics (train/*: the mean over the last fifth of its chunks).", "",
           "| member | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
  for name in members:
    lines.append(f"| {name} | " + " | ".join(
        f"{value[(name, m)]:.4f}" if (name, m) in value else "–" for m in columns) + " |")
  return lines + [""]


def group(rows: Sequence[dict]) -> dict:
  """{family: {(condition, dataset, step): {metric: [values over seeds]}}}, order kept."""
  out: dict = {}
  for r in rows:
    if r["metric"] and r["value"] != "":
      family = r["metric"].split("/", 1)[0]
      bucket = out.setdefault(family, {}).setdefault(
          (r["condition"], r["dataset"], r["step"]), {})
      bucket.setdefault(r["metric"], []).append(float(r["value"]))
  for r in rows:  # a condition none of whose seeds has the metric still gets a row (n=0)
    if r["metric"] and r["value"] == "":
      family = r["metric"].split("/", 1)[0]
      by_key = out.setdefault(family, {})
      mine = [b for k, b in by_key.items() if k[0] == r["condition"]]
      if not any(r["metric"] in b for b in mine):
        (mine[0] if mine else by_key.setdefault((r["condition"], "", ""), {})).setdefault(
            r["metric"], [])
  return out


def sorted_unique(values) -> list:
  out = []
  for v in values:
    if v not in out:
      out.append(v)
  try:
    return sorted(out)
  except TypeError:
    return out


def grid_stats(rows: Sequence[dict], lx: str, ly: str):
  """(x values, y values, [[(mean, std, n)] per x] per y) over the rows' values (Fig 5)."""
  xs = sorted_unique([r[lx] for r in rows])
  ys = sorted_unique([r[ly] for r in rows])
  stats = [[mean_std([float(r["value"]) for r in rows
                      if r[lx] == xv and r[ly] == yv and r["value"] != ""])
            for xv in xs] for yv in ys]
  return xs, ys, stats


def matrix_markdown(rows: Sequence[dict], metric: str, lx: str, ly: str) -> list[str]:
  """A `ly` × `lx` table of `metric` (e.g. alpha rows × beta columns), one per variant."""
  lines = []
  for variant in sorted_unique([r["variant"] for r in rows]):
    vrows = [r for r in rows if r["metric"] == metric and r["variant"] == variant]
    if not vrows:
      continue
    xs, ys, stats = grid_stats(vrows, lx, ly)
    lines += [f"## {metric}: {ly} (rows) x {lx} (columns)" + (f", {variant}" if variant
                                                               else ""), "",
              f"| {ly} / {lx} | " + " | ".join(spec_lib.format_value(x) for x in xs) + " |",
              "|" + "---|" * (len(xs) + 1)]
    for yv, row in zip(ys, stats):
      lines.append(f"| {spec_lib.format_value(yv)} | " + " | ".join(
          cell([]) if not n else (f"{m:.4f} ± {s:.4f} (n={n})" if n > 1 else
                                  f"{m:.4f} ± – (n=1)") for m, s, n in row) + " |")
    lines.append("")
  return lines


def markdown(rows: Sequence[dict], members: Sequence[spec_lib.Member], title: str,
             matrix: tuple | None = None, contrasts: Sequence = (),
             contrast_metrics: Sequence[str] = ()) -> str:
  statuses = {}
  for r in rows:
    statuses.setdefault(r["member"], (r["status"], r["error"]))
  counts = {}
  for s, _ in statuses.values():
    counts[s] = counts.get(s, 0) + 1
  lines = [f"# {title}", "", f"{len(members)} members: " + ", ".join(
      f"{n} {s}" for s, n in sorted(counts.items())) + ". Cells: mean ± sample std "
      "[95 % bootstrap interval of the mean] (n seeds with a value).", ""]
  data = member_results.eval_data(members)
  if data:
    lines += ["Evaluation data (from the members' eval files):", ""] + [
        f"- {d}" for d in data] + [""]
  for family, by_key in group(rows).items():
    metrics = []
    for bucket in by_key.values():
      metrics += [m for m in bucket if m not in metrics]
    show_dataset = len({k[1] for k in by_key if k[1] != ""}) > 1
    show_step = len({k[2] for k in by_key if k[2] != ""}) > 1
    head = ["condition"] + (["dataset"] if show_dataset else []) + (
        ["step"] if show_step else []) + [m.split("/", 1)[1] for m in metrics]
    lines += [f"## {family}", "", "| " + " | ".join(head) + " |",
              "|" + "---|" * len(head)]
    for (condition, dataset, step), bucket in by_key.items():
      row = [condition or "(all)"] + ([dataset] if show_dataset else []) + (
          [str(step)] if show_step else []) + [cell(bucket.get(m, [])) for m in metrics]
      lines.append("| " + " | ".join(row) + " |")
    lines.append("")
  if matrix:
    lines += matrix_markdown(rows, *matrix)
  if contrasts:
    lines += contrast_lines(rows, contrasts, contrast_metrics)
  if contrast_metrics:
    lines += member_lines(rows, contrast_metrics)
  not_done = [(name, s, e) for name, (s, e) in statuses.items() if s != "done"]
  lines += ["## Members not done", ""]
  if not_done:
    lines += [f"- `{name}`: {s}" + (f" — {e}" if e else "") for name, s, e in not_done]
  else:
    lines.append("(none: every member finished)")
  return "\n".join(lines) + "\n"


def aggregate(members: Sequence[spec_lib.Member], workdir: str, *,
              title: str = "Sweep results", matrix: tuple | None = None,
              contrasts: Sequence = (), contrast_metrics: Sequence[str] = ()) -> dict:
  """Writes WORKDIR/results.csv and results.md; returns {"rows", "csv", "md"}.

  `matrix`: (metric, x axis key, y axis key) adds a y × x table of that metric (Fig 5).
  `contrasts`: (condition a, condition b) pairs whose difference is tabulated for each of
  `contrast_metrics`, with its bootstrap interval.
  """
  rows, labels = member_results.collect(members)
  os.makedirs(workdir, exist_ok=True)
  csv_path = os.path.join(workdir, "results.csv")
  fields = ["member", "variant"] + labels + ["metric", "dataset", "step", "value", "status",
                                             "error"]
  with open(csv_path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(csv_path + ".tmp", csv_path)
  md_path = os.path.join(workdir, "results.md")
  with open(md_path, "w") as f:
    if matrix:
      labels_of = spec_lib.axis_labels([k for k, _ in members[0].axes])
      for key in matrix[1:]:
        require(key in labels_of, f"config.plots names the axis {key!r}, which is not one "
                                  f"of the sweep's axes {list(labels_of)}; use one of them.")
      matrix = (matrix[0], labels_of[matrix[1]], labels_of[matrix[2]])
    f.write(markdown(rows, members, title, matrix, contrasts, contrast_metrics))
  return {"rows": rows, "csv": csv_path, "md": md_path}
