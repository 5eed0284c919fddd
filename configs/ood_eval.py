r"""Out-of-distribution detection with a PALM run's encoder (paper Table 1): AUROC per set.

    python -m palm_jax.main --config=configs/ood_eval.py --workdir=RUN_DIR \
        --config.data.train=npz:../shared/data/cifar_subset/cifar10_train_partial.npz \
        --config.data.test=npz:../shared/data/cifar_subset/cifar10_test_partial.npz \
        --config.data.ood=npz:../shared/data/cifar_subset/cifar100_test_partial.npz,interp

In-distribution is CIFAR-10 (the probe's training split, and the test split as positives);
the defaults are the paper's OOD sets through TFDS: SVHN, CIFAR-100, CelebA and Interp (a
bare `interp` = mean of pairs of in-distribution test images). LSUN has no 32×32 TFDS
split: add `folder:/path/to/LSUN_resize` (ODIN's resized test set, a flat image folder).
Scores: max softmax probability of the linear probe ("Standard") and kNN distance in
normalised feature space. `--config.encoder_init=random` gives the random-encoder floor.
Writes RUN_DIR/eval/ood.json ({set: {score: auroc}}), ood_details.json and ood_roc.png.
`--config=configs/ood_eval.py:smoke` runs in seconds on the shared CIFAR subsets.
"""
import ml_collections

SHARED = "../shared/data/cifar_subset"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg`: None for the defaults, "smoke" for a tiny run on the shared CIFAR subsets."""
  config = ml_collections.ConfigDict()
  config.job = "ood_eval"  # which job palm_jax.main runs
  config.seed = 0          # random-encoder init, held-out split, interp pairs

  config.data = ml_collections.ConfigDict()
  config.data.train = "tfds:cifar10:train"  # in-distribution training split (probe, kNN bank)
  config.data.test = "tfds:cifar10:test"    # in-distribution test split (the positives)
  # OOD sets (the negatives), comma-separated specs; "interp" = interp:<data.test>.
  config.data.ood = "tfds:svhn_cropped:test,tfds:cifar100:test,tfds:celeb_a:test,interp"
  config.data.image_size = 32   # images are centre-cropped and resized to this side
  config.data.limit = 0         # > 0: keep only the first `limit` images of every set
  config.data.tfds_data_dir = ""  # TFDS data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
  config.data.download = True   # let TFDS prepare missing data (needs tensorflow + internet)

  config.step = -1                  # checkpoint step to evaluate (-1 = the latest)
  config.encoder_init = "checkpoint"  # "checkpoint" (random if RUN_DIR has none) | "random"
  # ResNet keyword arguments used when the encoder is randomly initialised (a checkpoint
  # carries its own): CIFAR ResNet-18.
  config.encoder = ml_collections.ConfigDict()
  config.encoder.stage_sizes = (2, 2, 2, 2)  # BasicBlocks per stage
  config.encoder.width = 64                  # stem/first-stage channels (features = 8·width)
  config.dtype = "float32"  # encoder compute dtype for features ("bfloat16" on GPU/TPU)
  config.batch_size = 512   # images per feature / kNN batch; a multiple of the device count

  config.knn_k = 50  # the k of the kNN score (Sun et al. 2022 use 50 for CIFAR-10)

  config.probe = ml_collections.ConfigDict()  # the linear head whose softmax gives "msp"
  # L2 weight decays λ tried (loss = mean CE + λ/2 ‖W‖² on standardised features).
  config.probe.weight_decays = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  config.probe.holdout_fraction = 0.1  # share of the training split that chooses λ
  config.probe.max_iter = 1000         # L-BFGS iterations at most (per λ)
  config.probe.tol = 1e-5              # stop when the gradient norm falls below this

  if arg == "smoke":
    config.data.train = f"npz:{SHARED}/cifar10_train_partial.npz"
    config.data.test = f"npz:{SHARED}/cifar10_test_partial.npz"
    config.data.ood = f"npz:{SHARED}/cifar100_test_partial.npz,interp"
    config.data.limit = 512
    config.encoder.stage_sizes = (1, 1)
    config.encoder.width = 8
    config.batch_size = 128
    config.knn_k = 10
    config.probe.max_iter = 100
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use configs/ood_eval.py or "
                     "configs/ood_eval.py:smoke.")
  return config
