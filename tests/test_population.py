"""Population training (palm_jax/palm/population.py): member i of a vmapped population equals
the single run of its own config; members stop, checkpoint and resume together."""
import json
import os
import runpy

import jax
import numpy as np
import pytest

from palm_jax import main
from palm_jax.jobs import palm as palm_job
from palm_jax.palm import population
from palm_jax.runtime import preemption
from palm_jax.runtime.errors import UserError
from checkpoint_damage import truncate_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  # tests/_multihost_worker.py's sizes: the single run's programs are shared with it.
  config = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  config.eval.train = ""
  config.total_env_steps = 64 * 8          # 2 chunks: 4 warm-up iterations, then 4 updates
  config.log.chunk_iterations = 4
  config.checkpoint.every_chunks = 1
  config.log.rollout_every_chunks = 2
  return config


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_members_are_named_and_configs_are_single_runs_and_mistakes_are_one_sentence(
    tmp_path):
  config = _config()
  config.population.seeds = (3, 4)
  config.population.beta = (0.9, 0.5)
  team = population.members(config, str(tmp_path), generator="/g.npz")
  assert [m.name for m in team] == ["seed3_beta0.9", "seed4_beta0.5"]
  assert [(m.config.seed, m.config.env.beta, m.config.env.alpha) for m in team] == [
      (3, 0.9, config.env.alpha), (4, 0.5, config.env.alpha)]
  assert all(m.config.generator == "/g.npz" and not population.enabled(m.config)
             for m in team)
  assert team[0].workdir == os.path.join(str(tmp_path), "members", "seed3_beta0.9")
  config.population.beta = (0.9,)
  with pytest.raises(UserError, match=r"population.beta=\(0.9,\) must be empty"):
    population.members(config, str(tmp_path))
  config.population.beta = ()
  config.population.seeds = (1, 1)
  with pytest.raises(UserError, match="more than once"):
    population.members(config, str(tmp_path))
  config.population.seeds = (0, 1)
  config.experience.log = True
  with pytest.raises(UserError, match="experience.log=True is not supported"):
    palm_job.run(config, str(tmp_path / "refused"))
  assert not (tmp_path / "refused" / "members").exists()  # refused before anything ran
  # What a population sweep's training stage passes on the command line (experiments/
  # runner.py): seeds and one workdir each, parsed by ml_collections' flag parser.
  from palm_jax.experiments import spec  # pylint: disable=g-import-not-at-top
  stage = spec.Stage("train", os.path.join(ROOT, "configs", "smoke.py"), (
      ("population.seeds", (0, 1)), ("population.workdirs", ("/s/a", "/s/b"))))
  team = population.members(spec.resolve(stage.config_file, stage.overrides), "/unused")
  assert [(m.name, m.workdir) for m in team] == [("seed0", "/s/a"), ("seed1", "/s/b")]
  assert all(m.config.population.workdirs == () for m in team)


@pytest.mark.slow
def test_member_equals_its_single_run_after_a_stop_and_resume(tmp_path, monkeypatch):
  config = _config()
  config.population.seeds = (0, 1)
  pop_dir = tmp_path / "pop"
  # A stop request after the first chunk: every member saves, the run exits ...
  asked = iter([True])
  monkeypatch.setattr(preemption, "requested", lambda sync=True: next(asked, False))
  with pytest.raises(preemption.Preempted):
    palm_job.run(config, str(pop_dir))
  for name in ("seed0", "seed1"):
    assert os.listdir(pop_dir / "members" / name / "checkpoints") == ["256"]
  # ... and the rerun resumes both members and finishes.
  results = palm_job.run(config, str(pop_dir))
  member = pop_dir / "members" / "seed1"
  with open(member / "config_palm.json") as f:
    saved = json.load(f)
  assert saved["seed"] == 1 and saved["population"]["seeds"] == []
  assert saved["generator"] == str(pop_dir / "generator.npz")  # one world for all members
  assert sorted(os.listdir(member / "checkpoints")) == ["256", "512"]
  assert os.listdir(member / "rollouts")

  single = population.members(config, str(pop_dir), str(pop_dir / "generator.npz"))[1].config
  ref = palm_job.run(single, str(tmp_path / "single"))[0]
  a, b = _leaves(results[1].state.simsiam.params), _leaves(ref.state.simsiam.params)
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5)
  other = _leaves(results[0].state.simsiam.params)
  assert max(np.abs(x - y).max() for x, y in zip(other, b)) > 1e-3  # seeds differ
  rows = lambda d: [json.loads(l) for l in open(d / "metrics.jsonl")]
  pop_rows, ref_rows = rows(member), rows(tmp_path / "single")
  assert [r["step"] for r in pop_rows] == [r["step"] for r in ref_rows] == [256, 512]
  np.testing.assert_allclose(pop_rows[-1]["simsiam/loss"], ref_rows[-1]["simsiam/loss"],
                             rtol=1e-3, atol=1e-5)
  # One member's newest checkpoint is corrupt: it resumes from 256, and so does the other
  # member (its readable 512 set aside), and the rerun ends where the first run did.
  truncate_state(str(pop_dir / "members" / "seed0" / "checkpoints" / "512"))
  again = palm_job.run(config, str(pop_dir))
  assert os.listdir(pop_dir / "members" / "seed0" / "checkpoints" / "broken") == ["512"]
  assert os.listdir(member / "checkpoints" / "ahead") == ["512"]
  for i in range(2):
    for x, y in zip(_leaves(again[i].state.simsiam.params),
                    _leaves(results[i].state.simsiam.params)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  # A member's checkpoints guard its config, as a single run's do ...
  config.batch_size = 64
  with pytest.raises(UserError, match=r"members/seed0 holds a run with a different config"):
    palm_job.run(config, str(pop_dir))
  # ... unless the caller allows the change: the argument `run_job` passes (no absl flag
  # is parsed in-process) reaches every member's resume check.
  changed = main.run_job(config, str(pop_dir), allow_config_change=True)
  assert [r.workdir for r in changed] == [str(pop_dir / "members" / n) for n in ("seed0",
                                                                                 "seed1")]
  assert os.path.exists(member / "config_palm.1.json")   # the changed config, kept beside


def test_the_accelerator_loop_traces_for_a_population():
  """The `scan` chunk (accelerators' loop) over a member axis: traced, not compiled (the
  host loop's population runs in the test above)."""
  from palm_jax.palm import generator, programs  # pylint: disable=g-import-not-at-top
  from palm_jax.palm import step as palm_step
  from palm_jax.runtime import sharding
  config = _config()
  config.population.seeds = (0, 1, 2)
  config.population.alpha = (0.0, 0.5, 1.0)
  mesh, plan = sharding.make_mesh(), programs.Plan(config)
  gen = generator.load_env_generator(config, "/nonexistent")
  team = population.members(config, "/nonexistent")
  p = programs.build(config, mesh, gen, plan, [m.config for m in team], batched=True)
  np.testing.assert_array_equal(p.env_params.alpha, np.float32([0.0, 0.5, 1.0]))
  state, replay = jax.eval_shape(p.init_members, p.keys, gen.variables, p.env_params)
  chunk = palm_step.make_chunk(p.step_cfg, p.env, mesh, 4, *p.shardings, loop="scan",
                               members=3)
  state, replay, metrics = jax.eval_shape(chunk, state, replay, gen.variables, p.env_params,
                                          None)
  assert state.obs.shape[:2] == (3, config.env.num_envs) and replay.frames.shape[0] == 3
  assert metrics["simsiam/loss"].shape == (3,)
