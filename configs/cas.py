r"""Classification accuracy score of conditional generators (palm_jax/evaluation/cas.py).

    python -m palm_jax.main --config=configs/cas.py --workdir=runs/cas \
        --config.generators=../shared/data/generators/cifar10_subset_g64/generator.npz,OTHER.npz

CAS: a classifier trained on each generator's class-conditional samples, tested on the real
CIFAR-10 test subset; reverse: one trained on the real train subset, labelling the samples;
real: trained and tested on real images. Classifiers: `linear` (logistic regression on
pixels) and `cnn` (a small convnet, fixed recipe). About 3 min per generator on one CPU
core with both. `:smoke` is a seconds-long variant (tests).
"""
import pathlib

import ml_collections

_SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg`: None, or "smoke" for a tiny run."""
  c = ml_collections.ConfigDict()
  c.job = "cas"
  c.seed = 0
  # Comma-separated generator weight files (.npz / .pkl / .pt), conditional, same classes
  # and resolution as the data.
  c.generators = str(_SHARED / "generators" / "cifar10_subset_g64" / "generator.npz")
  c.data = ml_collections.ConfigDict()
  c.data.train = f"npz:{_SHARED / 'cifar_subset' / 'cifar10_train_partial.npz'}"
  c.data.test = f"npz:{_SHARED / 'cifar_subset' / 'cifar10_test_partial.npz'}"
  c.data.image_size = 32
  c.data.limit = 0
  c.data.tfds_data_dir = ""
  c.data.download = True
  c.num_per_class = 500        # samples per class (the real train subset has ~517)
  c.classifiers = ("linear", "cnn")
  c.cnn_steps = 1500           # Adam steps of batch 128 for the cnn classifier (~37 epochs)
  c.linear_max_iter = 300      # L-BFGS iterations per fit of the pixel classifier
  if arg == "smoke":
    c.num_per_class = 20
    c.data.limit = 300
    c.cnn_steps = 20
    c.linear_max_iter = 20
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; give none or ':smoke'.")
  return c
