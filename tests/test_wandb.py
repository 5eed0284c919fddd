"""Weights & Biases logging (`config.log.wandb`, palm_jax/runtime/wandb_log.py), offline.

A smoke run with W&B on writes an offline W&B run whose scalars and steps are those of
metrics.jsonl, with the rollout pictures and the config; a resumed run continues the same
W&B run id; W&B off writes nothing of W&B's; W&B on without the package is one sentence
before anything compiles; sweeps group their members. The offline `.wandb` files are read
back with the record format W&B writes (a LevelDB-style log of protobuf `Record`s).
"""
import glob
import json
import os
import runpy
import sys

import numpy as np
import pytest

from palm_jax import jobs
from palm_jax.experiments import spec
from palm_jax.runtime import metrics, preemption, run_records, wandb_log
from palm_jax.runtime.errors import UserError

wandb = pytest.importorskip("wandb")
import wandb_records  # noqa: E402  (tests/: needs wandb)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jsonl(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _config(**overrides):
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.eval.train = ""
  c.total_env_steps = 64 * 16
  c.log.chunk_iterations = 8
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
  """W&B offline (no account, no network), its settings and caches under tmp_path."""
  wandb_records.offline(monkeypatch, tmp_path)
  return tmp_path


def test_smoke_run_logs_what_metrics_jsonl_holds_and_a_resume_continues_the_run(
    offline_env, monkeypatch):
  workdir = str(offline_env / "run")
  wb = {"log.wandb": True, "log.wandb_project": "palm_test", "log.wandb_tags": ("smoke", "t")}
  # SIGTERM after the first chunk (as preemption.requested() reports it): the loop saves,
  # closes what it owns (the writer finishes its W&B run) and raises Preempted.
  with monkeypatch.context() as patch, pytest.raises(preemption.Preempted):
    patch.setattr(preemption, "requested", lambda sync=True: True)
    jobs.run_job(_config(**wb), workdir)
  with open(os.path.join(workdir, wandb_log.RUN_FILE)) as f:
    recorded = json.load(f)
  assert recorded["project"] == "palm_test"
  (stopped,) = wandb_records.read_offline_runs(os.path.join(workdir, "wandb"))
  assert stopped["id"] == recorded["id"] and stopped["finished"]
  assert sorted(stopped["history"]) == [512]
  assert stopped["tags"] == ["smoke", "t"] and stopped["group"] == ""
  assert stopped["config"]["log.wandb"] is True and stopped["config"]["env.num_envs"] == 64

  # The rerun resumes the checkpoint and the W&B run; then again with a longer budget.
  jobs.run_job(_config(**wb), workdir)
  # The extension ends with the final probe (tiny data): its numbers are the run's summary.
  rng = np.random.default_rng(0)
  for name, n in (("train", 64), ("test", 32)):
    np.savez(offline_env / f"{name}.npz", labels=np.arange(n) % 4,
             images=rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8))
  monkeypatch.setenv("PALM_JAX_CACHE", str(offline_env / "cache"))
  jobs.run_job(_config(total_env_steps=64 * 24, **wb, **{
      "eval.train": f"npz:{offline_env / 'train.npz'}",
      "eval.test": f"npz:{offline_env / 'test.npz'}"}), workdir, allow_config_change=True)
  runs = wandb_records.read_offline_runs(os.path.join(workdir, "wandb"))
  assert len(runs) == 4 and runs[0] == stopped
  *runs, final = runs     # the summary's own segment: no history point, same run id
  with open(os.path.join(workdir, "eval", "linear_eval.json")) as f:
    probe = json.load(f)
  assert final["id"] == recorded["id"] and final["history"] == {}
  assert final["summary"]["eval/test_top1"] == pytest.approx(probe["test_top1"])
  assert final["summary"]["eval/random_floor_test_top1"] == pytest.approx(
      probe["random_floor_test_top1"])
  assert all(r["id"] == recorded["id"] and r["finished"] for r in runs)
  assert [r["config"]["total_env_steps"] for r in runs] == [64 * 16, 64 * 16, 64 * 24]
  assert [sorted(r["history"]) for r in runs] == [[512], [1024], [1536]]

  # Every metrics.jsonl line is one W&B history row: same step, same keys, same values.
  assert [r["step"] for r in _jsonl(workdir)] == [512, 1024, 1536]
  wandb_records.jsonl_matches(workdir, runs)
  # The rollout grids TensorBoard gets (rollout_every_chunks=3: the last chunk of each run).
  assert [r["images"] for r in runs] == [{}, {1024: {"rollouts"}}, {1536: {"rollouts"}}]


