r"""PALM on CIFAR-100: trains its own conditional generator first, then explores it.

    python -m palm_jax.main --config=configs/cifar100.py --workdir=runs/palm_cifar100

NVIDIA publishes no CIFAR-100 StyleGAN2-ADA, so with `generator = ""` the job first runs
the `gan` job (configs/gan_cifar100.py, the official `cifar` setup with 100 classes) into
WORKDIR/gan/ — resumable like everything else; rerun the same command after a stop — and
then pretrains on WORKDIR/gan/generator.npz. To reuse a generator you trained already:
`--config.generator=DIR/generator.npz`. Shorten the GAN with `--config.gan.total_kimg=...`.
Everything else is configs/cifar10.py (the paper's defaults).
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent


def get_config():
  c = runpy.run_path(str(_HERE / "cifar10.py"))["get_config"]()
  c.generator = ""                                   # train one into WORKDIR/gan first
  c.gan = runpy.run_path(str(_HERE / "gan_cifar100.py"))["get_config"]()
  c.eval.train = "tfds:cifar100:train"               # linear probe on CIFAR-100 at the end
  c.eval.test = "tfds:cifar100:test"
  return c
