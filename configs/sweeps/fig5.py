r"""Figure 5 of the paper: linear-probe top-1 over a grid of alpha (control) x beta (memory).

    python -m palm_jax.main --config=configs/sweeps/fig5.py:mini --workdir=runs/fig5_mini
    python -m palm_jax.main --config=configs/sweeps/fig5.py --workdir=/shared/sweeps/fig5 \
        --config.mode=slurm      # then bash /shared/sweeps/fig5/slurm/submit.sh

From configs/cifar10.py: env.alpha in T_com (z' = alpha a + (1 - alpha) eps) x env.beta in
T_ema (z_t = beta z_{t-1} + (1 - beta) z'), 3 seeds, the linear probe of each final encoder,
drawn as a heat map (rows alpha, columns beta). The alpha values are issue 10's; the beta
values bracket the paper's default 0.95 with both ends (0: no persistence, 1: static). The
paper's own grid could not be checked with this project's search tool. `:mini`: a 2 x 2
grid x 2 seeds on configs/smoke.py (CPU, minutes; needs ../shared's CIFAR subsets).
"""
import pathlib
import runpy

_COMMON = runpy.run_path(str(pathlib.Path(__file__).resolve().parent / "common.py"))


def get_config(arg=None):
  mini = arg == "mini"
  if arg not in (None, "", "mini"):
    raise ValueError(f"unknown config argument {arg!r}; give none or ':mini'.")
  c = _COMMON["sweep_config"](mini)
  c.title = "Figure 5: alpha x beta" + (" (mini)" if mini else "")
  c.evals = c.evals[:1]  # the linear probe only
  c.axes = (("env.alpha", (0.0, 0.25, 0.5, 0.75, 0.95, 1.0)),
            ("env.beta", (0.0, 0.5, 0.9, 0.95, 1.0)),
            ("seed", (0, 1, 2)))
  if mini:
    c.axes = (("env.alpha", (0.0, 0.5)), ("env.beta", (0.5, 0.95)), ("seed", (0, 1)))
  c.plots.kind = "heatmap"
  c.plots.y = "env.alpha"
  c.plots.x = "env.beta"
  return c
