r"""A tiny conditional GAN run on CPU (well under 2 minutes): checks the whole `gan` job.

    python -m palm_jax.main --config=configs/gan_smoke.py --workdir=/tmp/gan_smoke

Data: the shared real CIFAR-10 subset (`../shared/data/cifar_subset/
cifar10_train_partial.npz`, resized to 16x16) when it sits beside the checkout, otherwise
a generated toy set (`synthetic:512`: one coloured disc hue per class), so it runs on a
fresh machine. Tiny networks (16x16, 32 channels), float32, 192 batches of 16 (3 kimg)
with ADA, R1 every 4 batches and G_ema; samples, a checkpoint and DIR/generator.npz at the
end. Fields are documented in configs/gan_cifar10.py.
"""
import importlib.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.path.join(_HERE, "..", "..", "shared", "data", "cifar_subset",
                       "cifar10_train_partial.npz")


def get_config():
  spec = importlib.util.spec_from_file_location("gan_cifar10",
                                                os.path.join(_HERE, "gan_cifar10.py"))
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  config = base.get_config()
  config.data = (f"npz:{os.path.normpath(_SHARED)}" if os.path.exists(_SHARED)
                 else "synthetic:512")
  config.num_classes = 10
  config.resolution = 16
  config.total_kimg = 3.072         # 192 batches of 16
  config.batch_size = 16
  config.z_dim = 32
  config.w_dim = 32
  config.channel_base = 512         # 32 channels at 16x16, 8x8, 4x4
  config.channel_max = 32
  config.num_fp16_res = 0
  config.dtype = "float32"
  config.mbstd_group = 4
  config.d_map_layers = 2
  config.d_reg_interval = 4
  config.ema_kimg = 0.5
  config.ada_interval = 2
  config.ada_kimg = 2.0             # p reacts within the short run
  config.log_every_kimg = 0.256
  config.sample_every_kimg = 1.536
  config.checkpoint_every_kimg = 1.536
  config.sample_cols = 6
  return config
