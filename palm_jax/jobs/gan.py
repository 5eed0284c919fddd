"""`config.job = "gan"`: train a StyleGAN2-ADA generator (palm_jax.gan.train; configs/gan_*.py)."""
from __future__ import annotations

from palm_jax.gan import train as gan_train


def run(config, workdir: str) -> str:
  """Trains (or resumes) the GAN; returns the exported generator's path."""
  return gan_train.train_gan(config, workdir)
