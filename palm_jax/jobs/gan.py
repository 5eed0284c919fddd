"""`config.job = "gan"`: train a StyleGAN2-ADA generator (palm_jax.gan.train; configs/gan_*.py)."""
from __future__ import annotations

from palm_jax.gan import train as gan_train

CONFIG = "configs/gan_cifar10.py"
# Read without a default by palm_jax.gan.train (checked by jobs.run_job before anything runs).
REQUIRED = (
    "seed", "data", "data_limit", "resolution", "num_classes", "cond", "mirror", "batch_size",
    "total_kimg", "lr", "beta2", "dtype", "z_dim", "w_dim", "map_layers", "channel_base",
    "channel_max", "conv_clamp", "num_fp16_res", "style_mixing", "pl_weight", "g_reg_interval",
    "d_architecture", "d_map_layers", "mbstd_group", "mbstd_channels", "r1_gamma",
    "d_reg_interval", "ema_kimg", "ema_rampup", "aug", "augpipe", "augment_p", "ada_target",
    "ada_interval", "ada_kimg", "fid", "nan_patience", "keep_checkpoints", "log_every_kimg",
    "sample_every_kimg", "checkpoint_every_kimg", "sample_cols", "sample_max_rows")


def run(config, workdir: str) -> str:
  """Trains (or resumes) the GAN; returns the exported generator's path."""
  return gan_train.train_gan(config, workdir)