def test_writer_sends_scalars_and_images_to_wandb_dir_and_resumes_the_id(offline_env,
                                                                         monkeypatch):
  where = offline_env / "elsewhere"
  monkeypatch.setenv("WANDB_DIR", str(where))  # W&B's own variable wins over the workdir
  settings = wandb_log.Settings(True, "palm_test", group="sweep_a", config={"seed": 3})
  workdir = str(offline_env / "member")
  w = metrics.MetricWriter(workdir, enabled=True, wandb=settings)
  w.write_scalars(10, {"a": 1.5, "b": np.float32(2.0), "bad": float("nan")})
  w.write_image(10, "grid", np.zeros((8, 12, 1), np.uint8))
  w.flush()  # TensorBoard's flush leaves the W&B run open
  w.write_scalars(20, {"a": 0.5})
  w.close()
  again = metrics.MetricWriter(workdir, enabled=True, wandb=settings)
  again.write_scalars(30, {"a": 0.25})
  again.close()
  assert not os.path.exists(os.path.join(workdir, "wandb"))
  first, second = wandb_records.read_offline_runs(str(where / "wandb"))
  assert first["id"] == second["id"] and first["group"] == "sweep_a"
  assert first["config"]["seed"] == 3 and first["finished"] and second["finished"]
  # NaN stays in metrics.jsonl only, as in TensorBoard.
  assert first["history"] == {10: {"a": 1.5, "b": 2.0}, 20: {"a": 0.5}}
  assert first["images"] == {10: {"grid"}} and second["history"] == {30: {"a": 0.25}}


def test_wandb_off_writes_nothing_of_wandbs(offline_env):
  config = _config()
  assert config.log.wandb is False and config.log.wandb_project == "palm_jax"
  settings = wandb_log.Settings.from_config(config)
  assert settings == wandb_log.Settings()
  workdir = str(offline_env / "run")
  w = metrics.MetricWriter(workdir, enabled=True, wandb=settings)
  w.write_scalars(1, {"a": 1.0})
  w.write_image(1, "grid", np.zeros((4, 4, 3), np.uint8))
  w.close()
  assert sorted(os.listdir(workdir)) == ["metrics.jsonl", "tb"]
  assert not glob.glob(str(offline_env / "**" / "wandb*"), recursive=True)


def test_wandb_on_without_the_package_is_one_sentence_before_compiling(offline_env,
                                                                       monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
  workdir = str(offline_env / "run")
  with pytest.raises(UserError) as e:
    jobs.run_job(_config(**{"log.wandb": True}), workdir)
  message = str(e.value)
  assert "pip install wandb" in message and "config.log.wandb=False" in message
  assert message.count(". ") == 0 and message.endswith(".")
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))


def test_config_mistakes_are_one_sentence():
  with pytest.raises(UserError, match="wandb_tags"):
    wandb_log.Settings.from_config(_config(**{"log.wandb": True, "log.wandb_tags": (1,)}))
  with pytest.raises(UserError, match="wandb_project"):
    wandb_log.Settings.from_config(_config(**{"log.wandb": True, "log.wandb_project": " "}))


