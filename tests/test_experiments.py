"""Sweeps (palm_jax/experiments/): expansion and names, validation, the resumable local
runner (with a fake job registered in main.JOBS), aggregation against a hand computation,
SLURM / TPU output, plots, and one real member run through `python -m palm_jax.main`."""
import csv
import itertools
import json
import math
import os
import runpy
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from scipy import stats

from palm_jax import main
from palm_jax.experiments import (aggregate, cluster, intervals, plots, runner, spec, sweep)
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_BASE = """
import ml_collections
import numpy as np
def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.job = "fake_sweep_job"
  c.seed = 0
  c.env = ml_collections.ConfigDict({"alpha": 0.5, "beta": 0.95})
  c.agent = ml_collections.ConfigDict({"action_source": "policy"})
  c.sizes = (1, 1)
  c.flag = False
  c.generator = ""
  c.fail = ""   # a member whose condition equals this raises a UserError
  c.population = ml_collections.ConfigDict({"seeds": (), "workdirs": ()})
  return c
"""
FAKE_EVAL = """
import ml_collections
import numpy as np
def get_config(arg=None):
  return ml_collections.ConfigDict({"job": "fake_sweep_eval", "offset": 0.0})
"""
CALLS = []


def _fake_train(config, workdir):
  CALLS.append(("train", os.path.basename(workdir)))
  cond = f"{config.env.alpha}/{config.env.beta}"
  if cond == config.fail:
    raise UserError(f"config.fail={config.fail!r} asked this member to fail.")
  # A population trains each of its seeds into that seed's own workdir.
  for seed, member_dir in (zip(config.population.seeds, config.population.workdirs)
                           if config.population.seeds else [(config.seed, workdir)]):
    os.makedirs(member_dir, exist_ok=True)
    with open(os.path.join(member_dir, "trained.json"), "w") as f:
      json.dump({"value": config.env.alpha + 10 * config.env.beta + 0.01 * seed}, f)


def _fake_eval(config, workdir):
  CALLS.append(("eval", os.path.basename(workdir)))
  with open(os.path.join(workdir, "trained.json")) as f:
    value = json.load(f)["value"] + config.offset
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  with open(os.path.join(workdir, "eval", "linear_eval.json"), "w") as f:
    json.dump({"dataset": "fake", "step": 7, "test_top1": value, "extra": [1, 2]}, f)


@pytest.fixture
def fake_jobs(tmp_path, monkeypatch):
  for name, fn in (("fake_sweep_job", _fake_train), ("fake_sweep_eval", _fake_eval)):
    module = types.ModuleType(name)
    module.run = fn
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(main.JOBS, name, name)
  (tmp_path / "base.py").write_text(FAKE_BASE)
  (tmp_path / "evalcfg.py").write_text(FAKE_EVAL)
  CALLS.clear()
  return tmp_path


def _sweep(tmp_path, **fields):
  c = ml_collections.ConfigDict()
  c.job = "sweep"
  c.mode = "local"
  c.executor = "inprocess"
  c.python = ""
  c.title = "t"
  c.base = str(tmp_path / "base.py")
  c.overrides = (("agent.action_source", "policy"),)
  c.variants = (("palm", {}), ("rand", {"agent.action_source": "random"}))
  c.axes = (("env.alpha", (0.0, 0.5)), ("seed", (0, 1)))
  c.evals = (("probe", str(tmp_path / "evalcfg.py"), {"offset": 100.0}),)
  c.plots = ml_collections.ConfigDict({"kind": "", "metric": "linear_eval/test_top1",
                                       "x": "", "y": ""})
  c.slurm = ml_collections.ConfigDict({"max_parallel": 2, "time": "1:00:00"})
  for k, v in fields.items():
    c[k] = v
  return c


