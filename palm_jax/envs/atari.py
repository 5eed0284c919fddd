"""Atari 2600 games through the Arcade Learning Environment, with the Atari 100k conventions.

`ale-py` (its wheel ships the ROMs, so this works offline) drives the emulator; the
preprocessing transcribes Dopamine's `AtariPreprocessing` and `create_atari_environment`
(google/dopamine, `dopamine/discrete_domains/atari_lib.py`) with the settings of its Atari
100k configs (`dopamine/labs/atari_100k/configs/DrQ_eps.gin`), the protocol DrQ(ε) is
reported under (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice"):

  * frame skip 4, rewards summed over the skipped frames; the observation is the max over
    the last two frames' grayscale screens (removes sprite flicker)   — AtariPreprocessing
  * 84x84 grayscale, downsampled with area averaging (cv2.INTER_AREA there; `area_resize`
    here is the same linear map, rounded to nearest)                   — AtariPreprocessing
  * no sticky actions: `repeat_action_probability = 0`
    ("Atari 100K benchmark doesn't use sticky actions", DrQ_eps.gin)
  * terminal on life loss for training (`AtariPreprocessing.terminal_on_life_loss = True`,
    DrQ_eps.gin): `step` reports `terminal` when a life is lost, `game_over` only when the
    game is; evaluation scores whole games
  * episode cap 27,000 agent steps = 108k frames (`Runner.max_steps_per_episode = 27_000`)
  * the minimal action set (Gymnasium's `ALE/<game>-v5` default, which Dopamine makes)
  * no-op starts: Dopamine's Atari 100k path does not use them (only its PPO preprocessing
    has `NoopResetEnv(noop_max=30)`); `noop_max` (default 0) adds up to that many random
    no-ops after a reset for the Nature-DQN/DER-style protocol (Mnih et al. 2015 used 30).
  * frame stack 4 (`JaxDQNAgent.stack_size = 4`): the agent's state is the last 4
    observations; a new agent episode (a reset or a lost life) starts from zeros with the
    first frame at the end, as Dopamine's `_reset_state` / `_record_observation` do.

The frame stack lives with the agent (`FrameStack`), as in Dopamine, so the replay stores
each frame once. `AtariVectorEnv` steps N emulators in a Python loop (≈0.5 ms per agent step
each on one CPU core), enough for Atari 100k's single environment.
"""
from __future__ import annotations

import base64
import dataclasses

import numpy as np

from palm_jax.runtime.errors import UserError

# The 26 games of Atari 100k (Kaiser et al. 2019, "Model-Based RL for Atari", Table 1;
# the list in Dopamine's labs/atari_100k and rliable), as ale-py ROM ids.
ATARI_100K_GAMES = (
    "alien", "amidar", "assault", "asterix", "bank_heist", "battle_zone", "boxing",
    "breakout", "chopper_command", "crazy_climber", "demon_attack", "freeway", "frostbite",
    "gopher", "hero", "jamesbond", "kangaroo", "krull", "kung_fu_master", "ms_pacman",
    "pong", "private_eye", "qbert", "road_runner", "seaquest", "up_n_down")

SCREEN_SIZE = 84      # AtariPreprocessing.screen_size
FRAME_SKIP = 4        # AtariPreprocessing.frame_skip
STACK_SIZE = 4        # JaxDQNAgent.stack_size
MAX_EPISODE_STEPS = 27_000  # Runner.max_steps_per_episode (DrQ_eps.gin): 108k frames


def game_id(name: str) -> str:
  """Normalises 'Pong', 'ms_pacman', 'MsPacman', 'BankHeist' to ale-py's ROM id."""
  key = name.replace("_", "").replace("-", "").lower()
  for g in ATARI_100K_GAMES:
    if g.replace("_", "") == key:
      return g
  from ale_py import roms  # pylint: disable=g-import-not-at-top
  for g in roms.get_all_rom_ids():
    if g.replace("_", "") == key:
      return g
  raise UserError(f"unknown Atari game {name!r}; use one of the Atari 100k games "
                  f"{list(ATARI_100K_GAMES)} (or another ale-py ROM id).")


def area_weights(src: int, dst: int) -> np.ndarray:
  """[dst, src] overlap fractions: output pixel j averages source interval [j*s, (j+1)*s).

  This is OpenCV's INTER_AREA for shrinking by a non-integer factor s = src/dst: each
  output is the area-weighted mean of the source pixels its footprint covers.
  """
  scale = src / dst
  w = np.zeros((dst, src), np.float64)
  for j in range(dst):
    lo, hi = j * scale, (j + 1) * scale
    for i in range(int(np.floor(lo)), min(src, int(np.ceil(hi)))):
      w[j, i] = (min(hi, i + 1) - max(lo, i)) / scale
  return w


