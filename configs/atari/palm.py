r"""PALM on an Atari game's unconditional generator: pretrain DrQ's conv torso (Table 2).

    # 1. frames of the game, 2. an unconditional StyleGAN2 on them (see configs/atari/gan.py)
    python -m palm_jax.main --config=configs/atari/gan.py:pong --workdir=/tmp/gan_pong
    # 3. PALM in that generator's latent manifold
    python -m palm_jax.main --config=configs/atari/palm.py:pong --workdir=/tmp/palm_pong \
        --config.generator=/tmp/gan_pong/generator.npz
    # 4. DrQ finetuning from the encoder (restore_encoder(/tmp/palm_pong))
    python -m palm_jax.main --config=configs/atari/drq.py:pong --workdir=/tmp/palm_drq_pong \
        --config.encoder_init=palm --config.encoder_workdir=/tmp/palm_pong

The argument is the game; `<game>,tiny` is the variant the tests run (a random 1-channel
generator, 16 environments, a few hundred steps); `<game>,cpu` the CPU end-to-end run of
BENCHMARKS.md (32 environments, 3,200 steps, small heads; pass --config.generator). With `config.generator = ""`
the run trains the game's generator first into WORKDIR/gan (the `gan` section, which is
configs/atari/gan.py:<game>).

What differs from the CIFAR run (configs/cifar10.py, whose every other field — alpha 0.5,
beta 0.95, episodes of 20, APT k = 12 with URLB's running-mean normalisation, SAC, SimSiam
on temporal pairs with SGD lr 0.03·B/256 — is kept, as issue 14 asks "SAC and the APT reward
exactly as in the CIFAR runs"):
  * 6M environment steps (the paper's Atari pretraining length, issue 14);
  * an unconditional generator (c_dim = 0: one "class");
  * observations are stacks of the last 4 frames, 84×84 grayscale, in the env state
    (`env.frame_stack = 4`; palm_jax/envs/frame_stack_env.py; Dopamine's stack_size 4);
  * the encoder is DrQ's conv torso (`simsiam.encoder = "atari"`, 7744 features), so the
    PALM encoder loads into DrQ(ε) unchanged;
  * the replay holds 131,072 stacks (28 KB each: 3.7 GB, about what CIFAR's 1M 32×32 RGB
    frames take) — stacks are 9× a CIFAR frame;
  * no CIFAR linear probe at the end (`eval.train = ""`): the encoder is judged by DrQ.
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent


def get_config(arg: str = "pong"):
  game, *variant = arg.split(",")
  c = runpy.run_path(str(_HERE.parent / "cifar10.py"))["get_config"]()
  c.game = game                   # the Atari game the generator was trained on (a label)
  c.total_env_steps = 6_000_000   # the paper's Atari pretraining length
  c.generator = ""                # a generator.npz from configs/atari/gan.py, or "" =
  c.gan = runpy.run_path(str(_HERE / "gan.py"))["get_config"](arg)  # train it first
  c.env.frame_stack = 4           # stacks of 4 frames, 84x84 grayscale (Atari agents' input)
  c.simsiam.encoder = "atari"     # DrQ's conv torso (palm_jax/models/atari_encoder.py)
  c.replay.capacity = 131_072     # stacks kept (32 slots of 4096 envs; 3.7 GB)
  c.log.explore_envs = 64         # exploration metrics (policy vs uniform APT reward)
  c.eval.train = ""               # no CIFAR probe: the encoder is evaluated by DrQ(ε)
  c.eval.test = ""
  if "cpu" in variant:            # the CPU end-to-end run (BENCHMARKS.md); give a generator
    c.total_env_steps = 32 * 100  # 100 iterations of 32 environments
    c.generator_dtype = "float32"
    c.env.num_envs = 32
    c.agent.warmup_env_steps = 32 * 10
    c.agent.updates_per_step = 1
    c.agent.actor_hidden = (256, 256)
    c.agent.critic_hidden = (256, 256)
    c.agent.dtype = "float32"
    c.batch_size = 32
    c.simsiam.proj_hidden_dim = 256
    c.simsiam.proj_dim = 256
    c.simsiam.pred_hidden_dim = 64
    c.simsiam.dtype = "float32"
    c.replay.capacity = 32 * 64
    c.replay.action_dtype = "float32"
    c.log.chunk_iterations = 10
    c.log.rollout_every_chunks = 5
    c.log.rollout_rows = 4
    c.log.explore_envs = 0
    c.checkpoint.every_chunks = 5
  if "tiny" in variant:           # tests: every moving part, tiny sizes
    c.total_env_steps = 16 * 12   # 12 iterations of 16 environments
    c.generator = "random"        # an untrained unconditional single-channel generator
    c.generator_kwargs = dict(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=8, conv_clamp=256))
    c.generator_dtype = "float32"
    c.env.num_envs = 16
    c.env.episode_length = 5
    c.agent.warmup_env_steps = 16 * 4
    c.agent.updates_per_step = 1
    c.agent.actor_hidden = (16,)
    c.agent.critic_hidden = (16,)
    c.agent.dtype = "float32"
    c.batch_size = 16
    c.reward.k = 4
    c.simsiam.proj_hidden_dim = 16
    c.simsiam.proj_dim = 16
    c.simsiam.pred_hidden_dim = 8
    c.simsiam.dtype = "float32"
    c.replay.capacity = 16 * 8
    c.replay.action_dtype = "float32"
    c.log.chunk_iterations = 6
    c.log.rollout_every_chunks = 2
    c.log.rollout_rows = 2
    c.log.explore_envs = 0
    c.checkpoint.every_chunks = 1
  return c
