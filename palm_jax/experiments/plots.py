"""The paper's figure types from a sweep's results rows (aggregate.collect), as PNGs.

  bar      Fig 4: one bar per condition (member name without the seed), height = mean over
           seeds of `metric` at each member's last evaluated step, error bar = the 95 %
           bootstrap interval of that mean (intervals.py), one dot per seed, "n=<seeds>"
           above each bar; the value axis spans the data (not from 0), so differences of a
           point stay visible; with
           `reference` (a condition, e.g. the random-init encoder) a dashed line at its mean
           and a band over its interval run across the figure
  heatmap  Fig 5: rows = values of axis `y` (e.g. env.alpha), columns = values of axis `x`
           (e.g. env.beta), cell = mean over seeds, annotated "mean\\n± std"; one heat map
           per remaining condition (e.g. per variant); a cell without values is blank, "n=0"
  curve    Fig 6: x = values of axis `x` (e.g. total_env_steps), or "step" for the eval
           files' snapshot step; one line per remaining condition, band = ± sample std

Written to WORKDIR/plots/<kind>_<metric>.png with matplotlib's Agg backend (no display).
Values come from the rows that have one; members without a value lower n, and a bar or
cell whose members all lack it is still drawn, marked n=0 (never dropped).
"""
from __future__ import annotations

import math
import os
from typing import Sequence

from palm_jax.experiments import aggregate as aggregate_lib
from palm_jax.experiments import intervals
from palm_jax.experiments import spec as spec_lib
from palm_jax.runtime.errors import require

KINDS = ("bar", "heatmap", "curve")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _label(axis_key: str, axis_keys: Sequence[str]) -> str:
  if axis_key == "step":
    return "step"
  labels = spec_lib.axis_labels(list(axis_keys))
  require(axis_key in labels, f"config.plots names the axis {axis_key!r}, which is not one "
                              f"of the sweep's axes {list(axis_keys)}; use one of them.")
  return labels[axis_key]


def _rest(row: dict, drop: Sequence[str], labels: Sequence[str]) -> str:
  """The condition of a row with the plotted axes (and the seed) taken out."""
  parts = [row["variant"]] if row.get("variant") else []
  parts += [f"{l}={spec_lib.format_value(row[l])}" for l in labels
            if l not in drop and l != spec_lib.SEED_KEY]
  return "__".join(parts) or "all"


def _values(rows, metric):
  return [r for r in rows if r["metric"] == metric and r["value"] != ""]


def plot(rows: Sequence[dict], axis_keys: Sequence[str], out_dir: str, *, kind: str,
         metric: str, x: str = "", y: str = "", title: str = "", reference: str = ""
         ) -> str | None:
  """Draws one figure of `kind`; returns its path (None when no member has the metric)."""
  require(kind in KINDS, f"config.plots.kind={kind!r} is not known; use one of {KINDS} or "
                         "'' for no plot.")
  have = _values(rows, metric)
  if not have:
    return None
  labels = list(spec_lib.axis_labels(list(axis_keys)).values())
  plt = _pyplot()
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{kind}_{spec_lib.format_value(metric)}.png")
  if kind == "bar":
    groups: dict = {}
    for r in aggregate_lib.final_rows(rows, metric):  # a condition without any value keeps its place, "n=0"
      if r["metric"] == metric:
        values = groups.setdefault(r["condition"] or "all", [])
        if r["value"] != "":
          values.append(float(r["value"]))
    names = list(groups)
    stats = [aggregate_lib.mean_std(groups[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 4.0))
    means = [0.0 if math.isnan(s[0]) else s[0] for s in stats]
    bounds = [intervals.mean_interval(groups[n]) if len(groups[n]) > 1 else (m, m)
              for n, m in zip(names, means)]
    errs = [[m - lo for m, (lo, _) in zip(means, bounds)],
            [hi - m for m, (_, hi) in zip(means, bounds)]]
    ax.bar(range(len(names)), means, yerr=errs, capsize=4, color="#9db4d9",
           edgecolor="#4c72b0")
    if groups.get(reference):
      i = names.index(reference)
      ax.axhline(means[i], color="#c44e52", linestyle="--", linewidth=1,
                 label=f"{reference} (mean, 95 % interval)")
      ax.axhspan(*bounds[i], color="#c44e52", alpha=0.12)
      ax.legend(loc="upper left", fontsize=8, frameon=False)
    for i, n in enumerate(names):
      ax.plot([i] * len(groups[n]), groups[n], "o", color="#1f2f4f", markersize=3)
    for i, (m, hi, s) in enumerate(zip(means, errs[1], stats)):
      ax.text(i, m + hi, f"n={s[2]}", ha="center", va="bottom", fontsize=8)
    values = [v for n in names for v in groups[n]]
    if values:
      low, high = min(values + [b[0] for b in bounds]), max(values + [b[1] for b in bounds])
      pad = max(0.1 * (high - low), 1e-3)
      ax.set_ylim(low - pad, high + 2 * pad)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
  elif kind == "heatmap":
    lx, ly = _label(x, axis_keys), _label(y, axis_keys)
    panels: dict = {}
    for r in rows:  # every row, so that a cell whose members all failed shows n=0
      if r["metric"] == metric:
        panels.setdefault(_rest(r, (lx, ly), labels), []).append(r)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.0), squeeze=False)
    for ax, (panel, prs) in zip(axes[0], panels.items()):
      xs, ys, stats = aggregate_lib.grid_stats(prs, lx, ly)
      grid = [[cell[0] for cell in row] for row in stats]
      for i, row in enumerate(stats):
        for j, (mean, std, n) in enumerate(row):
          text = "n=0" if not n else f"{mean:.3f}" + ("" if math.isnan(std) else
                                                      f"\n± {std:.3f}")
          ax.text(j, i, text, ha="center", va="center", fontsize=7,
                  color="white" if n else "black")
      image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
      ax.set_xticks(range(len(xs)))
      ax.set_xticklabels([spec_lib.format_value(v) for v in xs])
      ax.set_yticks(range(len(ys)))
      ax.set_yticklabels([spec_lib.format_value(v) for v in ys])
      ax.set_xlabel(x)
      ax.set_ylabel(y)
      ax.set_title(panel, fontsize=9)
      fig.colorbar(image, ax=ax, label=metric)
  else:
    lx = _label(x, axis_keys)
    lines: dict = {}
    for r in have:
      lines.setdefault(_rest(r, (lx,), labels), []).append(r)
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for name, lrs in lines.items():
      xs = aggregate_lib.sorted_unique([r[lx] for r in lrs if r[lx] != ""])
      stats = [aggregate_lib.mean_std([float(r["value"]) for r in lrs if r[lx] == xv])
               for xv in xs]
      means = [s[0] for s in stats]
      stds = [0.0 if math.isnan(s[1]) else s[1] for s in stats]
      ax.plot(xs, means, marker="o", label=name)
      ax.fill_between(xs, [m - s for m, s in zip(means, stds)],
                      [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
  fig.suptitle(title or metric, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
