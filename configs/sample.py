r"""A class-by-sample image grid of a generator (rows = classes).

    python -m palm_jax.main --config=configs/sample.py --workdir=DIR \
        --config.generator=nvidia:cifar10        # or a .pkl / .pt / .npz path

Writes DIR/samples.png; with --config.episodes=N also DIR/episodes.png (N random-action
episodes of the latent world) and DIR/episodes.json (how much its frames change).
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.job = "sample"
  c.seed = 0                       # latents are drawn from this seed
  c.generator = "nvidia:cifar10"   # a .pkl/.pt/.pth/.npz path, nvidia:cifar10, or "random"
  c.generator_kwargs = ml_collections.ConfigDict()  # official Generator kwargs for "random"
  c.generator_dtype = "float32"    # compute dtype ("bfloat16" is faster on accelerators)
  c.gan = ml_collections.ConfigDict()  # unused here (the palm job's train-first option)
  c.rows = 10                      # classes shown (the first `rows`), one per row
  c.cols = 10                      # samples per class
  c.truncation_psi = 1.0           # truncation (1 = none)
  c.noise_mode = "const"           # "const", "random" or "none"
  # > 0: also DIR/episodes.png (this many random-action episodes of the latent world, one
  # per row) and DIR/episodes.json (how much consecutive frames change); dynamics below.
  c.episodes = 0
  c.env = ml_collections.ConfigDict()
  c.env.alpha = 0.5                # as configs/cifar10.py
  c.env.beta = 0.95
  c.env.episode_length = 20
  c.env.action_scale = 1.0
  c.env.latent_space = "z"
  return c
