r"""The parts every sweep config shares (configs/sweeps/fig4.py, fig5.py, fig6.py use it).

`sweep_config(mini)` is a `config.job = "sweep"` ConfigDict (palm_jax/experiments/) with the
evaluations of the paper: the linear probe (Figure 3's protocol, configs/linear_eval.py) and
OOD detection (Table 1's, configs/ood_eval.py) of every member's final encoder. The full
sweeps start from configs/cifar10.py (the paper's settings); `mini` ones from
configs/smoke.py with the `:smoke` evals on the shared CIFAR subsets, so that a laptop CPU
runs a whole sweep in minutes.
"""
import ml_collections


def sweep_config(mini: bool) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "sweep"
  # local: run members here one after another (resumable) then aggregate; expand: only
  # write each member's member.json; slurm / tpu: write a job array / command list for a
  # cluster; aggregate: results.csv / results.md / plots from whatever members finished.
  c.mode = "local"
  c.executor = "subprocess"  # each stage as `python -m palm_jax.main` (isolated) | inprocess
  c.python = ""              # interpreter for local subprocesses ("" = this one)
  # mode=local: train the members that differ only in their seed together, as one
  # population (palm_jax/palm/population.py: one vmapped program; a GPU runs N small members
  # for about the price of one). Members without an environment (static, real_aug) and
  # the evals run one by one as always. Cluster modes run one member per task regardless.
  c.population = False
  c.title = ""               # heading of results.md ("" = "Sweep <workdir name>")
  c.base = "configs/smoke.py" if mini else "configs/cifar10.py"  # every member's config
  # Fixed overrides for every member. The palm job's own end-of-training probe is switched
  # off: the sweep's linear_eval stage runs it (once) with its own, documented settings.
  c.overrides = (("eval.train", ""),)
  # A gan config file ("" = none): the generator every member renders is trained once into
  # WORKDIR/gan/ before the members (mode=local; cluster modes print the command), and
  # every member gets --config.generator=WORKDIR/gan/generator.npz.
  c.generator_gan = ""
  c.variants = ()            # (name, {dotted key: value}) pairs; set by each figure
  c.axes = ()                # (dotted key, values) pairs: a grid; set by each figure
  suffix = ":smoke" if mini else ""
  c.evals = (("linear_eval", f"configs/linear_eval.py{suffix}", {}),
             ("ood_eval", f"configs/ood_eval.py{suffix}", {}))
  # Figures from results (mode=local at the end, or mode=aggregate): PNGs in WORKDIR/plots/.
  c.plots = ml_collections.ConfigDict()
  c.plots.kind = ""          # "bar" (Fig 4), "heatmap" (Fig 5), "curve" (Fig 6); "" = none
  c.plots.metric = "linear_eval/test_top1"  # the metric plotted
  c.plots.x = ""             # heatmap columns / curve x axis (an axis key, e.g. env.beta)
  c.plots.y = ""             # heatmap rows (an axis key, e.g. env.alpha)
  c.plots.reference = ""     # bars: a condition drawn as a dashed line across (e.g. a floor)
  # Differences to call: (condition a, condition b) pairs (member names without the seed);
  # results.md tabulates mean(a) − mean(b) of each contrast metric with two 95 % intervals
  # over seeds, the bootstrap and Welch's t (palm_jax/experiments/intervals.py): "yes" when
  # both exclude 0 and each side has two seeds or more.
  c.contrasts = ()
  c.contrast_metrics = ()
  # SLURM job array (mode=slurm): one member per array task, one node each.
  c.slurm = ml_collections.ConfigDict()
  c.slurm.job_name = "palm_sweep"
  c.slurm.partition = ""     # "" = the cluster's default
  c.slurm.time = "24:00:00"  # per member
  c.slurm.gpus = 1           # GPUs per member (one process drives them all)
  c.slurm.cpus = 12          # CPU cores per member (data loading, host loop)
  c.slurm.mem = ""           # e.g. "64G"; "" = the partition's default
  c.slurm.max_parallel = 0   # members running at once (0 = no limit)
  c.slurm.extra_args = ()    # more sbatch flags, e.g. ("--account=abc",)
  return c
