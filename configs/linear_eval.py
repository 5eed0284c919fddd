r"""Linear probe of a PALM run's encoder (paper Figure 3): top-1 on frozen features.

    python -m palm_jax.main --config=configs/linear_eval.py --workdir=RUN_DIR \
        --config.data.train=npz:../shared/data/cifar_subset/cifar10_train_partial.npz \
        --config.data.test=npz:../shared/data/cifar_subset/cifar10_test_partial.npz

Defaults are the paper's CIFAR-10 splits through TFDS (prepared once; see
palm_jax/data/tfds_source.py). CIFAR-100: `--config.data.train=tfds:cifar100:train
--config.data.test=tfds:cifar100:test`. RUN_DIR must hold a checkpoint (a mistyped path is
refused, not silently evaluated with a random network). Beside the checkpoint's numbers the
job prints the random-encoder floor: the same probe on a randomly initialised encoder of
the same architecture (`random_floor_test_top1`; `--config.random_floor=False` skips it).
`--config.encoder_init=random` evaluates that random encoder alone (then RUN_DIR needs no
checkpoint). `--config=configs/linear_eval.py:smoke` is a seconds-long variant on the
shared CIFAR subsets with a tiny encoder. Writes RUN_DIR/eval/linear_eval.json.
"""
import pathlib

import ml_collections

from palm_jax.runtime import wandb_log

# The shared real CIFAR subsets beside the checkout (used by the ":smoke" variant).
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar_subset"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg`: None for the defaults, "smoke" for a tiny run on the shared CIFAR subsets."""
  config = ml_collections.ConfigDict()
  config.job = "linear_eval"  # which job palm_jax.main runs
  config.seed = 0             # random-encoder init, held-out split, interp pairs

  config.data = ml_collections.ConfigDict()
  config.data.train = "tfds:cifar10:train"  # probe training split (spec; palm_jax/data)
  config.data.test = "tfds:cifar10:test"    # split the top-1 is reported on
  config.data.image_size = 32   # images are centre-cropped and resized to this side
  config.data.limit = 0         # > 0: keep only the first `limit` images of each split
  config.data.tfds_data_dir = ""  # TFDS data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
  config.data.download = True   # let TFDS prepare missing data (needs tensorflow + internet)

  config.step = -1                  # checkpoint step to evaluate (-1 = the latest)
  config.encoder_init = "checkpoint"  # "checkpoint" (RUN_DIR must have one) | "random"
  # Also probe a random encoder of the checkpoint's architecture (the floor; cached).
  config.random_floor = True
  # ResNet keyword arguments used when the encoder is randomly initialised (a checkpoint
  # carries its own): CIFAR ResNet-18.
  config.encoder = ml_collections.ConfigDict()
  config.encoder.stage_sizes = (2, 2, 2, 2)  # BasicBlocks per stage
  config.encoder.width = 64                  # stem/first-stage channels (features = 8·width)
  config.dtype = "float32"  # encoder compute dtype for features ("bfloat16" on GPU/TPU)
  config.batch_size = 512   # images per feature batch; a multiple of the device count

  config.probe = ml_collections.ConfigDict()
  # L2 weight decays λ tried (loss = mean CE + λ/2 ‖W‖² on standardised features).
  config.probe.weight_decays = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  # λ is chosen by 5-fold cross-validated top-1 (stable across seeds; a single 10 %
  # hold-out moved one encoder's result by 3 points on the CIFAR subset, issue 10).
  config.probe.folds = 5
  config.probe.holdout_fraction = 0.1  # only with folds <= 1: one random hold-out
  config.probe.max_iter = 1000         # L-BFGS iterations at most (per λ)
  config.probe.tol = 1e-5              # stop when the gradient norm falls below this

  # Weighted kNN classifier (InstDisc / solo-learn): cosine similarity, votes exp(s / T)
  # over the k nearest train features; top-1 per k on the test split.
  config.knn = ml_collections.ConfigDict()
  config.knn.ks = (20, 200)
  config.knn.temperature = 0.07
  # Repeated stratified k-fold over train + test pooled (palm_jax/evaluation/cv_probe.py):
  # every labelled image tested once per repeat, the probe's weight decay chosen inside
  # each training fold. 0 repeats = off (full CIFAR's 10k-image test split resolves the
  # probe to ~0.5 points already); the CIFAR subsets need it (1,017 test images: ~1.5).
  config.cv = ml_collections.ConfigDict()
  config.cv.folds = 5
  config.cv.repeats = 0
  config.cv.images = "all"   # "train": the training split alone (choose settings blind to test)

  # Weights & Biases (optional): with log.wandb=True the numbers join the summary of the W&B
  # run RUN_DIR's training logged to (its id, project and entity in RUN_DIR/wandb_run.json).
  config.log = wandb_log.config_fields()

  if arg == "smoke":
    config.data.train = f"npz:{SHARED}/cifar10_train_partial.npz"
    config.data.test = f"npz:{SHARED}/cifar10_test_partial.npz"
    config.data.limit = 512
    config.encoder.stage_sizes = (1, 1)
    config.encoder.width = 8
    config.batch_size = 128
    config.probe.max_iter = 100
    config.cv.repeats = 1
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; give none, or ':smoke' for the tiny "
                     "variant.")
  return config
