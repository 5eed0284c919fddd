"""NStepReplay against a brute-force NumPy enumeration of n-step transitions."""
import numpy as np

from palm_jax.agents.nstep_replay import NStepReplay

GAMMA, N, STACK = 0.9, 3, 2


def _episodes():
  """One column of 14 steps: a terminal at t=4, a truncation at t=9, then running."""
  rng = np.random.default_rng(0)
  t = np.arange(14)
  reward = rng.normal(size=14).astype(np.float32)
  terminal = np.isin(t, [4])
  end = np.isin(t, [4, 9])
  first = np.isin(t, [0, 5, 10])
  return reward, terminal, end, first


def _reference(reward, terminal, end, first):
  """{t: (state frames, R, done, next frames)} by walking each episode by hand."""
  count = len(reward)
  out = {}

  def stack(t):
    frames, alive = [], True
    for k in range(STACK):
      frames.append(t - k if alive else -1)  # -1 stands for a zero frame
      alive = alive and not first[t - k] if t - k >= 0 else False
    return frames[::-1]

  for t in range(count):
    ret, done, ok = 0.0, False, True
    for k in range(N):
      if t + k >= count:
        ok = False
        break
      ret += GAMMA ** k * reward[t + k]
      if end[t + k]:
        done, ok = bool(terminal[t + k]), bool(terminal[t + k])
        break
    if ok and not done and t + N > count - 1:
      ok = False
    if ok:
      out[t] = (stack(t), ret, done, None if done else stack(t + N))
  return out


def test_sampled_transitions_match_the_enumeration():
  reward, terminal, end, first = _episodes()
  replay = NStepReplay(32, 1, (1,), np.float32, STACK, N, GAMMA, seed=0)
  for t in range(len(reward)):
    # Frame t holds the value t + 1, so a zero frame is recognisable.
    replay.add(np.full((1, 1), t + 1.0), [t % 3], [reward[t]], [terminal[t]], [end[t]],
               [first[t]])
  ref = _reference(reward, terminal, end, first)
  # Truncated windows (t = 7, 8, 9) and the unfinished tail are not valid.
  assert sorted(ref) == [0, 1, 2, 3, 4, 5, 6, 10]
  valid, _, _ = replay._window(np.arange(14), np.zeros(14, np.int64))
  assert sorted(np.nonzero(valid)[0].tolist()) == sorted(ref)
  batch = replay.sample(256)
  seen = set()
  for i in range(256):
    t = int(round(batch.obs[i, 0, -1])) - 1
    seen.add(t)
    frames, ret, done, nxt = ref[t]
    np.testing.assert_allclose(batch.obs[i, 0], [f + 1.0 if f >= 0 else 0.0 for f in frames])
    np.testing.assert_allclose(batch.reward[i], ret, rtol=1e-6)
    assert batch.terminal[i] == float(done)
    assert batch.action[i] == t % 3
    if nxt is not None:
      np.testing.assert_allclose(batch.next_obs[i, 0],
                                 [f + 1.0 if f >= 0 else 0.0 for f in nxt])
  assert seen == set(ref)  # uniform over valid transitions reaches every one


def test_ring_wraparound_keeps_only_live_slots():
  replay = NStepReplay(8, 2, (2,), np.float32, STACK, N, GAMMA, seed=1)
  for t in range(20):
    replay.add(np.full((2, 2), t, np.float32), [0, 1], [1.0, 1.0], [False, False],
               [False, False], [t == 0, t == 0])
  batch = replay.sample(64)
  newest = batch.obs[:, 0, -1]
  # Slots 12..19 are live; a state needs STACK - 1 older live frames and N successors.
  assert newest.min() >= 12 + STACK - 1 and newest.max() <= 19 - N
  np.testing.assert_allclose(batch.next_obs[:, 0, -1], newest + N)
  np.testing.assert_allclose(batch.reward, 1 + GAMMA + GAMMA ** 2, rtol=1e-6)
