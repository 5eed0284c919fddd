r"""Coverage of the training set by generated images (paper Section 6, Table 3).

    python -m palm_jax.main --config=configs/coverage.py --workdir=PALM_RUN_DIR \
        --config.data.train=npz:../shared/data/cifar_subset/cifar10_train_partial.npz \
        --config.inception=/path/pt_inception-2015-12-05-6726825d.pth

Compares N uniformly sampled generator images and N frames of the run's policy rollouts
with N real training images: coverage = distinct nearest training images / N. The paper
(Table 3, CIFAR-10, Inception features) reports 50.16 % (uniform) and 58.87 % (PALM).
A run's experience log (`config.experience.log=True`: every frame the agent saw over the
whole run): add `framelog:PALM_RUN_DIR` (N frames evenly spaced over the log). Frames from
elsewhere: add `npz:/path/frames.npz` (an `images` array, uint8 [N, H, W, 3]). `:smoke` runs in seconds on
the shared CIFAR subset with a tiny random generator and pixel features.
Writes PALM_RUN_DIR/eval/coverage_<features>.json and coverage_<features>_<source>.png.
"""
import pathlib

import ml_collections

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar_subset"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg`: None for the defaults, "smoke" for a tiny run on the shared CIFAR subset."""
  c = ml_collections.ConfigDict()
  c.job = "coverage"   # which job palm_jax.main runs
  c.seed = 0           # the real subset, latents, rollout keys, random encoder
  # N: generated images per source = real training images (10k: the size of FID's usual
  # sample; the paper does not state its N).
  c.num_images = 10000
  c.sources = "uniform,palm"   # comma-separated: uniform | palm | framelog:RUN | npz:...

  c.data = ml_collections.ConfigDict()
  c.data.train = "tfds:cifar10:train"  # the real training images (spec; palm_jax/data)
  c.data.image_size = 32               # every image is compared at this side
  c.data.limit = 0                     # > 0: read only the first `limit` training images
  c.data.tfds_data_dir = ""
  c.data.download = True

  # The PALM run whose generator (uniform) and policy (palm) are used; "" = --workdir.
  c.run = ""
  c.run_step = -1      # the run's checkpoint to roll out (-1 = the latest)
  # Which frames of each `palm` rollout: "all" (every frame: what the agent's experience
  # holds; consecutive frames are near-duplicates) or "last" (one per episode: where the
  # policy steered to, N independent episodes like uniform's N independent samples).
  c.palm_frames = "all"
  # A generator to use instead of the run's ("" = the run's): a file, nvidia:cifar10, or
  # "random" with generator_kwargs. Without a run, `env` below sets how it is sampled.
  c.generator = ""
  c.generator_kwargs = ml_collections.ConfigDict()
  c.generator_dtype = "float32"
  c.env = ml_collections.ConfigDict()  # configs/cifar10.py's values; a run uses its own
  c.env.latent_space = "z"
  c.env.noise_mode = "const"
  c.env.truncation_psi = 1.0
  c.env.alpha, c.env.beta, c.env.action_scale, c.env.episode_length = 0.5, 0.95, 1.0, 20

  # Feature space: "inception" (the paper; FID's weights file below), "encoder" (a run's
  # checkpointed encoder, or random with encoder_init=random) or "pixels".
  c.features = "inception"
  c.inception = ""     # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or .npz)
  c.encoder_run = ""   # whose encoder (features=encoder); "" = config.run / --workdir
  c.step = -1          # that encoder's checkpoint step (-1 = latest)
  c.encoder_init = "checkpoint"   # "checkpoint" | "random"
  c.encoder = ml_collections.ConfigDict()  # ResNet kwargs of a random encoder
  c.encoder.stage_sizes = (2, 2, 2, 2)
  c.encoder.width = 64
  c.dtype = "float32"
  c.batch_size = 500   # images per feature batch

  c.nn = ml_collections.ConfigDict()
  c.nn.query_tile = 1024   # generated rows per device call (split over devices)
  c.nn.ref_tile = 4096     # training rows per scan step: distances live in [1024, 4096]

  if arg == "smoke":
    c.num_images = 256
    c.data.train = f"npz:{SHARED}/cifar10_train_partial.npz"
    c.sources = "uniform"
    c.generator = "random"
    c.generator_kwargs = dict(
        z_dim=16, c_dim=4, w_dim=16, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=16, conv_clamp=256))
    c.features = "pixels"
    c.encoder.stage_sizes = (1, 1)
    c.encoder.width = 8
    c.batch_size = 128
    c.nn.query_tile, c.nn.ref_tile = 128, 96
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; give none, or ':smoke' for the tiny "
                     "variant (e.g. --config=configs/coverage.py:smoke).")
  return c
