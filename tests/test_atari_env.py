"""The ALE wrapper's conventions on a real ROM (a few hundred emulator steps)."""
import numpy as np
import pytest

pytest.importorskip("ale_py")

from palm_jax.envs import atari  # noqa: E402
from palm_jax.runtime.errors import UserError  # noqa: E402

_ROWS, _COLS = atari.area_weights(210, 84), atari.area_weights(160, 84).T


def _dense_resize(frame):
  """Reference: the full area-weight matrices in float64, rounded to nearest."""
  # einsum without BLAS: a threaded GEMM crawls when the test machine is oversubscribed.
  out = np.einsum("ij,jk->ik", np.einsum("ij,jk->ik", _ROWS, frame.astype(np.float64),
                                         optimize=False), _COLS, optimize=False)
  return np.clip(np.rint(out), 0, 255)


def test_area_weights_by_hand_and_resize_against_the_dense_map():
  np.testing.assert_allclose(atari.area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
  np.testing.assert_allclose(atari.area_weights(4, 2), [[.5, .5, 0, 0], [0, 0, .5, .5]])
  frame = np.random.default_rng(0).integers(0, 256, (210, 160)).astype(np.uint8)
  out = atari.AreaResize(210, 160)(frame)
  assert out.shape == (84, 84) and out.dtype == np.uint8
  diff = np.abs(out.astype(int) - _dense_resize(frame))
  assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # float32 ties may round apart


def test_skip_maxpool_reward_and_life_loss_on_breakout():
  import ale_py  # pylint: disable=g-import-not-at-top
  env = atari.AtariEnv("Breakout", seed=3)
  assert env.num_actions == 4 and env.game == "breakout"
  ref = ale_py.ALEInterface()
  ref.setLoggerMode(ale_py.LoggerMode.Error)
  ref.setInt("random_seed", 3)
  ref.setFloat("repeat_action_probability", 0.0)
  ref.loadROM(ale_py.roms.get_rom_path("breakout"))
  acts = ref.getMinimalActionSet()
  obs = env.reset()
  ref.reset_game()
  assert obs.shape == (84, 84) and obs.dtype == np.uint8
  np.testing.assert_allclose(obs, _dense_resize(ref.getScreenGrayscale()), atol=1)
  rng = np.random.default_rng(0)
  lives, lost = ref.lives(), False
  for _ in range(120):
    a = int(rng.integers(0, 4))
    r = env.step(a)
    reward, screens = 0.0, []
    for _ in range(4):
      reward += ref.act(acts[a])
      screens.append(ref.getScreenGrayscale())
      if ref.lives() < lives or ref.game_over():
        break
    assert r.reward == reward
    if ref.lives() < lives:  # a life lost: terminal for training, not the end of the game
      assert r.terminal and not r.game_over
      lives, lost = ref.lives(), True
      continue
    assert not r.terminal
    pooled = np.maximum(screens[-2], screens[-1])  # max over the last two frames
    np.testing.assert_allclose(r.obs, _dense_resize(pooled), atol=1)
  assert lost


def test_episode_cap_frame_stack_and_vector_env():
  env = atari.AtariVectorEnv("pong", 2, seed=0, max_episode_steps=5)
  first = env.reset()
  assert first.shape == (2, 84, 84)
  for t in range(5):
    obs, reward, terminal, over = env.step(np.zeros(2, np.int64))
    assert over.all() == (t == 4) and not terminal.any()
  # The capped games were reset: the next frame is a fresh game's first one.
  np.testing.assert_array_equal(obs, first)
  stack = atari.FrameStack(2, (1,), 3, np.float32)
  stack.update(np.array([[1.0], [2.0]]), np.array([True, True]))
  stack.update(np.array([[3.0], [4.0]]), np.array([False, True]))
  np.testing.assert_array_equal(stack.state[:, 0], [[0, 1, 3], [0, 0, 4]])
  with pytest.raises(UserError, match="unknown Atari game"):
    atari.game_id("pongg")
