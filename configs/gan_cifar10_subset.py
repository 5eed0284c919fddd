r"""The mini study's world: a small conditional StyleGAN2-ADA of the real CIFAR-10 subset.

    python -m palm_jax.main --config=configs/gan_cifar10_subset.py --workdir=DIR

The recipe of `../shared/data/generators/cifar10_subset_g64/` (its README and
config_gan.json): z 64, w 64, 2 mapping layers, 64 channels at every resolution, 32x32,
10 classes, float32, batch 32, x-flips, D 'orig' with minibatch-std groups of 4, R1 gamma
0.01, G_ema half-life 10 kimg, ADA 'bgc' (target 0.6, ada_kimg 100). That generator was
stopped at 111.6 kimg (about 60 s/kimg on one idle CPU core: ~2 h), so `total_kimg` is 112
here; a longer run (or a GPU, minutes) continues from the same workdir with a larger
`--config.total_kimg`. configs/mini.py trains this into WORKDIR/gan/ first when the shared
generator is not beside the checkout.
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent
SUBSET = _HERE.parent.parent / "shared" / "data" / "cifar_subset"


def get_config():
  c = runpy.run_path(str(_HERE / "gan_cifar10.py"))["get_config"]()
  c.data = f"npz:{SUBSET / 'cifar10_train_partial.npz'}"
  c.mirror = True
  c.total_kimg = 112.0
  c.batch_size = 32
  c.z_dim = 64
  c.w_dim = 64
  c.channel_base = 2048            # 64 channels at 32x32, 16x16, 8x8, 4x4
  c.channel_max = 64
  c.num_fp16_res = 0
  c.dtype = "float32"
  c.mbstd_group = 4
  c.ema_kimg = 10.0
  c.ada_kimg = 100.0
  c.log_every_kimg = 2.048
  c.sample_every_kimg = 16.384
  c.checkpoint_every_kimg = 8.192
  return c
