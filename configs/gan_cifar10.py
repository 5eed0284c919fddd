r"""Conditional StyleGAN2-ADA on CIFAR-10: NVIDIA's `cifar` configuration.

    python -m palm_jax.main --config=configs/gan_cifar10.py --workdir=DIR

The exported generator lands at DIR/generator.npz; a PALM run takes it with
`--config.generator=DIR/generator.npz`. Rerunning the same command resumes. Numbers are
stylegan2-ada-pytorch `train.py --cfg=cifar --cond=1` (cfg_specs 'cifar': ref_gpus 2, kimg
100000, mb 64, mbstd 32, fmaps 1, lrate 0.0025, gamma 0.01, ema 500, ramp 0.05, map 2;
D architecture 'orig', no path-length regularisation, no style mixing; ADA 'bgc' with
target 0.6). The official run takes 100,000 kimg (about two weeks on 2 V100s); cut it with
`--config.total_kimg=...`. Data on a fresh machine without TFDS data: e.g.
`--config.data=npz:../shared/data/cifar_subset/cifar10_train_partial.npz`.
`--config.fid.inception=/path/pt_inception-2015-12-05-6726825d.pth` adds FID/KID logging.
"""
import ml_collections

from palm_jax.runtime import wandb_log


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.job = "gan"            # palm_jax.main dispatches to palm_jax.gan.train
  config.seed = 0               # one root key: init, data order, latents, augmentation
  config.num_devices = 0        # 0 = every visible device; the batch is split over them

  # Data.
  config.data = "tfds:cifar10:train"  # dataset spec (palm_jax/data), or synthetic:<N>
  config.data_limit = 0         # > 0: keep only the first N images
  config.resolution = 32        # images are resized to this side (a power of two)
  config.cond = True            # class-conditional (labels as one-hot c)
  config.num_classes = 0        # c_dim; 0 = from the dataset
  config.mirror = False         # x-flip reals half the time (NVIDIA --mirror)

  # Length and batch.
  config.total_kimg = 100000.0  # thousands of real images shown to D
  config.batch_size = 64        # global batch (NVIDIA mb); a multiple of the device count

  # Generator (official Generator keywords).
  config.z_dim = 512            # latent size
  config.w_dim = 512            # intermediate latent size
  config.map_layers = 2         # mapping network depth (cfg 'cifar': map=2)
  config.channel_base = 32768   # fmaps 1 * 32768: channels = min(base / res, max)
  config.channel_max = 512      # so 512 channels at every CIFAR resolution
  config.num_fp16_res = 4       # top resolutions computing in `dtype` (NVIDIA: fp16)
  config.conv_clamp = 256.0     # clamp conv outputs to +-256 (as NVIDIA with fp16)
  config.dtype = "bfloat16"     # compute dtype of G and D ("float32" for exactness)

  # Discriminator.
  config.d_architecture = "orig"  # 'orig' for cifar (NVIDIA default elsewhere: 'resnet')
  config.mbstd_group = 32       # minibatch-std group size (cfg 'cifar': mbstd=32)
  config.mbstd_channels = 1     # minibatch-std feature maps
  config.d_map_layers = 8       # depth of D's class-embedding mapping network (default)

  # Optimisation and losses.
  config.lr = 0.0025            # Adam learning rate for G and D
  config.beta2 = 0.99           # Adam beta2 (beta1 = 0)
  config.r1_gamma = 0.01        # R1 weight gamma (cfg 'cifar': gamma=0.01)
  config.d_reg_interval = 16    # lazy R1 every 16 batches
  config.g_reg_interval = 4     # lazy G reg every 4 batches (also sets G's Adam correction)
  config.pl_weight = 0.0        # path-length regularisation (off for cifar)
  config.style_mixing = 0.0     # style-mixing probability (off for cifar)
  config.ema_kimg = 500.0       # G_ema half-life in kimg (cfg 'cifar': ema=500)
  config.ema_rampup = 0.05      # half-life at most 5% of images seen (0 = no ramp-up)

  # Augmentation (ADA).
  config.aug = "ada"            # 'ada' (adaptive p), 'fixed' (p = augment_p), 'noaug'
  config.augpipe = "bgc"        # blit + geometric + colour (palm_jax/gan/augment.py)
  config.augment_p = 0.0        # initial / fixed augmentation probability
  config.ada_target = 0.6       # target E[sign(D(real))]
  config.ada_interval = 4       # adjust p every 4 batches
  config.ada_kimg = 500.0       # p can move by 1 in this many kimg

  # Logging, samples, checkpoints.
  config.log_every_kimg = 4.0          # metrics.jsonl/TensorBoard (NVIDIA's tick)
  config.sample_every_kimg = 200.0     # samples/fakes<kimg>.png
  config.sample_cols = 10              # images per class row
  config.sample_max_rows = 100         # rows (= classes; unconditional: this many rows)
  config.checkpoint_every_kimg = 200.0  # checkpoint + generator.npz export
  config.keep_checkpoints = 2          # checkpoints kept on disk
  config.nan_patience = 100            # stop after this many NaN/Inf steps in a row
  # Weights & Biases, off (palm_jax/runtime/wandb_log.py; README "Weights & Biases"): the
  # metrics and sample grids of TensorBoard; --config.log.wandb=True turns it on.
  config.log = wandb_log.config_fields()

  # FID/KID of G_ema against the training images (needs a local Inception weight file).
  config.fid = ml_collections.ConfigDict()
  config.fid.inception = ""     # pt_inception-2015-12-05-6726825d.pth or .npz; "" = off
  config.fid.every_kimg = 1000.0  # how often
  config.fid.num_gen = 10000    # generated images per evaluation
  config.fid.num_real = 50000   # training images for the reference statistics
  config.fid.batch_size = 250   # Inception batch
  return config
