"""The scan loop's iteration traces the update once (no `eval_shape` + `cond` double trace),
and the replay's binary search uses the algorithm JAX recommends per platform."""
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.palm import generator, programs, replay
from palm_jax.palm import step as palm_step
from palm_jax.runtime import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_scan_iteration_traces_the_update_once(monkeypatch):
  config = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  config.eval.train = ""
  mesh = sharding.make_mesh()
  plan = programs.Plan(config)
  gen = generator.load_env_generator(config, "/tmp")
  env, cfg, init_fn, _, _ = programs.build_single(config, mesh, gen, plan)
  params = programs.env_params_from(config)
  state, rb = jax.eval_shape(init_fn, jax.random.PRNGKey(0), gen.variables, params)
  calls = []
  original = palm_step.update

  def counting(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)
  monkeypatch.setattr(palm_step, "update", counting)
  iteration = palm_step.make_iteration(cfg, env, mesh, control_flow=True)
  bank = programs.real_bank(config, gen.c_dim, mesh)
  out_state, _, metrics = jax.eval_shape(iteration, state, rb, gen.variables, params, bank)
  assert len(calls) == 1                         # scan over updates_per_step: one trace
  assert "simsiam/loss" in metrics and metrics["simsiam/loss"].shape == ()
  assert jax.tree.structure(out_state) == jax.tree.structure(state)


def test_searchsorted_method_per_platform():
  assert replay.searchsorted_method("gpu") == "scan_unrolled"
  assert replay.searchsorted_method("cpu") == "scan"
  cdf = jnp.cumsum(jnp.array([0, 1, 1, 0, 1, 1, 0, 1], jnp.int32))
  u = jnp.arange(1, 6)
  for method in ("scan", "scan_unrolled"):
    np.testing.assert_array_equal(jnp.searchsorted(cdf, u, method=method),
                                  np.searchsorted(np.asarray(cdf), np.asarray(u)))
