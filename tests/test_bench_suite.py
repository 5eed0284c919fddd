"""`python -m palm_jax.bench suite`: the CPU rehearsal of the GPU session, the budget, the
closure-free PALM breakdown, and running where ml_collections is carried as an archive
and tensorboardX is absent (the GPU machine's environment)."""
import json
import os
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from palm_jax import bench
from palm_jax.bench import palm as palm_bench
from palm_jax.bench import suite
from palm_jax.palm import generator, programs
from palm_jax.runtime import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
  out = tmp_path_factory.mktemp("suite")
  report = bench.main(["suite", "--tiny", "--budget_s=3000", f"--out={out}"])
  return out, report


@pytest.mark.slow
def test_tiny_suite_runs_every_item_and_writes_json_and_markdown(rehearsal):
  out, report = rehearsal
  status = {i["name"]: i["status"] for i in report["items"]}
  assert set(status.values()) == {"done"}, status
  r = report["results"]
  assert {(g["up_impl"], g["modulation"]) for g in r["generator"]} == set(suite.CANDIDATES)
  assert any(g["chunk_size"] for g in r["generator"])
  for g in r["generator"]:
    assert g["images_per_s"] > 0 and g["compile_s"] > 0 and g["memory"]["peak_bytes"] > 0
  (p,) = r["palm"]
  assert p["env_steps_per_s"] > 0 and p["memory"]["peak_bytes"] > 0
  assert p["replay_gib"] > 0
  # The closure-free parts add up to about one iteration (shared CPU: loose bounds).
  parts = p["generator_ms"] + p["acting_ms"] + p["updates_ms"]
  assert 0.25 < parts / p["ms_per_iteration"] < 4.0, p
  assert r["gan"][0]["s_per_kimg"] > 0 and r["features"][0]["probe_s"] > 0
  one, pop = r["population"]                     # one run, then a population of 2
  assert one["members"] == 0 and pop["members"] == 2
  assert pop["env_steps_per_s"] == pytest.approx(2 * pop["member_env_steps_per_s"])
  assert pop["replay_gib"] == pytest.approx(2 * one["replay_gib"])  # a replay per member
  saved = json.loads((out / "suite.json").read_text())
  assert saved["results"]["palm"][0]["num_envs"] == 64
  md = (out / "suite.md").read_text()
  assert "| generator | batch |" in md and "| PALM envs |" in md and "s/kimg" in md
  assert "| population (configs/mini.py shapes) |" in md


def test_budget_skips_what_cannot_finish(tmp_path):
  report = bench.main(["suite", "--tiny", "--budget_s=1", f"--out={tmp_path}"])
  assert report["items"] and all(i["status"] == "skipped" for i in report["items"])
  assert "Skipped for the budget" in (tmp_path / "suite.md").read_text()
  budget = suite.Budget(100.0)
  item = suite.Item("g", "generator", 4096, lambda: {}, str)
  assert budget.estimate(item) == suite.PRIORS_S["generator"]
  budget.record(item, 10.0)
  assert budget.estimate(suite.Item("g", "generator", 8192, lambda: {}, str)) == 20.0


def test_breakdown_parts_take_the_generator_weights_as_arguments():
  config = palm_bench.palm_config(os.path.join(ROOT, "configs", "smoke.py"), 64,
                                  ["batch_size=16"])
  mesh = sharding.make_mesh()
  plan = programs.Plan(config)
  gen = generator.load_env_generator(config, "/tmp")
  env, cfg, init_fn, _, _ = programs.build_single(config, mesh, gen, plan)
  params = programs.env_params_from(config)
  state, _ = jax.eval_shape(init_fn, jax.random.PRNGKey(0), gen.variables, params)
  program = palm_bench.breakdown_programs(cfg, env, mesh)["generator"]
  jaxpr = jax.make_jaxpr(program)(state, gen.variables, params, jax.random.PRNGKey(1))
  weight_shapes = {np.shape(x) for x in jax.tree.leaves(gen.variables) if np.size(x) >= 64}
  inner = jaxpr.eqns[0].params["jaxpr"]                 # the jitted function's own program
  embedded = {np.shape(c) for c in list(jaxpr.consts) + list(inner.consts)}
  assert not embedded & weight_shapes                   # no weights baked in as constants
  assert len(inner.jaxpr.invars) == len(jax.tree.leaves((state, gen.variables, params, 0)))


_CARRIED = """
import sys
sys.path.insert(0, sys.argv[1])                     # the carried ml_collections archive
sys.modules["tensorboardX"] = None                  # absent, as on the GPU machine
import ml_collections
assert ml_collections.__file__.startswith(sys.argv[1]), ml_collections.__file__
from palm_jax.bench import palm
from palm_jax.runtime.metrics import MetricWriter
config = palm.palm_config("configs/cifar10.py", 4096)
assert config.generator == "random" and config.env.num_envs == 4096
w = MetricWriter(sys.argv[2], enabled=True)
w.write_scalars(1, {"x": 1.0})
w.write_image(1, "img", __import__("numpy").zeros((2, 2, 3), "uint8"))
w.close()
print("CARRIED OK")
"""


def test_runs_with_a_carried_ml_collections_archive_and_no_tensorboardx(tmp_path):
  import ml_collections
  package = os.path.dirname(ml_collections.__file__)
  archive = tmp_path / "ml_collections.whl"               # a wheel is a zip of the package
  with zipfile.ZipFile(archive, "w") as z:
    for folder, _, files in os.walk(package):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          z.write(path, os.path.relpath(path, os.path.dirname(package)))
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _CARRIED, str(archive), str(tmp_path / "log")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "CARRIED OK" in out.stdout, out.stderr[-3000:]
  assert "tensorboardX is not installed" in out.stderr
  rows = (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(rows[0]) == {"step": 1, "x": 1.0}
  assert not (tmp_path / "log" / "tb").exists()