class AreaResize:
  """uint8 [H, W] → uint8 [size, size] by separable area averaging, rounded to nearest.

  Each output row (column) mixes at most `ceil(s) + 1` source rows (columns), so the map is
  applied as a few gathered, weighted slices instead of a dense matrix product (which
  contends for BLAS threads on a busy machine: 15 ms against 0.2 ms here).
  """

  def __init__(self, height: int, width: int, size: int = SCREEN_SIZE):
    self.rows = self._taps(area_weights(height, size))  # (index [K, size], weight [K, size])
    self.cols = self._taps(area_weights(width, size))

  @staticmethod
  def _taps(w: np.ndarray):
    k = int((w > 0).sum(1).max())
    idx = np.zeros((k, w.shape[0]), np.int64)
    wt = np.zeros((k, w.shape[0]), np.float32)
    for j in range(w.shape[0]):
      nz = np.nonzero(w[j])[0]
      idx[:len(nz), j] = nz
      wt[:len(nz), j] = w[j, nz]
    return idx, wt

  def __call__(self, frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32)
    (ri, rw), (ci, cw) = self.rows, self.cols
    rows = sum(rw[k][:, None] * f[ri[k]] for k in range(len(ri)))       # [size, W]
    out = sum(cw[k][None, :] * rows[:, ci[k]] for k in range(len(ci)))  # [size, size]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclasses.dataclass
class StepResult:
  obs: np.ndarray       # uint8 [84, 84], the pooled, resized frame after the action
  reward: float         # sum of the raw (unclipped) rewards over the skipped frames
  terminal: bool        # a life was lost (if terminal_on_life_loss) or the game ended
  game_over: bool       # the game ended or hit the 27k-step cap: reset next


class AtariEnv:
  """One ALE emulator with Dopamine's Atari 100k preprocessing (see the module docstring)."""

  def __init__(self, game: str, seed: int, terminal_on_life_loss: bool = True,
               noop_max: int = 0, max_episode_steps: int = MAX_EPISODE_STEPS,
               repeat_action_probability: float = 0.0):
    try:
      import ale_py  # pylint: disable=g-import-not-at-top
      from ale_py import roms  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise UserError("ale-py is not installed; `pip install ale-py` (its wheel ships the "
                      "Atari ROMs).") from e
    self.game = game_id(game)
    self.ale = ale_py.ALEInterface()
    self.ale.setLoggerMode(ale_py.LoggerMode.Error)
    self.ale.setInt("random_seed", int(seed) % (2**31))
    self.ale.setFloat("repeat_action_probability", float(repeat_action_probability))
    self.ale.setInt("frame_skip", 1)  # we skip (and pool) ourselves
    # ALE's own frame limit stays beyond the agent-step cap below, so the cap is a
    # truncation (game_over without terminal), never mistaken for a terminal state.
    self.ale.setInt("max_num_frames_per_episode", (max_episode_steps + 1) * FRAME_SKIP)
    self.ale.loadROM(roms.get_rom_path(self.game))
    self.actions = list(self.ale.getMinimalActionSet())
    h, w = self.ale.getScreenDims()
    self._buffers = [np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)]
    self._resize = AreaResize(h, w)
    self._rng = np.random.default_rng(seed)
    self.terminal_on_life_loss = terminal_on_life_loss
    self.noop_max = noop_max
    self.max_episode_steps = max_episode_steps
    self.lives = 0
    self.steps = 0

  @property
  def num_actions(self) -> int:
    return len(self.actions)

  def _pool_and_resize(self) -> np.ndarray:
    np.maximum(self._buffers[0], self._buffers[1], out=self._buffers[0])
    return self._resize(self._buffers[0])

  def reset(self) -> np.ndarray:
    """Starts a game; returns its first frame uint8 [84, 84] (`AtariPreprocessing.reset`)."""
    self.ale.reset_game()
    for _ in range(int(self._rng.integers(0, self.noop_max + 1)) if self.noop_max else 0):
      self.ale.act(self.actions[0])
      if self.ale.game_over():
        self.ale.reset_game()
    self.lives = self.ale.lives()
    self.steps = 0
    self.ale.getScreenGrayscale(self._buffers[0])
    self._buffers[1].fill(0)
    return self._pool_and_resize()

  def step(self, action: int) -> StepResult:
    """Repeats `action` (an index into the minimal set) for 4 frames, stopping at a terminal."""
    total = 0.0
    terminal = game_over = False
    for t in range(FRAME_SKIP):
      total += self.ale.act(self.actions[int(action)])
      game_over = self.ale.game_over()
      new_lives = self.ale.lives()
      terminal = game_over or (self.terminal_on_life_loss and new_lives < self.lives)
      self.lives = new_lives
      if t >= FRAME_SKIP - 2:  # the last two frames are max-pooled
        self.ale.getScreenGrayscale(self._buffers[t - (FRAME_SKIP - 2)])
      if terminal:
        break
    self.steps += 1
    game_over = game_over or self.steps >= self.max_episode_steps
    return StepResult(self._pool_and_resize(), total, terminal, game_over)


  def get_state(self) -> dict:
    """The emulator's machine state (with its RNG) and this wrapper's, as JSON."""
    return {"ale": base64.b64encode(self.ale.cloneState(include_rng=True).serialize())
                   .decode("ascii"),
            "buffers": base64.b64encode(np.stack(self._buffers).tobytes()).decode("ascii"),
            "rng": self._rng.bit_generator.state, "lives": self.lives, "steps": self.steps}

  def set_state(self, state: dict) -> None:
    """Continues from a `get_state()` of the same game (same frames, same rewards)."""
    import ale_py  # pylint: disable=g-import-not-at-top
    self.ale.restoreState(ale_py.ALEState(base64.b64decode(state["ale"])))
    buffers = np.frombuffer(base64.b64decode(state["buffers"]), np.uint8)
    for i, b in enumerate(buffers.reshape((2,) + self._buffers[0].shape)):
      self._buffers[i][...] = b
    self._rng.bit_generator.state = state["rng"]
    self.lives, self.steps = int(state["lives"]), int(state["steps"])


