r"""Collect an Atari game's frames for its GAN (`config.job = "collect"`).

    python -m palm_jax.main --config=configs/atari/collect.py:pong --workdir=/tmp/frames_pong
    python -m palm_jax.main --config=configs/atari/gan.py:pong --workdir=/tmp/gan_pong \
        --config.data=framelog:/tmp/frames_pong/frames

Writes WORKDIR/frames (a frame log of 84x84 grayscale observations and their action,
reward, terminal; palm_jax/atari/collect.py). Rerunning the same command completes an
interrupted collection exactly; raising total_frames extends it. `<game>,tiny` is the test
variant. The paper trained on the DQN Replay Dataset's 50M frames per game (collected by a
DQN agent, Agarwal et al. 2020): read those with the gan job's `dqn_replay:` data spec;
this job plays a uniform random policy by default (what is available offline here).
"""
import ml_collections


def get_config(arg: str = "pong"):
  game, *variant = arg.split(",")
  c = ml_collections.ConfigDict()
  c.job = "collect"
  c.game = game                      # an ale-py ROM id (any spelling, e.g. ms_pacman)
  c.seed = 0                         # shard s, emulator i is seeded by (seed, s, i)
  c.total_frames = 1_000_000         # frames to collect (rounded up to whole shards)
  c.num_envs = 16                    # emulators per shard
  c.frames_per_shard = 65_536        # = num_envs x 4096 agent steps; 460 MB per shard
  c.num_processes = 0                # workers playing shards in parallel (0 = every core)
  c.policy = "random"                # uniform over the minimal action set
  # Emulator conventions (palm_jax/envs/atari.py). Collection plays whole games as the DQN
  # Replay Dataset's agent did (Dopamine's atari_lib default: no terminal on life loss);
  # sticky actions 0.25 as in the dataset's Dopamine DQN runs (Machado et al. 2018).
  c.terminal_on_life_loss = False
  c.noop_max = 0
  c.max_episode_steps = 27_000       # 108k frames, Runner.max_steps_per_episode
  c.repeat_action_probability = 0.25
  if "tiny" in variant:              # tests: 3 shards of 2 emulators x 20 steps
    c.total_frames = 120
    c.num_envs = 2
    c.frames_per_shard = 40
    c.num_processes = 1
  return c
