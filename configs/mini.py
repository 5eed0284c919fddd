r"""PALM at laptop scale on the real CIFAR-10 subset: the base of the mini study (issue 10).

    python -m palm_jax.main --config=configs/mini.py --workdir=runs/mini_palm

The world is the shared subset generator, `../shared/data/generators/cifar10_subset_g64/
generator.npz` (111.6 kimg of configs/gan_cifar10_subset.py), when `../shared` is beside
the checkout. On a machine without it the run first trains that generator into
WORKDIR/gan/ (configs/gan_cifar10_subset.py, 112 kimg: about 2 h on one CPU core, minutes
on a GPU; resumable) and says so; `--config.generator=FILE` names any other.

Everything is configs/cifar10.py's (the paper's method) except the sizes: 128 envs of
20-frame episodes on a small conditional StyleGAN2-ADA trained on the 5,170-image CIFAR-10
subset, a CIFAR ResNet with one block per stage and width 16 (128-d features), batch 128,
SAC MLPs of 256. Budget: 625 iterations of 64 envs (40,000 frames), 10 of them warm-up,
1 update per iteration -> 615 SimSiam updates (each frame sampled ~2x): issue 10's
measured point where SimSiam with augmentation at base_lr 0.24 already beat a random
encoder on this subset (34.4 % vs 31.1 +- 0.9; 37.2 % after 990 updates), and what a
machine shared by five engineers affords per member (`--config.total_env_steps=65600`
gives 1,015 updates). base_lr 0.24 (lr 0.12 at batch 128): at SimSiam's 0.03 615 updates
gained nothing (31.4 %), so a short schedule needs the higher lr.

The budget was kept after measuring the curve (issue 22; BENCHMARKS.md "Budget curves"):
seed 100, constant lr, 2,015 updates, snapshots at 240 ... 2,015 updates, each probed by
5-fold x 3 cross-validation on the 5,170 TRAIN images only (the test subset chose nothing).
PALM (init_alpha 0.003, below) stays flat: 31.0, 29.8, 32.7, 30.9, 30.4, 32.2, 31.7, 30.5 %
(SE 0.64 each) -- no trend from 240 to 2,015 updates, so 615 does not limit the members
that train on the generator. real_aug climbs all the way: 33.6, 37.2, 39.0, 41.8, 43.9,
44.4, 47.3, 49.7 %; at 615 updates it is budget-limited, and the study says so.

SAC's initial temperature is 0.003 (the paper's 0.1 stays configs/cifar10.py's default),
chosen on seed 100 (no study seed) by an intrinsic criterion fixed before the comparison:
the highest mean `explore/apt_gain` over the last fifth of the run, with the gain positive
in at least 8 of the last 10 chunks. Last fifth of 615 updates, per candidate: APT gain /
positive of last 10 / action share policy vs random / alpha / SAC entropy:
  init_alpha 0.1     +0.008  8/10  0.014 / 0.012  0.085   43.1   (maximum entropy)
  init_alpha 0.01    +0.141 10/10  0.030 / 0.012  0.0085  38.9
  init_alpha 0.003   +0.233  9/10  0.174 / 0.012  0.0026   0.3   (chosen)
  init_alpha 0.001   -0.000  4/10  0.243 / 0.012  0.0009 -57.6   (collapsed policy)
  0.1, alpha_lr 3e-3 +0.038  9/10  0.018 / 0.012  0.030   41.4
SimSiam's loss was -0.93 to -0.94 in every candidate.

The study's variants (configs/sweeps/mini_paper.py) change one field each (policy, alpha,
beta, pair source, temperature); see that file. The in-run probe is off (eval.train=""):
the study evaluates every member with configs/ood_eval.py instead (probe, kNN,
cross-validation and OOD AUROC from one feature pass).
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent
SHARED = _HERE.parent.parent / "shared" / "data"
SUBSET = SHARED / "cifar_subset"
# The shared subset generator; "" (train it first into WORKDIR/gan/) when it is not here.
SHARED_GENERATOR = SHARED / "generators" / "cifar10_subset_g64" / "generator.npz"
GENERATOR = str(SHARED_GENERATOR) if SHARED_GENERATOR.exists() else ""


def get_config(arg: str | None = None):
  """`arg`: None (the subset GAN: GENERATOR, or trained first) or "random" (an untrained
  generator of the same architecture: what temporal pairs give without a trained world)."""
  c = runpy.run_path(str(_HERE / "cifar10.py"))["get_config"]()
  c.generator = GENERATOR
  c.gan = runpy.run_path(str(_HERE / "gan_cifar10_subset.py"))["get_config"]()
  if arg == "random":
    c.generator = "random"
    c.generator_kwargs = dict(  # the subset GAN's architecture (BENCHMARKS.md command)
        z_dim=64, c_dim=10, w_dim=64, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=2048, channel_max=64, conv_clamp=256))
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; give none or ':random'.")
  c.generator_dtype = "float32"            # CPU: float32 is the fast path
  c.total_env_steps = 625 * 64             # 25 chunks of 25 iterations of 64 envs
  c.env.num_envs = 64                      # few envs: the generator is a third of the cost
  c.agent.warmup_env_steps = 10 * 64       # 10 iterations of uniform actions first
  c.agent.updates_per_step = 1             # 615 updates; 2 samples per frame
  c.agent.init_alpha = 0.003               # a policy that steers: see the docstring
  c.agent.actor_hidden = (256, 256)
  c.agent.critic_hidden = (256, 256)
  c.agent.dtype = "float32"
  c.batch_size = 128
  c.simsiam.stage_sizes = (1, 1, 1, 1)     # a ResNet-10-like encoder, 128-d features
  c.simsiam.width = 16
  c.simsiam.proj_hidden_dim = 512
  c.simsiam.proj_dim = 512
  c.simsiam.pred_hidden_dim = 128
  c.simsiam.base_lr = 0.24                 # see the docstring
  c.simsiam.dtype = "float32"
  c.simsiam.real_data = f"npz:{SUBSET / 'cifar10_train_partial.npz'}"  # real/real_aug
  c.replay.capacity = 40_000               # the whole run (~120 MB of frames)
  c.replay.action_dtype = "float32"
  c.log.rollout_every_chunks = 0           # no rollout grids (CPU time)
  c.log.explore_envs = 16                  # 2 x 16 fresh episodes per chunk (~10 % time)
  c.checkpoint.every_chunks = 20
  c.checkpoint.save_replay = False         # the study never resumes mid-run on purpose
  # Every 5 chunks (115, 240, 365, 490, 615 updates): a curve, and a usable encoder even
  # when a run is cut short on a busy machine.
  c.checkpoint.snapshot_steps = (8000, 16000, 24000, 32000, 40000)
  c.eval.train = ""                        # evaluated by configs/ood_eval.py afterwards
  c.eval.test = ""
  return c