class FrameStack:
  """The agent's states: the last `stack` frames, `[N, *frame_shape, stack]`, newest last.

  `reset(mask, frames)` zeroes the chosen stacks and writes their frame last (Dopamine's
  `_reset_state` + `_record_observation` at `begin_episode`); `push(mask, frames)` rolls
  the oldest frame out of the others.
  """

  def __init__(self, num_envs: int, frame_shape=(SCREEN_SIZE, SCREEN_SIZE),
               stack: int = STACK_SIZE, dtype=np.uint8):
    self.state = np.zeros((num_envs,) + tuple(frame_shape) + (stack,), dtype)

  def update(self, frames: np.ndarray, new_episode: np.ndarray) -> None:
    """Pushes `frames [N, ...]`; where `new_episode [N]`, the stack restarts from zeros."""
    keep = ~np.asarray(new_episode).reshape((-1,) + (1,) * (self.state.ndim - 1))
    self.state[..., :-1] = np.where(keep, self.state[..., 1:], 0)
    self.state[..., -1] = frames


class AtariVectorEnv:
  """N independent emulators (seeds `seed + i`) stepped in a Python loop.

  `step(actions [N])` returns `obs` uint8 [N, 84, 84], `reward` float32 [N] (raw),
  `terminal` bool [N], `game_over` bool [N]. A game that is over is reset at once (like
  gymnax's auto-reset), so `obs` is then the first frame of the next game; the last frame
  of a finished game is never needed (no transition bootstraps from it).
  """

  def __init__(self, game: str, num_envs: int, seed: int, **kwargs):
    self.envs = [AtariEnv(game, seed + i, **kwargs) for i in range(num_envs)]
    self.frame_shape = (SCREEN_SIZE, SCREEN_SIZE)

  @property
  def num_envs(self) -> int:
    return len(self.envs)

  @property
  def num_actions(self) -> int:
    return self.envs[0].num_actions

  def reset(self) -> np.ndarray:
    return np.stack([e.reset() for e in self.envs])

  def get_state(self) -> list:
    return [e.get_state() for e in self.envs]

  def set_state(self, states: list) -> None:
    if len(states) != len(self.envs):
      raise UserError(f"the saved run played {len(states)} environments, this one "
                      f"{len(self.envs)}; resume with the same num_envs.")
    for e, s in zip(self.envs, states):
      e.set_state(s)

  def step(self, actions: np.ndarray):
    obs, rew, term, over = [], [], [], []
    for env, a in zip(self.envs, np.asarray(actions)):
      r = env.step(int(a))
      obs.append(env.reset() if r.game_over else r.obs)
      rew.append(r.reward)
      term.append(r.terminal)
      over.append(r.game_over)
    return (np.stack(obs), np.array(rew, np.float32), np.array(term), np.array(over))
