r"""Figure 6 of the paper: linear-probe top-1 against the number of environment samples.

    python -m palm_jax.main --config=configs/sweeps/fig6.py:mini --workdir=runs/fig6_mini
    python -m palm_jax.main --config=configs/sweeps/fig6.py --workdir=/shared/sweeps/fig6 \
        --config.mode=slurm      # then bash /shared/sweeps/fig6/slurm/submit.sh

From configs/cifar10.py, PALM and PALM with random actions, 3 seeds, at total budgets of
1M, 5M, 10M, 25M and 50M environment steps. Each point is its own run with its own cosine
schedule over its own budget (what "trained on N samples" means for a scheduled optimiser;
a snapshot of the 50M run at 10M would sit mid-schedule, a different quantity). The budgets
are assumed (the paper's x axis could not be checked with this project's search tool).
`:mini`: two budgets x two seeds on configs/smoke.py (CPU, minutes; needs ../shared).
"""
import pathlib
import runpy

_COMMON = runpy.run_path(str(pathlib.Path(__file__).resolve().parent / "common.py"))


def get_config(arg=None):
  mini = arg == "mini"
  if arg not in (None, "", "mini"):
    raise ValueError(f"unknown config argument {arg!r}; give none or ':mini'.")
  c = _COMMON["sweep_config"](mini)
  c.title = "Figure 6: sample size" + (" (mini)" if mini else "")
  c.evals = c.evals[:1]  # the linear probe only
  c.variants = (("palm", {}), ("random_actions", {"agent.action_source": "random"}))
  c.axes = (("total_env_steps", (1_000_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000)),
            ("seed", (0, 1, 2)))
  if mini:
    c.variants = c.variants[:1]
    c.axes = (("total_env_steps", (64 * 24, 64 * 48)), ("seed", (0, 1)))
  c.plots.kind = "curve"
  c.plots.x = "total_env_steps"
  return c