def test_expansion_names_order_and_resolved_configs(fake_jobs, tmp_path):
  members = spec.expand(_sweep(tmp_path), str(tmp_path / "w"))
  assert [m.name for m in members] == [
      "palm__alpha=0__seed=0", "palm__alpha=0__seed=1", "palm__alpha=0.5__seed=0",
      "palm__alpha=0.5__seed=1", "rand__alpha=0__seed=0", "rand__alpha=0__seed=1",
      "rand__alpha=0.5__seed=0", "rand__alpha=0.5__seed=1"]
  m = members[6]
  assert m.workdir == os.path.join(str(tmp_path / "w"), "runs", m.name)
  assert m.condition == "rand__alpha=0.5" and m.seed == 0
  train = m.stages[0]
  config = spec.resolve(train.config_file, train.overrides)  # = main's parse of the argv
  assert (config.agent.action_source, config.env.alpha, config.seed) == ("random", 0.5, 0)
  assert train.argv(m.workdir)[2:] == ["--config.agent.action_source=policy",
                                       "--config.agent.action_source=random",
                                       "--config.env.alpha=0.5", "--config.seed=0"]
  assert [s.name for s in m.stages] == ["train", "probe"]
  bare = spec.expand(_sweep(tmp_path, evals=("ood_eval",)), str(tmp_path / "w"))[0]
  assert bare.stages[1].config_file == os.path.join(ROOT, "configs", "ood_eval.py")
  # Values that only round-trip through the flag parser when encoded right.
  c = spec.resolve(train.config_file, (("sizes", (2, 3)), ("flag", True), ("fail", "a,b c")))
  assert (c.sizes, c.flag, c.fail) == ((2, 3), True, "a,b c")
  assert spec.format_value(0.95) == "0.95" and spec.format_value((1, 2)) == "1-2"
  assert spec.format_value("tfds:cifar10/train") == "tfds-cifar10-train"
  long_name = spec.format_value("npz:/very/long/path/to/some/dataset/file_number_one.npz")
  assert len(long_name) <= 40 and long_name != spec.format_value("npz:/other/" + "x" * 60)
  assert spec.axis_labels(["env.alpha", "agent.alpha", "seed"]) == {
      "env.alpha": "env-alpha", "agent.alpha": "agent-alpha", "seed": "seed"}


@pytest.mark.parametrize("fields, message", [
    ({"axes": (("env.alpah", (0.0,)),)}, "did you mean 'env.alpha'"),
    ({"overrides": (("agent.action_sorce", "x"),)}, "did you mean 'agent.action_source'"),
    ({"variants": (("v", {"env.betta": 0.0}),)}, "did you mean 'env.beta'"),
    ({"axes": (("env.alpha", ("high",)),)}, "is not a valid config"),
    ({"axes": (("env.alpha", ()),)}, "non-empty list"),
    ({"variants": (("a b", {}),)}, "not filesystem-safe"),
    ({"variants": (("a", {}), ("a", {"seed": 1}))}, "repeats a name"),
    ({"mode": "cloud"}, "config.mode='cloud' is not known"),
    ({"base": "configs/nope.py"}, "does not exist"),
    ({"plots": ml_collections.ConfigDict({"kind": "bar", "reference": "random_init"})},
     "config.plots.reference='random_init' is not one of the sweep's conditions"),
])
def test_validation_is_one_sentence_before_anything_runs(fake_jobs, tmp_path, fields,
                                                         message):
  with pytest.raises(UserError, match=message.replace("(", r"\(")):
    main.run_job(_sweep(tmp_path, **fields), str(tmp_path / "w"))
  assert CALLS == [] and not (tmp_path / "w" / "runs").exists()


