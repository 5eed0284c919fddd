r"""Conditional StyleGAN2-ADA on CIFAR-100: the official `cifar` setup with c_dim 100.

    python -m palm_jax.main --config=configs/gan_cifar100.py --workdir=DIR

NVIDIA publishes no CIFAR-100 generator; this trains one (DIR/generator.npz, the
`load_generator` format; rerunning resumes). Every field is `configs/gan_cifar10.py`'s
(documented there) except the data and the 100 classes. Small-data check on a fresh
machine: `--config.data=npz:../shared/data/cifar_subset/cifar100_train_partial.npz`
(486 images; num_classes stays 100 although not every class occurs there).
"""
import importlib.util
import os


def get_config():
  spec = importlib.util.spec_from_file_location(
      "gan_cifar10", os.path.join(os.path.dirname(os.path.abspath(__file__)), "gan_cifar10.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  config = base.get_config()
  config.data = "tfds:cifar100:train"  # fine labels, 50,000 images
  config.num_classes = 100             # c_dim = 100, even if a subset lacks some classes
  config.sample_cols = 8               # 100 rows x 8 columns per sample grid
  return config
