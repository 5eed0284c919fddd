r"""PALM on CIFAR-10: NVIDIA's published conditional StyleGAN2-ADA CIFAR-10 generator.

    python -m palm_jax.main --config=configs/cifar10.py --workdir=runs/palm_cifar10

The paper's defaults: ResNet-18 encoder, alpha 0.5, beta 0.95, APT with k = 12, SimSiam on
temporal pairs without augmentation, 50M environment steps. `configs/cifar100.py` and
`configs/smoke.py` start from this file and change a few fields; so can your own configs.
"""
import ml_collections

from palm_jax.runtime import wandb_log


def get_config():
  c = ml_collections.ConfigDict()
  c.job = "palm"                  # which job palm_jax.main runs
  c.seed = 0                      # the run's root PRNG seed (everything folds in from it)
  c.total_env_steps = 50_000_000  # environment steps (frames) to collect, all envs summed

  # The generator that renders the environment. "nvidia:cifar10" downloads NVIDIA's
  # published snapshot once to ~/.cache/palm_jax; a path loads .pkl/.pt/.pth/.npz; "random"
  # builds an untrained one from `generator_kwargs` (smoke tests); "" trains one first with
  # the `gan` section into WORKDIR/gan/ (configs/cifar100.py).
  c.generator = "nvidia:cifar10"
  c.generator_kwargs = ml_collections.ConfigDict()  # official Generator kwargs for "random"
  c.generator_dtype = "bfloat16"  # compute dtype of the generator ("float32" for reference)
  # Equivalent generator implementations (same images; `python -m palm_jax.bench suite`
  # times them): the 2x up-sampling conv as "polyphase" (one conv at input resolution) or
  # "transpose" (NVIDIA's order), and the modulation as "activations" (scale inputs) or
  # "weights" (NVIDIA's fused per-sample weights); either may be given per resolution,
  # e.g. "8:transpose,16:polyphase,32:polyphase".
  c.generator_up_impl = "polyphase"
  c.generator_modulation = "activations"
  c.gan = ml_collections.ConfigDict()  # the gan job's config, used when generator == ""

  c.env = ml_collections.ConfigDict()
  c.env.num_envs = 4096           # parallel environments (split over all devices)
  c.env.alpha = 0.5               # T_com: z' = alpha * a + (1 - alpha) * eps
  c.env.beta = 0.95               # T_ema: z_t = beta * z_{t-1} + (1 - beta) * z'
  c.env.episode_length = 20       # frames per episode (the reset frame included)
  c.env.latent_space = "z"        # "z" (the paper) or "w" (dynamics after the mapping)
  c.env.action_scale = 1.0        # actions in [-1, 1] are scaled by this before mixing
  c.env.noise_mode = "const"      # generator noise inputs: "const", "random" or "none"
  c.env.truncation_psi = 1.0      # truncation of the mapping network (1 = none)
  c.env.stagger = True            # start environments at random points of an episode
  # Render at most this many environments per generator call (a lax.map over slices, the
  # same images bit for bit) to bound the generator's memory; 0 = all in one call. Must
  # divide num_envs and be a multiple of the device count.
  c.env.render_chunk = 0

  c.agent = ml_collections.ConfigDict()
  c.agent.action_source = "policy"  # "policy" (SAC) or "random" (uniform; an ablation)
  c.agent.warmup_env_steps = 100_000  # uniformly random actions and no updates until then
  # The update-to-data ratio (palm_jax/palm/budget.py prints the resulting numbers at start).
  # 6 updates of 512 per iteration of 4096 envs: each frame is sampled 0.75 times and 50M
  # steps give 73,092 SimSiam updates = 748 epochs of 50k images, the closest whole number
  # to SimSiam's own CIFAR schedule (800 epochs = 78,125 updates of 512; Chen & He 2021),
  # which is what the encoder is compared with. The earlier 1 update per iteration gave
  # 12,200 updates (125 epochs, 0.125 samples per frame): an under-trained encoder. The
  # price is ~6x the update compute per env step (bench palm: --set agent.updates_per_step=1
  # for the loop-throughput figure of issue #3).
  c.agent.updates_per_step = 6    # (SimSiam + SAC) updates per iteration of all envs
  # The same knob as samples per frame (U * batch / num_envs): when set, it replaces
  # updates_per_step and must give a whole number of updates per iteration.
  c.agent.samples_per_frame = ml_collections.config_dict.placeholder(float)
  c.agent.actor_hidden = (1024, 1024)  # SAC actor MLP widths
  c.agent.critic_hidden = (1024, 1024)  # SAC critic MLP widths (twin critics)
  c.agent.actor_lr = 3e-4         # Adam learning rate of the actor
  c.agent.critic_lr = 3e-4        # Adam learning rate of the critics
  c.agent.alpha_lr = 3e-4         # Adam learning rate of the temperature
  c.agent.gamma = 0.99            # discount
  c.agent.tau = 0.005             # Polyak rate of the target critics
  c.agent.init_alpha = 0.1        # initial temperature
  c.agent.target_entropy = ml_collections.config_dict.placeholder(float)  # unset: -|A|
  c.agent.dtype = "bfloat16"      # compute dtype of the actor/critic MLPs

  c.batch_size = 512              # transitions per update (SimSiam pairs and SAC batch)

  c.reward = ml_collections.ConfigDict()
  c.reward.k = 12                 # APT: neighbours in the kNN particle entropy
  c.reward.average = True         # mean of the k distances (else the k-th)
  c.reward.clip = 0.0             # distances below this count as 0
  c.reward.normalize = True       # divide distances by their running mean (URLB knn_rms)

  c.simsiam = ml_collections.ConfigDict()
  c.simsiam.stage_sizes = (2, 2, 2, 2)  # ResNet-18
  c.simsiam.width = 64            # ResNet base width (features: width * 8 = 512)
  c.simsiam.proj_hidden_dim = 2048  # projector: 2 layers of 2048 with BN
  c.simsiam.proj_dim = 2048
  c.simsiam.pred_hidden_dim = 512  # predictor 2048 -> 512 -> 2048
  c.simsiam.base_lr = 0.03        # lr = base_lr * batch_size / 256, cosine schedule
  # "cosine" (SimSiam) decays over the whole run, so a snapshot at step s is a point of
  # one long schedule; "constant" keeps lr_0, so a snapshot at s equals a run that
  # stopped at s: use it for curves over checkpoint.snapshot_steps (paper Fig. 6).
  c.simsiam.schedule = "cosine"
  c.simsiam.momentum = 0.9        # SGD momentum
  c.simsiam.weight_decay = 5e-4   # SGD weight decay
  c.simsiam.fix_pred_lr = False   # keep the predictor's lr constant
  c.simsiam.dtype = "bfloat16"    # compute dtype of the encoder and heads
  c.simsiam.augment = False       # True: SimSiam's CIFAR augmentations ("PALM + data aug")
  # temporal | same_class | perturbation (from the generator) | real (same-class real
  # images: "static PALM") | real_aug (two augmented views of one real image: SimSiam's
  # baseline). real and real_aug train offline on simsiam.real_data: no env, SAC, replay.
  c.simsiam.pairs = "temporal"
  c.simsiam.perturb_std = 0.5     # sigma of the latent perturbation for pairs="perturbation"
  c.simsiam.real_data = ""        # dataset for pairs real/real_aug, e.g. tfds:cifar10:train

  c.replay = ml_collections.ConfigDict()
  c.replay.capacity = 1_000_000   # transitions kept (uint8 frames; ~4.2 GB with bf16 actions)
  c.replay.action_dtype = "bfloat16"  # storage dtype of actions

  # How a chunk of iterations runs: "scan" (one jitted lax.scan: accelerators), "host" (a
  # Python loop of jitted iterations: XLA:CPU runs gradient convolutions inside scan/cond
  # ~30x slower), "auto" (host on CPU, scan elsewhere). Both compute the same thing.
  c.loop = "auto"

  c.log = ml_collections.ConfigDict()
  c.log.chunk_iterations = 25     # iterations per jitted chunk = host sync + log interval
  c.log.rollout_every_chunks = 20  # PNG grid of rollouts every this many chunks (0 = never)
  c.log.rollout_rows = 8          # trajectories in the rollout grid
  # Exploration metrics once per chunk (palm_jax/palm/exploration.py): APT reward of the policy
  # vs uniform actions on this many fresh episodes, action share, replay classes/spread.
  c.log.explore_envs = 64         # 0 = off
  # Weights & Biases (optional: pip install wandb): the same scalars and pictures as
  # TensorBoard, the config as the run's config; a rerun of the workdir resumes the same
  # W&B run (id in WORKDIR/wandb_run.json). WANDB_MODE=offline logs to WORKDIR/wandb/ only.
  # Fields (palm_jax/runtime/wandb_log.py): wandb (False), wandb_project ("palm_jax"),
  # wandb_entity ("" = yours), wandb_group (sweeps: the sweep's name), wandb_tags (()).
  c.log.update(wandb_log.config_fields())

  # The experience log (palm_jax/palm/experience_log.py): every frame played, with its env,
  # episode, t, class and action, in WORKDIR/experience/ (ArrayRecord shards, one per
  # chunk; read by passive PALM and coverage). 50M CIFAR frames ≈ 218 GB with actions; the
  # size is printed at start and a disk that cannot hold it is refused.
  c.experience = ml_collections.ConfigDict()
  c.experience.log = False        # record the experience
  c.experience.every = 1          # log environments 0, k, 2k, ... (whole episodes of 1/k)
  # Passive PALM (config.job = "passive", palm_jax/palm/passive.py): this config's
  # encoder and update budget trained on the temporal pairs of a run's experience log.
  c.passive = ml_collections.ConfigDict()
  c.passive.log = ""              # that run's workdir (or its experience/ directory)
  c.passive.order = "ordered"     # "ordered" (online order, sliding window) | "random"
  c.passive.window = 0            # ordered: iterations in the window (0: the replay's slots)

  # Population training (palm_jax/palm/population.py): one member per seed, trained together in
  # one vmapped program, each a normal run in WORKDIR/members/<name>/. alpha/beta: empty
  # (every member uses env.alpha/env.beta) or one value per seed.
  c.population = ml_collections.ConfigDict()
  c.population.seeds = ()         # e.g. (0, 1, 2); empty = one ordinary run
  c.population.alpha = ()
  c.population.beta = ()
  c.population.workdirs = ()      # each member's workdir ("" or empty: WORKDIR/members/<name>)

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_chunks = 50  # save every this many chunks (and at the end)
  c.checkpoint.keep = 2           # checkpoints kept on disk
  c.checkpoint.save_replay = True  # include the replay (exact resume; ~4 GB per checkpoint)
  # Permanent encoder snapshots at these env steps (WORKDIR/snapshots/<step>/, never
  # rotated; multiples of num_envs * log.chunk_iterations), as URLB keeps 100k..2M frames.
  # linear_eval/ood_eval read them with --config.step=<step>.
  c.checkpoint.snapshot_steps = ()

  # Linear probe at the end of training ("" skips it); see configs/linear_eval.py.
  c.eval = ml_collections.ConfigDict()
  c.eval.train = "tfds:cifar10:train"
  c.eval.test = "tfds:cifar10:test"
  return c
