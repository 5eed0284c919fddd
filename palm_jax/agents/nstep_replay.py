"""Host replay of single frames for DQN-style agents: frame stacks and n-step returns on read.

Atari 100k keeps every transition (capacity 1M > 100k steps), so each 84×84 frame is stored
once (≈0.7 GB for 100k steps) and the 4-frame states and n-step returns are assembled when a
batch is sampled, as Dopamine's replay does. The ring is time-major with one column per
environment; slot `t` of column `e` holds

    frame[t, e]     o_t, the newest frame of the agent's state at step t
    action[t, e]    a_t, taken at o_t
    reward[t, e]    r_t, the (clipped) reward that followed a_t
    terminal[t, e]  a_t ended the agent's episode in a terminal state (life loss/game over)
    end[t, e]       the agent's episode ended after a_t (terminal, or truncated at the cap)
    first[t, e]     o_t is the first frame of an agent episode

A sample at (t, e) is the n-step transition (Dopamine's `TransitionAccumulator`):

    s   = [o_{t-3}, …, o_t]          frames before the episode's first frame are zeros
    R   = Σ_{k=0}^{m} γᵏ r_{t+k}     m = n − 1, or the step of an earlier terminal
    s'  = [o_{t+n-3}, …, o_{t+n}]    done = 1 if a terminal came first (s' is then unused)

It is valid when its window is written and does not cross a truncation (Dopamine drops those
windows too: without the true next frame there is nothing to bootstrap from). Sampling is
uniform over valid transitions, by redrawing invalid candidates.
"""
from __future__ import annotations

import numpy as np

from palm_jax.agents.drq import Batch


class NStepReplay:
  """Ring of `capacity` time slots × `num_envs` columns (see the module docstring)."""

  def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, ...],
               frame_dtype=np.uint8, stack: int = 4, update_horizon: int = 10,
               gamma: float = 0.99, seed: int = 0):
    self.capacity, self.num_envs = capacity, num_envs
    self.stack, self.n, self.gamma = stack, update_horizon, gamma
    self.frame = np.zeros((capacity, num_envs) + tuple(frame_shape), frame_dtype)
    self.action = np.zeros((capacity, num_envs), np.int32)
    self.reward = np.zeros((capacity, num_envs), np.float32)
    self.terminal = np.zeros((capacity, num_envs), bool)
    self.end = np.zeros((capacity, num_envs), bool)
    self.first = np.zeros((capacity, num_envs), bool)
    self.count = 0  # time steps written (all columns together)
    self._rng = np.random.default_rng(seed)
    self._discounts = gamma ** np.arange(update_horizon, dtype=np.float64)

  @property
  def num_transitions(self) -> int:
    return min(self.count, self.capacity) * self.num_envs

  def add(self, frame, action, reward, terminal, end, first) -> None:
    """Writes one time step for every column (arrays `[num_envs, ...]`)."""
    i = self.count % self.capacity
    self.frame[i], self.action[i], self.reward[i] = frame, action, reward
    self.terminal[i], self.end[i], self.first[i] = terminal, end, first
    self.count += 1

  _COLUMNS = ("frame", "action", "reward", "terminal", "end", "first")

  def get_arrays(self) -> dict:
    """The ring's columns (views, not copies: save them before the next `add`)."""
    return {name: getattr(self, name) for name in self._COLUMNS}

  def get_meta(self) -> dict:
    """The write count and the sampling RNG's state, as JSON."""
    return {"count": self.count, "rng": self._rng.bit_generator.state}

  def load(self, arrays: dict, meta: dict) -> None:
    """Restores what `get_arrays` / `get_meta` returned (shapes must match this ring)."""
    for name in self._COLUMNS:
      getattr(self, name)[...] = arrays[name]
    self.count = int(meta["count"])
    self._rng.bit_generator.state = meta["rng"]

  def _stack(self, t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """States `[B, *frame, stack]` ending at absolute steps `t` of columns `e`."""
    out = np.zeros((len(t),) + self.frame.shape[2:] + (self.stack,), self.frame.dtype)
    alive = np.ones(len(t), bool)  # no episode start crossed yet, walking back from t
    for k in range(self.stack):
      s = (t - k) % self.capacity
      out[..., self.stack - 1 - k] = np.where(
          alive.reshape((-1,) + (1,) * (self.frame.ndim - 2)), self.frame[s, e], 0)
      alive &= ~self.first[s, e]
    return out

  def _window(self, t: np.ndarray, e: np.ndarray):
    """(valid [B], R [B], done [B]) of the n-step windows starting at steps `t`."""
    steps = t[:, None] + np.arange(self.n)[None, :]                      # [B, n]
    written = steps <= self.count - 1
    s = steps % self.capacity
    ee = e[:, None]
    end = self.end[s, ee] & written
    # Index of the first episode end in the window (n if none).
    m = np.where(end.any(1), end.argmax(1), self.n)
    within = np.arange(self.n)[None, :] <= np.minimum(m, self.n - 1)[:, None]
    ret = (self.reward[s, ee] * self._discounts[None, :] * within).sum(1)
    ended = m < self.n
    done = ended & self.terminal[s[np.arange(len(t)), np.minimum(m, self.n - 1)], e]
    truncated = ended & ~done
    # A full window needs its successor s_{t+n} written; a terminal one only its steps.
    valid = np.where(done, written[np.arange(len(t)), np.minimum(m, self.n - 1)],
                     t + self.n <= self.count - 1) & ~truncated
    # Once the ring has wrapped, the stack at t must not reach into overwritten slots
    # (before that, slots before step 0 lie behind step 0's episode start anyway).
    valid &= (t - (self.stack - 1) >= self.count - self.capacity) | (
        self.count <= self.capacity)
    return valid, ret.astype(np.float32), done

  def sample(self, batch_size: int) -> Batch:
    """`batch_size` valid transitions drawn uniformly (numpy arrays in a `Batch`)."""
    lo = max(0, self.count - self.capacity)
    t = np.zeros(batch_size, np.int64)
    e = np.zeros(batch_size, np.int64)
    missing = np.arange(batch_size)
    for _ in range(1000):
      ct = self._rng.integers(lo, self.count, len(missing))
      ce = self._rng.integers(0, self.num_envs, len(missing))
      ok = self._window(ct, ce)[0]
      t[missing[ok]], e[missing[ok]] = ct[ok], ce[ok]
      missing = missing[~ok]
      if not len(missing):
        break
    else:
      raise RuntimeError("the replay holds no valid transition yet")
    _, ret, done = self._window(t, e)
    return Batch(obs=self._stack(t, e), action=self.action[t % self.capacity, e],
                 reward=ret, next_obs=self._stack(t + self.n, e),
                 terminal=done.astype(np.float32))