def test_resumed_sweep_skips_finished_members_and_records_failures(fake_jobs, tmp_path):
  workdir = str(tmp_path / "w")
  config = _sweep(tmp_path, variants=(("palm", {}),))
  config.overrides = (("fail", "0.5/0.95"),)  # the alpha = 0.5 members fail in training
  main.run_job(config, workdir)
  assert sorted(CALLS) == sorted([("train", "palm__alpha=0__seed=0"),
                                  ("eval", "palm__alpha=0__seed=0"),
                                  ("train", "palm__alpha=0__seed=1"),
                                  ("eval", "palm__alpha=0__seed=1"),
                                  ("train", "palm__alpha=0.5__seed=0"),
                                  ("train", "palm__alpha=0.5__seed=1")])
  runs = tmp_path / "w" / "runs"
  assert (runs / "palm__alpha=0__seed=0" / "DONE").exists()
  failed = json.loads((runs / "palm__alpha=0.5__seed=1" / "status.json").read_text())
  assert failed["state"] == "failed" and failed["stage"] == "train"
  assert failed["error"] == "config.fail='0.5/0.95' asked this member to fail."
  member = json.loads((runs / "palm__alpha=0.5__seed=1" / "member.json").read_text())
  assert member["stages"][0]["config"]["env"]["alpha"] == 0.5
  assert member["stages"][1]["command"][-1] == "--config.offset=100.0"

  # Interrupted after training: only its evaluation runs again. Done members are skipped;
  # failed ones are retried (and succeed now that nothing asks them to fail).
  (runs / "palm__alpha=0__seed=1" / "DONE").unlink()
  (runs / "palm__alpha=0__seed=1" / "status.json").write_text(json.dumps(
      {"state": "running", "stage": "probe", "completed": ["train"]}))
  CALLS.clear()
  config.overrides = (("fail", "none"),)
  main.run_job(config, workdir)
  assert sorted(CALLS) == sorted([("eval", "palm__alpha=0__seed=1"),
                                  ("train", "palm__alpha=0.5__seed=0"),
                                  ("eval", "palm__alpha=0.5__seed=0"),
                                  ("train", "palm__alpha=0.5__seed=1"),
                                  ("eval", "palm__alpha=0.5__seed=1")])
  with open(tmp_path / "w" / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["member"], r["status"]) for r in rows] == [
      ("palm__alpha=0__seed=0", "done"), ("palm__alpha=0__seed=1", "done"),
      ("palm__alpha=0.5__seed=0", "done"), ("palm__alpha=0.5__seed=1", "done")]
  assert [float(r["value"]) for r in rows] == pytest.approx([109.5, 109.51, 110.0, 110.01])
  assert rows[0]["alpha"] == "0.0" and rows[1]["seed"] == "1" and rows[0]["step"] == "7"


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f) if not isinstance(obj, str) else f.write(obj)


