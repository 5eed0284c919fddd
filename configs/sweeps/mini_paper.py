r"""The laptop-scale study of issue 10: does PALM learn? (CPU, the real CIFAR-10 subset)

    python -m palm_jax.main --config=configs/sweeps/mini_paper.py --workdir=runs/mini_paper
    python -m palm_jax.main --config=configs/sweeps/mini_paper.py:random \
        --workdir=runs/mini_paper_randgen     # PALM members on an untrained generator
    # on a GPU: the 3 seeds of each playing variant as one population (palm_jax/population.py)
    python -m palm_jax.main --config=configs/sweeps/mini_paper.py --workdir=runs/mini_paper \
        --config.population=True

Members (configs/mini.py: 64 envs, ResNet (1,1,1,1) width 16, batch 128, base_lr 0.24,
615 SimSiam updates, snapshots every 115-125 updates), 3 seeds each:

  palm            PALM on the subset GAN (/work/study/gan_subset/generator.npz, or the
                  untrained generator of the same architecture with `:random`)
  palm_alpha0.01  PALM with SAC's initial temperature 0.01 instead of the paper's 0.1:
                  at 615 updates the default keeps the 64-d policy at maximum entropy
                  (BENCHMARKS.md, "third session"); 0.01 is the value that explored there
  random_actions  uniform actions instead of the SAC policy
  beta0           beta = 0: no temporal persistence (each frame a fresh mix)
  alpha0          alpha = 0: the action has no effect (the agent steers nothing)
  static          real same-class image pairs, no generator ("static PALM"; offline path)
  real_aug        SimSiam's own baseline: two augmented views of one real image (offline)
  random_init     the same architecture, never trained: its initial encoder is saved by
                  the offline path with zero updates (warm-up = the whole run), i.e. the
                  very encoder the PALM member of that seed starts from

Every member is evaluated by configs/ood_eval.py on the subsets: linear-probe test top-1
(5-fold CV choice of weight decay) and OOD AUROC (MSP and kNN) CIFAR-10 -> CIFAR-100
subset and interp. Needs `config.job = "sweep"` (palm_jax/experiments/).
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent
_COMMON = runpy.run_path(str(_HERE / "common.py"))
_SUBSET = _HERE.parents[1].parent / "shared" / "data" / "cifar_subset"
_TOTAL = 625 * 64  # configs/mini.py's total_env_steps


def get_config(arg=None):
  if arg not in (None, "", "random"):
    raise ValueError(f"unknown config argument {arg!r}; give none or ':random'.")
  c = _COMMON["sweep_config"](False)
  c.title = "Mini paper (issue 10): does PALM learn? CPU, CIFAR-10 subset" + (
      ", untrained generator" if arg == "random" else "")
  c.base = "configs/mini.py" + (":random" if arg == "random" else "")
  c.overrides = (("eval.train", ""),)
  offline_real = {"simsiam.pairs": "real"}
  c.variants = (
      ("palm", {}),
      ("palm_alpha0.01", {"agent.init_alpha": 0.01}),
      ("random_actions", {"agent.action_source": "random"}),
      ("beta0", {"env.beta": 0.0}),
      ("alpha0", {"env.alpha": 0.0}),
      ("static", offline_real),
      ("real_aug", {"simsiam.pairs": "real_aug"}),
      ("random_init", {"simsiam.pairs": "real_aug", "agent.warmup_env_steps": _TOTAL,
                       "checkpoint.snapshot_steps": ()}),
  )
  c.axes = (("seed", (0, 1, 2)),)
  data = {"data.train": f"npz:{_SUBSET / 'cifar10_train_partial.npz'}",
          "data.test": f"npz:{_SUBSET / 'cifar10_test_partial.npz'}",
          "data.ood": f"npz:{_SUBSET / 'cifar100_test_partial.npz'},interp"}
  c.evals = (("ood_eval", "configs/ood_eval.py", data),)
  c.plots.kind = "bar"
  c.plots.metric = "ood/probe_test_top1"  # ood_details.json's probe (aggregate.py)
  return c
