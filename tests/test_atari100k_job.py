"""The atari100k job end to end on the tiny config; refusals; the grid's results.md."""
import importlib.util
import json
import pathlib
import runpy

import pytest

pytest.importorskip("ale_py")

from palm_jax.jobs import atari100k_grid
from palm_jax.jobs import atari100k  # noqa: E402
from palm_jax.runtime.errors import UserError  # noqa: E402

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "atari" / "drq.py"


def _config(arg="breakout,tiny"):
  return runpy.run_path(str(CONFIG))["get_config"](arg)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The tiny job run once, start to end (checkpoints every 20 of its 60 agent steps),
  logging to W&B offline when wandb is installed."""
  from palm_jax.main import run_job  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("uninterrupted")
  config = _config()
  with pytest.MonkeyPatch.context() as patch:
    if importlib.util.find_spec("wandb") is not None:
      import wandb_records  # pylint: disable=g-import-not-at-top
      wandb_records.offline(patch, workdir)
      config.log.wandb = True
    run_job(config, str(workdir))
  return workdir


def _rows(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_writes_a_score(uninterrupted):
  from palm_jax.main import JOBS  # pylint: disable=g-import-not-at-top
  assert JOBS["atari100k"] == "palm_jax.jobs.atari100k"
  out = json.loads((uninterrupted / "score.json").read_text())
  assert out["game"] == "breakout" and out["env_steps"] == 60 and out["policy"] == "drq"
  assert out["hns"] == pytest.approx((out["score"] - 1.7) / (30.5 - 1.7))
  lines = _rows(uninterrupted)
  assert [r["step"] for r in lines] == [20, 40, 60] and "loss" in lines[-1]
  assert sorted(p.name for p in (uninterrupted / "checkpoints").iterdir()
                if p.name.isdigit()) == ["40", "60"]  # checkpoint_keep = 2


def test_wandb_gets_the_metric_lines_and_the_score(uninterrupted):
  wandb_records = pytest.importorskip("wandb_records", reason="wandb is not installed")
  (run,) = wandb_records.read_offline_runs(str(uninterrupted / "wandb"))
  assert wandb_records.jsonl_matches(str(uninterrupted), [run]) == [20, 40, 60]
  out = json.loads((uninterrupted / "score.json").read_text())
  assert run["summary"]["score"] == pytest.approx(out["score"])
  assert run["summary"]["hns"] == pytest.approx(out["hns"]) and run["finished"]


def test_a_stopped_run_resumes_exactly(uninterrupted, tmp_path, monkeypatch):
  """SIGTERM at agent step 25 (between checkpoints), rerun: same losses, same scores."""
  from palm_jax.main import run_job  # pylint: disable=g-import-not-at-top
  from palm_jax.runtime import preemption  # pylint: disable=g-import-not-at-top
  polls = []

  def requested(sync=True):  # pylint: disable=unused-argument
    polls.append(1)
    return len(polls) == 25  # polled once per agent step (1 environment), mid-game

  monkeypatch.setattr(preemption, "requested", requested)
  with pytest.raises(preemption.Preempted, match="agent step 25"):
    run_job(_config(), str(tmp_path))
  assert not (tmp_path / "score.json").exists()
  assert (tmp_path / "checkpoints" / "25").is_dir()
  run_job(_config(), str(tmp_path))  # the same command again
  keys = ("step", "loss", "epsilon", "train_score_last10")
  pick = lambda rows: [{k: r.get(k) for k in keys} for r in rows]  # noqa: E731
  assert pick(_rows(tmp_path)) == pick(_rows(uninterrupted))
  a = json.loads((tmp_path / "score.json").read_text())
  b = json.loads((uninterrupted / "score.json").read_text())
  for k in ("eval_scores", "train_games", "train_score_last10", "env_steps"):
    assert a[k] == b[k], k
  c = _config()
  c.agent.learning_rate = 1e-3  # a rerun that would compute something else is refused
  with pytest.raises(UserError, match="agent.learning_rate"):
    run_job(c, str(tmp_path))


def test_random_policy_baseline(tmp_path):
  c = _config()
  c.policy = "random"
  out = atari100k.run(c, str(tmp_path))
  assert out["policy"] == "random" and out["eval_epsilon"] == 1.0 and out["env_steps"] == 0
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("field,value,match", [
    ("game", "pongg", "unknown Atari game"),
    ("encoder_init", "imagenet", "encoder_init"),
    ("encoder_init", "palm", "encoder_workdir"),
    ("freeze_encoder", True, "random encoder"),
    ("total_env_steps", 0, "at least 1"),
    ("policy", "greedy", "config.policy"),
    ("checkpoint_every", -1, "checkpoint_every"),
])
def test_refusals_name_the_value(field, value, match):
  c = _config()
  c[field] = value
  with pytest.raises(UserError, match=match):
    atari100k.check_config(c)


def test_no_game_is_refused_with_the_games_listed(tmp_path, monkeypatch):
  """configs/atari/drq.py without `:<game>` once started a 100k-step Pong run nobody chose;
  now the job names the fix and the games before anything is built. The grid takes the
  bare file and sets the game per cell."""
  from palm_jax import jobs  # pylint: disable=g-import-not-at-top
  bare = _config(None)
  assert bare.game == ""
  with pytest.raises(UserError, match=r"no Atari game given.*drq.py:pong.*alien, amidar"):
    jobs.run_job(bare, str(tmp_path / "bare"))
  assert not (tmp_path / "bare" / "checkpoints").exists()
  cells = []
  monkeypatch.setattr(jobs, "run_job", lambda cfg, workdir: cells.append((cfg.game, workdir)))
  atari100k_grid.run_cell(bare, str(tmp_path / "grid"), "boxing", 1)
  assert cells == [("boxing", atari100k_grid.cell_dir(str(tmp_path / "grid"), "boxing", 1))]


def test_palm_encoder_from_an_empty_workdir_is_refused(tmp_path):
  c = _config()
  c.encoder_init, c.encoder_workdir = "palm", str(tmp_path)
  with pytest.raises(UserError, match="no checkpoint"):
    atari100k.run(c, str(tmp_path / "run"))


def test_grid_cells_and_results_md(tmp_path):
  assert atari100k_grid.cells(["pong", "boxing"], 2)[3] == ("boxing", 1)
  for game, scores in (("pong", [-20.7, 14.6]), ("boxing", [12.1, 0.1]), ("breakout", [5.0])):
    for seed, s in enumerate(scores):
      d = pathlib.Path(atari100k_grid.cell_dir(str(tmp_path), game, seed))
      d.mkdir(parents=True)
      (d / "score.json").write_text(json.dumps({"score": s}))
  got = atari100k_grid.collect(str(tmp_path), ["pong", "boxing", "breakout"], 2)
  assert got == {"pong": [-20.7, 14.6], "boxing": [12.1, 0.1]}  # breakout lacks seed 1
  path = atari100k_grid.write_results(str(tmp_path), ["pong", "boxing", "breakout"], 2, "t")
  md = pathlib.Path(path).read_text()
  assert "(2 of 3 games)" in md and "| mean HNS | 0.500 |" in md
