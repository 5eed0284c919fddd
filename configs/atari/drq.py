r"""DrQ(ε) on one Atari 100k game: 100k agent steps, then 100 evaluation games.

    python -m palm_jax.main --config=configs/atari/drq.py:pong --workdir=/tmp/drq_pong
    # PALM + DrQ: the encoder of a PALM run on the game's generator
    python -m palm_jax.main --config=configs/atari/drq.py:pong --workdir=/tmp/palm_drq_pong \
        --config.encoder_init=palm --config.encoder_workdir=/tmp/palm_pong
    # the 26-game × 5-seed grid and its results.md (see README "Atari 100k")
    python -m palm_jax.jobs.atari100k_grid --config=configs/atari/drq.py --workdir=/tmp/a100k

The argument is the game (any spelling: pong, ms_pacman, MsPacman), required: without
one the job refuses to start and lists the games (the grid sets `game` per cell, so it
takes the file bare). `<game>,tiny` is the few-hundred-step variant the tests run. Every
agent field is DrQ_eps.gin's (google/dopamine labs/atari_100k/configs/DrQ_eps.gin; see
palm_jax/agents/drq.py for each source).
"""
import ml_collections

from palm_jax.runtime import wandb_log


def get_config(arg: str | None = None):
  game, *variant = (arg or "").split(",")
  c = ml_collections.ConfigDict()
  c.job = "atari100k"
  c.game = game                       # envs.atari.ATARI_100K_GAMES; "" (no :<game>): refused
  c.seed = 0
  c.total_env_steps = 100_000         # agent steps = 400k frames (Kaiser et al. 2019)
  c.num_envs = 1                      # Dopamine's Atari 100k runner plays one environment
  c.eval_episodes = 100               # MaxEpisodeEvalRunner.num_eval_episodes (DrQ_eps.gin)
  c.eval_num_envs = 10                # evaluation games played side by side (10 each)
  c.eval_max_env_steps = 0            # >0: stop evaluating after this many env steps (CPU runs)
  c.log_every = 1_000                 # agent steps between metric lines
  c.checkpoint_every = 10_000         # agent steps between checkpoints (0: only at the end)
  c.checkpoint_keep = 2               # newest checkpoints kept (each holds the replay)
  c.policy = "drq"                    # "random": no training, score uniform random actions
  # Weights & Biases, off (README "Weights & Biases"): the metric lines, and the score as the
  # run's summary; --config.log.wandb=True turns it on.
  c.log = wandb_log.config_fields()
  # Environment (palm_jax/envs/atari.py; each convention cited there).
  c.terminal_on_life_loss = True      # AtariPreprocessing.terminal_on_life_loss
  c.noop_max = 0                      # Dopamine's Atari 100k uses no no-op starts
  c.max_episode_steps = 27_000        # Runner.max_steps_per_episode (108k frames)
  c.repeat_action_probability = 0.0   # no sticky actions in Atari 100k
  # Encoder: "random" (DrQ) or "palm" (PALM + DrQ: restore_encoder(encoder_workdir)).
  c.encoder_init = "random"
  c.encoder_workdir = ""
  c.freeze_encoder = False            # True: only the Q head learns
  # DrQ(ε) hyperparameters (palm_jax.agents.drq.DrQConfig; DrQ_eps.gin values).
  c.agent = ml_collections.ConfigDict(dict(
      gamma=0.99, update_horizon=10, min_replay_history=1_600, update_period=1,
      target_update_period=1, epsilon_train=0.01, epsilon_eval=0.001,
      epsilon_decay_period=5_000, learning_rate=1e-4, adam_eps=1.5e-4, batch_size=32,
      replay_capacity=1_000_000, data_augmentation=True, image_pad=4,
      intensity_scale=0.05, huber_delta=1.0, double_dqn=True))
  if "tiny" in variant:               # tests: a few hundred emulator steps, 36 updates
    c.total_env_steps = 60
    c.eval_episodes = 1
    c.eval_num_envs = 1               # the training act program's shape: no second compile
    c.eval_max_env_steps = 60
    c.max_episode_steps = 30
    c.log_every = 20
    c.checkpoint_every = 20
    c.agent.min_replay_history = 24
    c.agent.epsilon_decay_period = 20
    c.agent.batch_size = 4
    c.agent.update_horizon = 3
  return c