def test_aggregation_matches_hand_computation_and_lists_failures(fake_jobs, tmp_path,
                                                                 monkeypatch):
  workdir = str(tmp_path / "w")
  config = _sweep(tmp_path, variants=(), axes=(("env.alpha", (0.0, 0.5)), ("seed", (0, 1, 2))))
  members = {m.name: m for m in spec.expand(config, workdir)}
  top1 = {"alpha=0__seed=0": 0.30, "alpha=0__seed=1": 0.34, "alpha=0__seed=2": 0.35,
          "alpha=0.5__seed=0": 0.40}
  for name, value in top1.items():
    d = members[name].workdir
    _write(f"{d}/eval/linear_eval.json", {"dataset": "cifar10", "step": 96,
                                          "test_top1": value, "weight_decay_grid": [1, 2]})
    _write(f"{d}/eval/ood_details.json", {"step": 96, "auroc": {"svhn": {"msp": value + 0.2,
                                                                         "knn": 0.5}},
                                          "probe_test_top1": value - 0.01,
                                          "in_distribution": {"test": "npz:t"}, "x": 1})
    _write(f"{d}/eval/ood.json", {"svhn": {"msp": 0.0, "knn": 0.0}})  # read via details
    _write(f"{d}/eval/notes.json", ["foreign", "file"])                 # ignored
    _write(f"{d}/DONE", "")
  # A snapshot's probe (another step) of one member: its own row, no phantom rows elsewhere.
  _write(f"{members['alpha=0__seed=0'].workdir}/eval/linear_eval_step48.json",
         {"dataset": "cifar10", "step": 48, "test_top1": 0.25})
  _write(f"{members['alpha=0.5__seed=1'].workdir}/status.json",
         {"state": "failed", "stage": "train", "error": "NaN loss at step 40."})
  _write(f"{members['alpha=0.5__seed=1'].workdir}/eval/half.json", "{\"test_to")  # torn
  result = aggregate.aggregate(list(members.values()), workdir, title="Hand")
  with open(result["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 6 * 4 + 1  # every member x metric (+ the snapshot), none dropped
  by = {(r["member"], r["metric"]): r for r in rows}
  assert by[("alpha=0.5__seed=1", "linear_eval/test_top1")]["status"] == "failed"
  assert by[("alpha=0.5__seed=1", "linear_eval/test_top1")]["value"] == ""
  assert by[("alpha=0.5__seed=2", "ood/svhn/msp")]["status"] == "missing"
  assert float(by[("alpha=0__seed=1", "ood/svhn/msp")]["value"]) == pytest.approx(0.54)
  # By hand: alpha=0 top-1 over seeds 0.30, 0.34, 0.35: mean 0.33, sample std
  # sqrt((0.03² + 0.01² + 0.02²) / 2) = sqrt(0.0007) = 0.026458; alpha=0.5 has n = 1.
  md = open(result["md"]).read()
  # The interval: the exact bootstrap of a mean of 3 values is [min, max] (intervals.py).
  assert "| alpha=0 | 96 | 0.3300 ± 0.0265 [0.3000, 0.3500] (n=3) |" in md
  assert "| alpha=0 | 48 | 0.2500 ± – (n=1) |" in md
  assert "| alpha=0.5 | 96 | 0.4000 ± – (n=1) |" in md and "(n=0)" not in md
  assert "| condition | svhn/msp | svhn/knn | probe_test_top1 |" in md
  assert ("| alpha=0 | 0.5300 ± 0.0265 [0.5000, 0.5500] (n=3) | 0.5000 ± 0.0000 [0.5000, "
          "0.5000] (n=3) | 0.3200 ± 0.0265 [0.2900, 0.3400] (n=3) |" in md)
  assert "- `alpha=0.5__seed=1`: failed — train: NaN loss at step 40." in md
  assert "- `alpha=0.5__seed=2`: missing" in md
  mean, std, n = aggregate.mean_std([0.30, 0.34, 0.35])
  assert (round(mean, 10), n) == (0.33, 3) and std == pytest.approx(math.sqrt(0.0007))

  # The figures from the same rows: a bar chart and curves over the axis.
  for kind in ("bar", "curve"):
    path = plots.plot(result["rows"], ["env.alpha", "seed"], f"{workdir}/plots", kind=kind,
                      metric="linear_eval/test_top1", x="env.alpha")
    assert os.path.getsize(path) > 5000
  with pytest.raises(UserError, match="not one of the sweep's axes"):
    plots.plot(result["rows"], ["env.alpha", "seed"], f"{workdir}/plots", kind="heatmap",
               metric="linear_eval/test_top1", x="env.beta", y="env.alpha")
  # A reference condition: a dashed line at its mean (0.33) over a band on its interval.
  from matplotlib.axes import Axes
  drawn = []
  for name in ("axhline", "axhspan"):
    original = getattr(Axes, name)
    monkeypatch.setattr(Axes, name, lambda self, *a, _n=name, _o=original, **k:
                        (drawn.append((_n, a)), _o(self, *a, **k))[1])
  plots.plot(result["rows"], ["env.alpha", "seed"], f"{workdir}/plots", kind="bar",
             metric="linear_eval/test_top1", reference="alpha=0")
  assert [n for n, _ in drawn] == ["axhline", "axhspan"]
  assert drawn[0][1][0] == pytest.approx(0.33) and drawn[1][1] == pytest.approx((0.30, 0.35))


def test_the_sweep_trains_the_members_generator_once_first(fake_jobs, tmp_path, monkeypatch):
  def fake_gan(config, workdir):
    CALLS.append(("gan", os.path.basename(workdir)))
    os.makedirs(workdir, exist_ok=True)
    open(os.path.join(workdir, "generator.npz"), "w").close()

  module = types.ModuleType("fake_gan_job")
  module.run = fake_gan
  monkeypatch.setitem(sys.modules, "fake_gan_job", module)
  monkeypatch.setitem(main.JOBS, "gan", "fake_gan_job")
  (tmp_path / "gan.py").write_text("import ml_collections\ndef get_config():\n"
                                   "  return ml_collections.ConfigDict({'job': 'gan'})\n")
  workdir = str(tmp_path / "w")
  config = _sweep(tmp_path, variants=(), axes=(("seed", (0, 1)),),
                  generator_gan=str(tmp_path / "gan.py"))
  main.run_job(config, workdir)
  assert CALLS[0] == ("gan", "gan") and [c[0] for c in CALLS[1:]] == ["train", "eval"] * 2
  member = json.loads(open(f"{workdir}/runs/seed=0/member.json").read())
  gen = os.path.join(os.path.abspath(workdir), "gan", "generator.npz")
  assert member["stages"][0]["config"]["generator"] == gen
  CALLS.clear()
  main.run_job(config, workdir)          # done: neither the generator nor a member reruns
  assert CALLS == []
  config.generator_gan = str(tmp_path / "evalcfg.py")
  with pytest.raises(UserError, match="is not a gan config"):
    main.run_job(config, workdir)


def test_bootstrap_intervals_against_brute_force_enumeration():
  # Two seeds [0, 1]: resample means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
  assert intervals.mean_interval([0.0, 1.0]) == (0.0, 1.0)
  assert intervals.mean_interval([0.0, 1.0], level=0.5) == (0.0, 0.5)
  assert intervals.mean_interval([0.3, 0.34, 0.35]) == pytest.approx((0.3, 0.35))  # [min, max]
  a, b = [1.0, 1.1, 1.25], [0.0, 0.3, 0.2]
  # Brute force: every ordered resample of a's and b's seed indices, equally likely.
  diffs = sorted(np.mean([a[i] for i in ia]) - np.mean([b[j] for j in ib])
                 for ia in itertools.product(range(3), repeat=3)
                 for ib in itertools.product(range(3), repeat=3))
  lo = diffs[math.ceil(0.025 * len(diffs)) - 1]
  hi = diffs[math.ceil(0.975 * len(diffs)) - 1]
  diff, low, high = intervals.difference_interval(a, b)
  assert diff == pytest.approx(np.mean(a) - np.mean(b))
  assert (low, high) == (pytest.approx(lo), pytest.approx(hi)) and low > 0
  # Welch's interval excludes 0 exactly when scipy's Welch t-test rejects at 5 %, and its
  # centre is the difference; one seed a side is never called (a zero-width bootstrap).
  for a2, b2 in ((a, b), ([0.30, 0.34, 0.31], [0.29, 0.33, 0.30]),
                 ([0.30, 0.32, 0.31], [0.25, 0.26, 0.28, 0.24])):
    w_low, w_high = intervals.welch_interval(a2, b2)
    p = stats.ttest_ind(a2, b2, equal_var=False).pvalue
    assert (w_low > 0 or w_high < 0) == (p < 0.05)
    assert (w_low + w_high) / 2 == pytest.approx(np.mean(a2) - np.mean(b2))
    assert p < 0.05 or not intervals.called(a2, b2)
  assert intervals.called(a, b) and not intervals.called([0.30, 0.34, 0.31], [0.29, 0.33, 0.30])
  assert not intervals.called([0.5], [0.1]) and math.isnan(intervals.welch_interval([0.5], b)[0])
  # The bootstrap alone would call a, c (its interval excludes 0); Welch's, at 3 seeds, does not.
  c = [0.0, 0.9, 0.2]
  assert intervals.difference_interval(a, c)[1] > 0 and intervals.welch_interval(a, c)[0] < 0
  assert not intervals.called(a, c)
  # Larger samples: seeded Monte Carlo, close to the normal-theory interval.
  rng = np.random.default_rng(0)
  x = rng.normal(0.5, 0.1, 40)
  low, high = intervals.mean_interval(x)
  assert low == pytest.approx(x.mean() - 1.96 * x.std() / np.sqrt(40), abs=0.01)
  assert high == pytest.approx(x.mean() + 1.96 * x.std() / np.sqrt(40), abs=0.01)


def test_aggregation_reads_knn_cv_and_training_metrics_and_calls_differences(fake_jobs,
                                                                              tmp_path):
  workdir = str(tmp_path / "w")
  config = _sweep(tmp_path, variants=(("palm", {}), ("init", {"env.alpha": 0.0})),
                  axes=(("seed", (0, 1, 2)),))
  members = {m.name: m for m in spec.expand(config, workdir)}
  cv_top1 = {"palm": [0.36, 0.37, 0.38], "init": [0.31, 0.32, 0.30]}
  for name, m in members.items():
    variant, seed = m.condition, int(name[-1])
    _write(f"{m.workdir}/eval/ood_details.json", {
        "step": 96, "auroc": {"svhn": {"msp": 0.5, "knn": 0.5}}, "probe_test_top1": 0.3,
        "in_distribution": {"train": "npz:tr.npz", "test": "npz:te.npz", "num_train": 5170,
                            "num_test": 1017},
        "knn_top1": {"20": 0.2 + seed / 100, "200": 0.25}, "knn_temperature": 0.07,
        "features": {"normalised_std": 0.5, "effective_rank": 10.0 + seed, "dim": 64},
        "cv": {"probe_top1": cv_top1[variant][seed], "num_images": 6187, "folds": 5,
               "repeats": 3, "knn_top1": {"20": 0.3, "200": 0.31}}})
    lines = [{"step": 1600 * (i + 1), "explore/apt_gain": float(i), "sac/alpha": 0.01}
             for i in range(10)] if variant == "palm" else []
    _write(f"{m.workdir}/metrics.jsonl", "\n".join(json.dumps(l) for l in lines) +
           "\n{\"step\": 1, \"torn")
    _write(f"{m.workdir}/DONE", "")
  result = aggregate.aggregate(list(members.values()), workdir, title="Hand",
                               contrasts=(("palm", "init"),),
                               contrast_metrics=("probe/cv_top1", "knn/cv_k20_top1"))
  by = {(r["member"], r["metric"]): r for r in result["rows"]}
  assert float(by[("palm__seed=2", "knn/k20_top1")]["value"]) == pytest.approx(0.22)
  assert float(by[("palm__seed=1", "probe/cv_top1")]["value"]) == pytest.approx(0.37)
  assert float(by[("init__seed=0", "knn/cv_k200_top1")]["value"]) == pytest.approx(0.31)
  assert float(by[("init__seed=2", "features/effective_rank")]["value"]) == 12.0
  # The last fifth of 10 chunks: the mean of 8 and 9; its step is the last chunk's.
  row = by[("palm__seed=0", "train/apt_gain")]
  assert float(row["value"]) == pytest.approx(8.5) and int(row["step"]) == 16000
  assert by[("init__seed=0", "train/apt_gain")]["value"] == ""   # offline: no policy
  md = open(result["md"]).read()
  assert ("- probe and kNN trained on `npz:tr.npz` (5170 images), tested on `npz:te.npz` "
          "(1017 images); cross-validated over all 6187 images (5 stratified folds x 3 "
          "repeats, weight decay chosen inside each training fold); kNN temperature 0.07"
          in md)
  diff, low, high = intervals.difference_interval(cv_top1["palm"], cv_top1["init"])
  assert low > 0
  w_low, w_high = intervals.welch_interval(cv_top1["palm"], cv_top1["init"])
  assert w_low > 0
  assert (f"| probe/cv_top1 | palm | init | 3 / 3 | {diff:+.4f} | [{low:+.4f}, {high:+.4f}] "
          f"| [{w_low:+.4f}, {w_high:+.4f}] | yes |") in md
  assert ("| knn/cv_k20_top1 | palm | init | 3 / 3 | +0.0000 | [+0.0000, +0.0000] "
          "| [+0.0000, +0.0000] | no |") in md
  # Every member's row: its final values beside its training metrics (none for offline).
  assert ("| member | probe/cv_top1 | knn/cv_k20_top1 | train/apt_gain | train/sac_alpha |"
          in md)
  assert "| palm__seed=0 | 0.3600 | 0.3000 | 8.5000 | 0.0100 |" in md
  assert "| init__seed=2 | 0.3000 | 0.3000 | – | – |" in md
  with pytest.raises(UserError, match="config.contrasts has"):
    config.contrasts = (("palm", "nope"),)
    config.mode = "aggregate"
    main.run_job(config, workdir)


def test_heatmap_cells_are_seed_means(tmp_path):
  """Fig 5's grid: cell (alpha, beta) = mean/std/n over seeds; an all-failed cell is n=0."""
  values = {(0.0, 0.5): [0.30, 0.32], (0.0, 0.95): [0.40], (0.5, 0.5): [0.2, 0.4],
            (0.5, 0.95): []}
  rows = []
  for (a, b), vals in values.items():
    for seed in range(2):
      rows.append({"member": f"a{a}b{b}s{seed}", "condition": f"alpha={a}__beta={b}",
                   "variant": "", "alpha": a, "beta": b, "seed": seed,
                   "metric": "linear_eval/test_top1", "dataset": "", "step": 1,
                   "value": vals[seed] if seed < len(vals) else "", "status": "done",
                   "error": ""})
  xs, ys, stats = aggregate.grid_stats(rows, "beta", "alpha")
  assert (xs, ys) == ([0.5, 0.95], [0.0, 0.5])
  assert stats[0][0][0] == pytest.approx(0.31) and stats[0][0][1] == pytest.approx(
      math.sqrt(2 * 0.01 ** 2)) and stats[0][0][2] == 2
  assert stats[0][1][0] == pytest.approx(0.40) and stats[0][1][2] == 1
  assert stats[1][0][1] == pytest.approx(math.sqrt(0.02)) and stats[1][1][2] == 0
  table = aggregate.matrix_markdown(rows, "linear_eval/test_top1", "beta", "alpha")
  assert table[2:6] == ["| alpha / beta | 0.5 | 0.95 |", "|---|---|---|",
                        "| 0 | 0.3100 ± 0.0141 (n=2) | 0.4000 ± – (n=1) |",
                        "| 0.5 | 0.3000 ± 0.1414 (n=2) | – (n=0) |"]
  path = plots.plot(rows, ["env.alpha", "env.beta", "seed"], str(tmp_path), kind="heatmap",
                    metric="linear_eval/test_top1", x="env.beta", y="env.alpha")
  assert path.endswith("heatmap_linear_eval-test_top1.png") and os.path.getsize(path) > 5000


def test_slurm_array_and_tpu_command_list(fake_jobs, tmp_path):
  workdir = str(tmp_path / "w")
  config = _sweep(tmp_path, mode="slurm")
  main.run_job(config, workdir)
  members = spec.expand(config, workdir)
  lines = (tmp_path / "w" / "slurm" / "commands.txt").read_text().splitlines()
  assert len(lines) == 8 and lines[1] == cluster.slurm_line(members[1])
  submit = (tmp_path / "w" / "slurm" / "submit.sh").read_text()
  assert "sbatch --array=0-7%2 --job-name=palm_sweep" in submit and "--time=1:00:00" in submit
  assert "launch/slurm_array.sbatch" in submit and CALLS == []
  # Array task 1 runs member 1's stages with $PYTHON (a stand-in that logs its arguments),
  # then marks it done; the same task again skips it.
  fake_py = tmp_path / "python"
  fake_py.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls.txt\n")
  fake_py.chmod(0o755)
  env = dict(os.environ, COMMANDS=f"{workdir}/slurm/commands.txt", SLURM_ARRAY_TASK_ID="1",
             PYTHON=str(fake_py), REPO=ROOT)
  for _ in range(2):
    out = subprocess.run(["bash", "launch/slurm_array.sbatch"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
  calls = (tmp_path / "calls.txt").read_text().splitlines()
  m = members[1]
  assert calls == [" ".join(["-m", "palm_jax.main", *s.argv(m.workdir)]) for s in m.stages]
  assert os.path.exists(os.path.join(m.workdir, "DONE"))
  out = subprocess.run(["bash", "launch/slurm_array.sbatch"], cwd=ROOT,
                       env=dict(env, SLURM_ARRAY_TASK_ID="8"), capture_output=True, text=True)
  assert out.returncode == 2 and "has no line 9" in out.stderr

  main.run_job(_sweep(tmp_path, mode="tpu"), workdir)
  tpu = (tmp_path / "w" / "tpu" / "commands.txt").read_text().splitlines()
  assert len(tpu) == 8 and tpu.count(tpu[0]) == 1
  assert f"CONFIG={tmp_path}/base.py WORKDIR={members[0].workdir}" in tpu[0]
  assert "launch/tpu_pod.sh run" in tpu[0] and "--worker=0" in tpu[0]
  assert "--config.env.alpha=0.0 --config.seed=0" in tpu[0]


def test_one_real_member_through_the_command_line(tmp_path, capsys):
  """A real `sample` member and a failing one as subprocesses of `python -m palm_jax.main`:
  the sweep goes on past the failure and keeps its one-sentence error."""
  base = tmp_path / "base.py"  # configs/sample.py with a tiny random generator
  base.write_text(f"""
import runpy
def get_config():
  c = runpy.run_path({os.path.join(ROOT, 'configs', 'sample.py')!r})["get_config"]()
  c.generator = "random"
  c.generator_kwargs = dict(z_dim=8, c_dim=2, w_dim=8, img_resolution=8, img_channels=3,
                            mapping_kwargs=dict(num_layers=1),
                            synthesis_kwargs=dict(channel_base=64, channel_max=8,
                                                  conv_clamp=256))
  c.rows = 2
  return c
""")
  config = ml_collections.ConfigDict(dict(job="sweep", mode="local", base=str(base),
                                          variants=(), axes=(("cols", (2, 0)),), evals=()))
  main.run_job(config, str(tmp_path / "w"))  # the members run as subprocesses
  out = capsys.readouterr()
  assert "2 members: 1 ran, 0 already done (skipped), 1 failed" in out.out
  runs = tmp_path / "w" / "runs"
  assert (runs / "cols=2" / "samples.png").exists()
  assert runner.read_status(str(runs / "cols=2"))["state"] == "done"
  status = json.loads((runs / "cols=0" / "status.json").read_text())
  assert status["state"] == "failed"
  assert status["error"] == "config.rows=2 and config.cols=0 must be at least 1."
  md = (tmp_path / "w" / "results.md").read_text()
  assert "- `cols=0`: failed — train: config.rows=2" in md


def test_population_sweep_trains_each_condition_once_then_evaluates_every_member(
    fake_jobs, tmp_path, monkeypatch):
  monkeypatch.setattr(runner, "POOLABLE_JOBS", ("fake_sweep_job",))
  workdir = tmp_path / "pop_sweep"
  config = _sweep(fake_jobs, population=True, variants=(),
                  axes=(("env.alpha", (0.0, 0.5)), ("seed", (0, 1, 2))))
  config.overrides = (("fail", "0.5/0.95"),)  # the alpha = 0.5 population fails
  main.run_job(config, str(workdir))
  trains = [c for c in CALLS if c[0] == "train"]
  assert trains == [("train", "alpha=0"), ("train", "alpha=0.5")]  # one run per condition
  assert sorted(c[1] for c in CALLS if c[0] == "eval") == [f"alpha=0__seed={s}"
                                                           for s in range(3)]
  for s in range(3):  # each member holds its own seed's training, then its own eval
    member = workdir / "runs" / f"alpha=0__seed={s}"
    got = json.loads((member / "eval" / "linear_eval.json").read_text())["test_top1"]
    assert got == pytest.approx(100.0 + 9.5 + 0.01 * s)
    assert (member / "DONE").exists()
    failed = json.loads((workdir / "runs" / f"alpha=0.5__seed={s}" / "status.json").read_text())
    assert failed["state"] == "failed" and "asked this member to fail" in failed["error"]
  # A rerun retries only the failed population; the finished members are skipped.
  CALLS.clear()
  config.overrides = ()
  main.run_job(config, str(workdir))
  assert [c for c in CALLS if c[0] == "train"] == [("train", "alpha=0.5")]
  assert sorted(c[1] for c in CALLS if c[0] == "eval") == [
      f"alpha=0.5__seed={s}" for s in range(3)]


@pytest.mark.parametrize("name, members", [
    ("fig4.py:mini", None), ("fig5.py:mini", None), ("fig6.py:mini", None),
    ("mini_paper.py", 30), ("mini_paper.py:beta", 15), ("fig4.py", None)])
def test_shipped_sweeps_expand_and_validate(name, members, tmp_path, capsys):
  """Every shipped sweep config expands: its keys, contrasts and plot reference are valid."""
  path, arg = spec.split_config_file(os.path.join(ROOT, "configs", "sweeps", name))
  config = runpy.run_path(path)["get_config"](arg)
  config.mode = "expand"
  main.run_job(config, str(tmp_path / "w"))
  head = capsys.readouterr().out.splitlines()[0]
  assert head.startswith("sweep: ") and " members under " in head
  if members is not None:
    assert head.startswith(f"sweep: {members} members")
  assert not list((tmp_path / "w").rglob("DONE"))    # expand runs nothing