def test_sweep_members_that_log_to_wandb_are_grouped_by_the_sweep(tmp_path):
  sweep = runpy.run_path(os.path.join(ROOT, "configs", "sweeps", "common.py"))[
      "sweep_config"](True)
  sweep.axes = (("seed", (0, 1)),)
  plain = spec.expand(sweep, str(tmp_path / "plain_sweep"))
  assert all("log.wandb_group" not in dict(m.stages[0].overrides) for m in plain)
  sweep.overrides = (("eval.train", ""), ("log.wandb", True))
  members = spec.expand(sweep, str(tmp_path / "fig4_seeds"))
  for m in members:
    config = spec.resolve(m.stages[0].config_file, m.stages[0].overrides)
    assert config.log.wandb_group == "fig4_seeds" and config.log.wandb
    assert "--config.log.wandb_group=fig4_seeds" in m.stages[0].argv(m.workdir)
  sweep.overrides = (("eval.train", ""), ("log.wandb", True), ("log.wandb_group", "mine"))
  for m in spec.expand(sweep, str(tmp_path / "fig4_seeds")):
    assert dict(m.stages[0].overrides)["log.wandb_group"] == "mine"
    assert [k for k, _ in m.stages[0].overrides].count("log.wandb_group") == 1


def test_turning_wandb_on_when_resuming_needs_no_allow_config_change(tmp_path):
  """A workdir checkpointed before the W&B fields existed (or with them off) resumes with
  W&B on: `log.wandb*` only change what is logged (run_records.SAFE_FIELDS)."""
  workdir = str(tmp_path)
  old = run_records.config_json(_config())
  for key in [k for k in old["log"] if k.startswith("wandb")]:
    del old["log"][key]
  with open(os.path.join(workdir, "config_palm.json"), "w") as f:
    json.dump(old, f)
  os.makedirs(os.path.join(workdir, "checkpoints", "512"))
  run_records.check_resume_config(workdir, "palm", _config(**{
      "log.wandb": True, "log.wandb_group": "g", "log.wandb_tags": ("t",)}), False)
  with pytest.raises(UserError, match="env.alpha"):  # the guard itself still guards
    run_records.check_resume_config(workdir, "palm", _config(**{"env.alpha": 0.1}), False)


def test_population_members_log_to_their_own_runs_at_once(offline_env):
  """A population's writers are open together in one process (reinit="create_new")."""
  settings = wandb_log.Settings(True, "palm_test")
  writers = [metrics.MetricWriter(str(offline_env / f"seed{i}"), enabled=True,
                                  wandb=settings) for i in range(2)]
  for step in (8, 16):
    for i, w in enumerate(writers):
      w.write_scalars(step, {"loss": float(i * 100 + step)})
  for w in writers:
    w.close()
  runs = [wandb_records.read_offline_runs(str(offline_env / f"seed{i}" / "wandb")) for i in range(2)]
  assert [len(r) for r in runs] == [1, 1] and runs[0][0]["id"] != runs[1][0]["id"]
  for i, (run,) in enumerate(runs):
    assert run["history"] == {8: {"loss": i * 100 + 8.0}, 16: {"loss": i * 100 + 16.0}}


def test_steps_a_resumed_run_already_has_are_not_sent_again(offline_env, monkeypatch):
  """Online, a resumed W&B run reports where its history goes on (`starting_step`); the
  steps a resumed job redoes below it stay in metrics.jsonl only (W&B would drop them with
  a warning each). Offline runs report 0, as the other tests see."""
  monkeypatch.setattr(wandb.sdk.wandb_run.Run, "starting_step", property(lambda self: 25))
  workdir = str(offline_env / "run")
  w = metrics.MetricWriter(workdir, enabled=True, wandb=wandb_log.Settings(True, "palm_test"))
  for step in (16, 24, 32):
    w.write_scalars(step, {"a": float(step)})
  w.write_image(24, "grid", np.zeros((4, 4, 3), np.uint8))
  w.close()
  (run,) = wandb_records.read_offline_runs(os.path.join(workdir, "wandb"))
  assert run["history"] == {32: {"a": 32.0}} and run["images"] == {}
  assert [r["step"] for r in _jsonl(workdir)] == [16, 24, 32]
