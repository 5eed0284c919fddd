r"""An unconditional single-channel StyleGAN2 on one Atari game's frames (PALM, Table 2).

    # frames: collected with the collect job (a frame log) ...
    python -m palm_jax.main --config=configs/atari/collect.py:pong --workdir=/tmp/frames_pong
    python -m palm_jax.main --config=configs/atari/gan.py:pong --workdir=/tmp/gan_pong \
        --config.data=framelog:/tmp/frames_pong/frames
    # ... or the DQN Replay Dataset's files (gs://atari-replay-datasets/dqn/Pong/1/...)
    python -m palm_jax.main --config=configs/atari/gan.py:pong --workdir=/tmp/gan_pong \
        --config.data=dqn_replay:/data/dqn/Pong/1/replay_logs

Frames are STREAMED (palm_jax/data/frame_stream.py): a bounded buffer of shards is
resident, never the dataset (50M frames per game are 350 GB).

Resolution: 64×64. The 84×84 frames are area-downsampled to 64 for training, and the
PALM environment bilinearly upsamples the generator's 64×64 output back to 84×84
(palm_jax/envs/frame_stack_env.py). StyleGAN2 needs a power of two; padding to 128 would
spend (128² − 84²)/128² = 57% of every layer's pixels on constant borders and cost ~4× the
compute of 64 per image (one more synthesis block at 4× the pixels), which the CPU/GPU
budgets of this project cannot carry; 64 keeps 58% of the pixel count (64²/84²) and Atari
screens are low-detail (sprites a few pixels wide at 84, still ≥ 1.5 px at 64).

Networks: NVIDIA's `auto` configuration at 64×64 with a batch of 64 (stylegan2-ada-pytorch
train.py cfg_specs['auto']: fmaps 0.5 → channel_base 16384, max 512; lrate 0.0025;
γ = 0.0002·res²/mb = 0.0128; ema = mb·10/32 = 20 kimg; ramp 0.05; map 2; mbstd 4; D
'resnet'), for 25,000 kimg (its default length).
ADA is off by default: the training set is millions of frames,
the regime ADA's authors show needs no augmentation (Karras et al. 2020, Fig. 1: ADA helps
below ~100k images), and its geometric/colour ops would teach the generator shifted or
re-tinted screens that a game never shows. `aug="ada"` turns it back on.

`<game>,tiny` is the test variant (16×16, tiny networks, a few hundred images);
`<game>,cpu` the CPU end-to-end run of BENCHMARKS.md (64×64, 32-64 channels, 4 kimg).
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent


def get_config(arg: str = "pong"):
  game, *variant = arg.split(",")
  c = runpy.run_path(str(_HERE.parent / "gan_cifar10.py"))["get_config"]()
  c.game = game                   # a label: the frames decide what is learned
  # framelog:<dir> (palm_jax.data.frame_log, the collect job's output) or
  # dqn_replay:<replay_logs dir>[:<first ckpt>-<last ckpt>] (palm_jax.data.dqn_replay).
  c.data = f"framelog:/tmp/frames_{game}/frames"
  c.stream_buffer = 65_536        # frames resident at once (a shuffle buffer of shards)
  c.resolution = 64               # 84x84 -> 64x64 (see above)
  c.img_channels = 1              # grayscale, as the agent sees the game
  c.cond = False                  # unconditional: c_dim = 0
  c.num_classes = 0
  c.mirror = False                # a mirrored game screen is not a game screen
  c.total_kimg = 25_000.0         # cfg 'auto': kimg=25000
  c.batch_size = 64
  c.z_dim = 512
  c.w_dim = 512
  c.map_layers = 2                # cfg 'auto': map=2
  c.channel_base = 16384          # fmaps 0.5: 256 channels at 64x64, 512 below
  c.channel_max = 512
  c.r1_gamma = 0.0128             # NVIDIA 'auto': 0.0002 * 64^2 / 64
  c.ema_kimg = 20.0               # cfg 'auto': mb * 10 / 32
  c.d_architecture = "resnet"     # NVIDIA's default D (cifar alone uses 'orig')
  c.mbstd_group = 4               # NVIDIA default (min(4, batch))
  c.aug = "noaug"                 # see above; "ada" turns on adaptive augmentation
  c.sample_cols = 8
  c.sample_max_rows = 8           # unconditional: an 8x8 grid
  c.sample_every_kimg = 100.0
  c.checkpoint_every_kimg = 100.0
  if "cpu" in variant:           # the CPU end-to-end run (BENCHMARKS.md): 64x64, small nets
    c.stream_buffer = 16_384
    c.total_kimg = 4.0
    c.batch_size = 16
    c.z_dim = 64
    c.w_dim = 64
    c.channel_base = 2048         # 32 channels at 64x64, 64 at 32x32 and below
    c.channel_max = 64
    c.num_fp16_res = 0
    c.dtype = "float32"
    c.r1_gamma = 0.0512           # cfg 'auto' at mb 16: 0.0002 * 64^2 / 16
    c.ema_kimg = 5.0              # cfg 'auto' at mb 16: 16 * 10 / 32
    c.d_map_layers = 2
    c.log_every_kimg = 0.5
    c.sample_every_kimg = 2.0
    c.checkpoint_every_kimg = 2.0
  if "tiny" in variant:
    c.resolution = 16
    c.stream_buffer = 256
    c.total_kimg = 0.256          # 16 batches of 16
    c.batch_size = 16
    c.z_dim = 16
    c.w_dim = 16
    c.map_layers = 2
    c.channel_base = 256          # 16 channels at 16x16
    c.channel_max = 16
    c.num_fp16_res = 0
    c.dtype = "float32"
    c.d_map_layers = 2
    c.d_reg_interval = 4
    c.ema_kimg = 0.5
    c.log_every_kimg = 0.064
    c.sample_every_kimg = 0.256
    c.checkpoint_every_kimg = 0.128
    c.sample_cols = 4
    c.sample_max_rows = 4
  return c
