"""The atari100k job end to end on the tiny config; refusals; the grid's results.md."""
import json
import pathlib
import runpy

import pytest

pytest.importorskip("ale_py")

from palm_jax import atari100k, atari100k_grid  # noqa: E402
from palm_jax.errors import UserError  # noqa: E402

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "atari" / "drq.py"


def _config(arg="breakout,tiny"):
  return runpy.run_path(str(CONFIG))["get_config"](arg)


def test_tiny_run_writes_a_score(tmp_path):
  from palm_jax.main import JOBS, run_job  # pylint: disable=g-import-not-at-top
  assert JOBS["atari100k"] == "palm_jax.atari100k"
  run_job(_config(), str(tmp_path))
  out = json.loads((tmp_path / "score.json").read_text())
  assert out["game"] == "breakout" and out["env_steps"] == 60
  assert out["hns"] == pytest.approx((out["score"] - 1.7) / (30.5 - 1.7))
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines] == [20, 40, 60] and "loss" in lines[-1]


@pytest.mark.parametrize("field,value,match", [
    ("game", "pongg", "unknown Atari game"),
    ("encoder_init", "imagenet", "encoder_init"),
    ("encoder_init", "palm", "encoder_workdir"),
    ("freeze_encoder", True, "random encoder"),
    ("total_env_steps", 0, "at least 1"),
])
def test_refusals_name_the_value(field, value, match):
  c = _config()
  c[field] = value
  with pytest.raises(UserError, match=match):
    atari100k.check_config(c)


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
