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
Every other field (data options, encoder, probe) is configs/linear_eval.py's.
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent


def get_config(arg: str | None = None):
  """`arg`: None for the defaults, "smoke" for a tiny run on the shared CIFAR subsets."""
  module = runpy.run_path(str(_HERE / "linear_eval.py"))
  config = module["get_config"](arg)
  config.job = "ood_eval"  # which job palm_jax.main runs
  del config.random_floor  # linear_eval's alone (ood_eval probes no random encoder)
  # OOD sets (the negatives), comma-separated specs; "interp" = interp:<data.test>.
  config.data.ood = "tfds:svhn_cropped:test,tfds:cifar100:test,tfds:celeb_a:test,interp"
  config.knn_k = 50  # the k of the kNN score (Sun et al. 2022 use 50 for CIFAR-10)
  if arg == "smoke":
    config.data.ood = f"npz:{module['SHARED']}/cifar100_test_partial.npz,interp"
    config.knn_k = 10
  return config
