r"""The Atari 100k grid: every game × seed through the `atari100k` job, then `results.md`.

    # everything, one cell after another (resumable: finished cells are skipped)
    python -m palm_jax.jobs.atari100k_grid --config=configs/atari/drq.py --workdir=/tmp/a100k
    # one cell per task of a cluster job array (SLURM: --array=0-129 for 26 games × 5 seeds)
    python -m palm_jax.jobs.atari100k_grid --config=configs/atari/drq.py --workdir=/tmp/a100k \
        --task_index=$SLURM_ARRAY_TASK_ID
    # then the table from whatever cells have finished
    python -m palm_jax.jobs.atari100k_grid --config=configs/atari/drq.py --workdir=/tmp/a100k \
        --aggregate_only

Cell `i` is game `i // seeds`, seed `i % seeds`, run in `WORKDIR/<game>/seed<seed>` with
`config.game` and `config.seed` overridden (every other `--config.*` override applies to
all cells, e.g. `--config.encoder_init=palm --config.encoder_workdir=...` for PALM + DrQ —
there the workdir may contain `{game}`, filled per cell). `results.md` is the Table-2-style
summary of `palm_jax.evaluation.atari_scores.results_markdown` over the games whose seeds
have all finished.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from palm_jax.envs.atari import ATARI_100K_GAMES
from palm_jax.runtime.errors import UserError

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program: palm_jax.main owns
  --config/--workdir when this module is imported, e.g. by tests)."""
  config_flags.DEFINE_config_file("config", None, "configs/atari/drq.py")
  flags.DEFINE_string("workdir", None, "Root directory of the grid.")
  flags.DEFINE_integer("seeds", 5, "Seeds per game (rliable's Atari 100k uses ≥ 5).")
  flags.DEFINE_list("games", list(ATARI_100K_GAMES), "Games (default: all 26).")
  flags.DEFINE_integer("task_index", -1, "Run only this cell (-1: all of them).")
  flags.DEFINE_bool("aggregate_only", False, "Only write results.md.")

def cells(games, seeds):
  return [(g, s) for g in games for s in range(seeds)]


def cell_dir(root: str, game: str, seed: int) -> str:
  return os.path.join(root, game, f"seed{seed}")


def run_cell(config, root: str, game: str, seed: int) -> None:
  from palm_jax.jobs import run_job  # pylint: disable=g-import-not-at-top
  workdir = cell_dir(root, game, seed)
  if os.path.exists(os.path.join(workdir, "score.json")):
    logging.info("%s seed %d is done; skipping.", game, seed)
    return
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.game, cfg.seed = game, seed
    if cfg.get("encoder_workdir"):
      cfg.encoder_workdir = cfg.encoder_workdir.format(game=game)
  run_job(cfg, workdir)


def collect(root: str, games, seeds) -> dict:
  """{game: [score per seed]} for the games whose seeds have all finished."""
  out = {}
  for g in games:
    paths = [os.path.join(cell_dir(root, g, s), "score.json") for s in range(seeds)]
    if all(os.path.exists(p) for p in paths):
      out[g] = [json.load(open(p))["score"] for p in paths]
  return out


def write_results(root: str, games, seeds, title: str) -> str | None:
  from palm_jax.evaluation.atari_scores import results_markdown  # pylint: disable=g-import-not-at-top
  scores = collect(root, games, seeds)
  if not scores:
    logging.info("No game has all %d seeds finished yet; no results.md.", seeds)
    return None
  path = os.path.join(root, "results.md")
  note = "" if len(scores) == len(games) else f" ({len(scores)} of {len(games)} games)"
  with open(path, "w") as f:
    f.write(results_markdown(scores, title + note))
  logging.info("Wrote %s.", path)
  return path


def main(argv) -> None:
  del argv
  import sys  # pylint: disable=g-import-not-at-top
  try:
    config, root, seeds = FLAGS.config, FLAGS.workdir, FLAGS.seeds
    if config is None or not root:
      raise UserError("pass --config=configs/atari/drq.py and --workdir=DIR.")
    games = list(FLAGS.games)
    grid = cells(games, seeds)
    if not FLAGS.aggregate_only:
      if FLAGS.task_index >= len(grid):
        raise UserError(f"--task_index={FLAGS.task_index} is past the grid's {len(grid)} "
                        f"cells ({len(games)} games × {seeds} seeds).")
      todo = grid if FLAGS.task_index < 0 else [grid[FLAGS.task_index]]
      for game, seed in todo:
        run_cell(config, root, game, seed)
    enc = config.get("encoder_init", "random")
    write_results(root, games, seeds, f"Atari 100k: DrQ(ε), encoder {enc}, {seeds} seeds")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
