r"""Figure 4 of the paper: PALM against its ablations, linear probe (and OOD) per variant.

    python -m palm_jax.main --config=configs/sweeps/fig4.py:mini --workdir=runs/fig4_mini
    python -m palm_jax.main --config=configs/sweeps/fig4.py --workdir=/shared/sweeps/fig4 \
        --config.mode=slurm      # then bash /shared/sweeps/fig4/slurm/submit.sh
    python -m palm_jax.main --config=configs/sweeps/fig4.py --workdir=/shared/sweeps/fig4 \
        --config.mode=aggregate  # results.csv, results.md, plots/ of what has finished

Variants (bars), 3 seeds each, from configs/cifar10.py: PALM; random actions instead of the
SAC policy; alpha = 0 (the action has no effect); beta = 0 (no temporal persistence); beta
= 1 (a frozen frame: the latent never moves after the reset; not the paper's static PALM);
PALM + SimSiam's augmentations; the positive-pair sources (Jahanian et al.'s same-class and
latent-perturbation pairs); and static PALM (real same-class image pairs, trained offline
without the environment). The paper's text was not available to this project's search
tool when this file was written: the bar set follows issue 10 and the ablations the README
lists; the seeds follow the issue ("a mean over 3-5 seeds"). `:mini` runs four bars x two
seeds on configs/smoke.py (CPU, minutes; the evals need ../shared's CIFAR subsets).
"""
import pathlib
import runpy

_COMMON = runpy.run_path(str(pathlib.Path(__file__).resolve().parent / "common.py"))


def get_config(arg=None):
  mini = arg == "mini"
  if arg not in (None, "", "mini"):
    raise ValueError(f"unknown config argument {arg!r}; give none or ':mini'.")
  c = _COMMON["sweep_config"](mini)
  c.title = "Figure 4: PALM and its ablations" + (" (mini)" if mini else "")
  c.variants = (
      ("palm", {}),
      ("random_actions", {"agent.action_source": "random"}),
      ("alpha0", {"env.alpha": 0.0}),
      ("beta0", {"env.beta": 0.0}),
      ("beta1_frozen", {"env.beta": 1.0}),
      ("augment", {"simsiam.augment": True}),
      ("pairs_same_class", {"simsiam.pairs": "same_class"}),
      ("pairs_perturbation", {"simsiam.pairs": "perturbation"}),
      ("static_palm", {"simsiam.pairs": "real", "simsiam.real_data": "tfds:cifar10:train"}),
  )
  c.axes = (("seed", (0, 1, 2)),)
  if mini:
    c.variants = c.variants[:4]
    c.axes = (("seed", (0, 1)),)
  c.plots.kind = "bar"
  return c
