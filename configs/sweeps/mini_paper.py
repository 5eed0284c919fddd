r"""The laptop-scale study: does PALM learn? (CPU, the real CIFAR-10 subset; issue 22)

    python -m palm_jax.main --config=configs/sweeps/mini_paper.py --workdir=runs/mini_paper
    python -m palm_jax.main --config=configs/sweeps/mini_paper.py:random \
        --workdir=runs/mini_paper_randgen     # the playing members on an untrained generator
    python -m palm_jax.main --config=configs/sweeps/mini_paper.py:beta \
        --workdir=runs/mini_beta              # PALM over temporal persistence beta
    # two workers, one per core (what BENCHMARKS.md ran): write the command lines, then
    python -m palm_jax.main --config=configs/sweeps/mini_paper.py --workdir=runs/mini_paper \
        --config.mode=slurm                   # -> runs/mini_paper/slurm/commands.txt

Members (configs/mini.py: the shared subset generator, 64 envs, ResNet (1,1,1,1) width 16,
batch 128, base_lr 0.24, the SAC settings its docstring chose by exploration metrics on
seed 100, the budget its docstring chose from the probe-vs-updates curve), 3 seeds each:

  palm            PALM with the mini scale's SAC settings (configs/mini.py)
  palm_paper_temp the same at the paper's initial SAC temperature, 0.1
  random_actions  uniform actions instead of the SAC policy
  alpha0          alpha = 0: the action has no effect (the agent steers nothing)
  beta0           beta = 0: no temporal persistence (each frame a fresh mix)
  same_class      Jahanian et al.'s pairs from the same generator: two independent draws
                  of one class (simsiam.pairs=same_class; the agent still plays)
  perturbation    Jahanian et al.'s pairs: G(z, c) and G(z + 0.5 n, c)
  static          real same-class image pairs, no generator ("static PALM"; offline path)
  real_aug        SimSiam's own baseline: two augmented views of one real image (offline)
  random_init     the same architecture, never trained: the encoder the PALM member of the
                  same seed starts from (the offline path with zero updates)

Every member is evaluated by configs/ood_eval.py on the subsets: the linear probe's test
top-1 on the 5,170 / 1,017 split (the earlier studies' column), the weighted kNN classifier
(k = 20, 200), both again by 5-fold stratified cross-validation x 2 repeats over all 6,187
labelled images (palm_jax/evaluation/cv_probe.py: ~0.6-point standard error), and OOD AUROC
(MSP and kNN) CIFAR-10 -> CIFAR-100 subset and interp. results.md adds each member's
exploration metrics (the last fifth of its chunks), bootstrap intervals over seeds, and the
differences the study asks about, called only when both their 95 % intervals (bootstrap and
Welch's t) exclude 0.

`:beta` is the follow-up the study's first results asked for: PALM at beta 0.95 (the paper's),
0.8, 0.5 and 0, beside the random-init floor. At 0.95 an episode is nearly one image
(`configs/sample.py --config.episodes`: consecutive frames change by 5 % of what separates
unrelated ones), so the temporal pairs are near-duplicates; lower beta makes them differ.
On a machine without ../shared's generator the sweep trains it first into WORKDIR/gan/
(configs/gan_cifar10_subset.py: about 2 h on one CPU core).
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent
_COMMON = runpy.run_path(str(_HERE / "common.py"))
_MINI = runpy.run_path(str(_HERE.parent / "mini.py"))
_SUBSET = _MINI["SUBSET"]


def get_config(arg=None):
  if arg not in (None, "", "random", "beta"):
    raise ValueError(f"unknown config argument {arg!r}; give none, ':random' or ':beta'.")
  mini = _MINI["get_config"]()
  total = int(mini.total_env_steps)
  c = _COMMON["sweep_config"](False)
  c.title = "Mini paper (issue 22): does PALM learn? CPU, CIFAR-10 subset" + (
      {"random": ", untrained generator", "beta": ": PALM over beta"}.get(arg or "", ""))
  c.base = "configs/mini.py" + (":random" if arg == "random" else "")
  if arg != "random" and not mini.generator:
    c.generator_gan = "configs/gan_cifar10_subset.py"  # no shared generator: train it once
  c.overrides = (("eval.train", ""),)
  offline_real = {"simsiam.pairs": "real"}
  c.variants = (
      ("palm", {}),
      ("palm_paper_temp", {"agent.init_alpha": 0.1}),
      ("random_actions", {"agent.action_source": "random"}),
      ("alpha0", {"env.alpha": 0.0}),
      ("beta0", {"env.beta": 0.0}),
      ("same_class", {"simsiam.pairs": "same_class"}),
      ("perturbation", {"simsiam.pairs": "perturbation"}),
      ("static", offline_real),
      ("real_aug", {"simsiam.pairs": "real_aug"}),
      ("random_init", {"simsiam.pairs": "real_aug", "agent.warmup_env_steps": total,
                       "checkpoint.snapshot_steps": ()}),
  )
  if arg == "beta":
    c.variants = tuple((f"beta{b}", {"env.beta": b}) for b in (0.95, 0.8, 0.5, 0.0)) + (
        c.variants[-1],)
  c.axes = (("seed", (0, 1, 2)),)
  data = {"data.train": f"npz:{_SUBSET / 'cifar10_train_partial.npz'}",
          "data.test": f"npz:{_SUBSET / 'cifar10_test_partial.npz'}",
          "data.ood": f"npz:{_SUBSET / 'cifar100_test_partial.npz'},interp",
          "cv.repeats": 2}
  c.evals = (("ood_eval", "configs/ood_eval.py", data),)
  c.contrasts = (("palm", "random_init"), ("palm", "random_actions"), ("palm", "alpha0"),
                 ("palm", "beta0"), ("palm", "palm_paper_temp"), ("palm", "same_class"),
                 ("palm", "perturbation"), ("static", "palm"), ("real_aug", "palm"),
                 ("random_actions", "random_init"), ("beta0", "random_init"),
                 ("same_class", "random_init"), ("perturbation", "random_init"),
                 ("static", "random_init"), ("real_aug", "random_init"))
  if arg == "beta":
    c.contrasts = tuple((f"beta{b}", "random_init") for b in (0.95, 0.8, 0.5, 0.0)) + (
        ("beta0.0", "beta0.95"), ("beta0.5", "beta0.95"), ("beta0.8", "beta0.95"))
  c.contrast_metrics = ("probe/cv_top1", "knn/cv_k20_top1", "knn/cv_k200_top1",
                        "ood/probe_test_top1")
  c.plots.kind = "bar"
  c.plots.metric = "probe/cv_top1"
  c.plots.reference = "random_init"    # the floor every generator-trained variant must beat
  return c
