"""CartPole: dynamics against Gymnasium's equations in NumPy; DQN/DrQ's update learns it."""
import env_cartpole as cartpole
import numpy as np

from palm_jax.agents import drq
from palm_jax.atari import trainer as drq_loop
from palm_jax.models.atari_encoder import DuelingHead, MLPEncoder, QNetwork


def _gym_step(s, action):
  """gymnasium/envs/classic_control/cartpole.py, `step`, euler branch, in float64."""
  x, x_dot, theta, theta_dot = s
  force = 10.0 if action == 1 else -10.0
  costheta, sintheta = np.cos(theta), np.sin(theta)
  temp = (force + 0.05 * theta_dot ** 2 * sintheta) / 1.1
  thetaacc = (9.8 * sintheta - costheta * temp) / (0.5 * (4.0 / 3.0 - 0.1 * costheta ** 2 / 1.1))
  xacc = temp - 0.05 * thetaacc * costheta / 1.1
  s = np.array([x + 0.02 * x_dot, x_dot + 0.02 * xacc, theta + 0.02 * theta_dot,
                theta_dot + 0.02 * thetaacc])
  done = abs(s[0]) > 2.4 or abs(s[2]) > 12 * 2 * np.pi / 360
  return s, done


def test_dynamics_match_gymnasium():
  env = cartpole.CartPoleVectorEnv(16, seed=0)
  obs = env.reset()
  assert np.abs(obs).max() <= 0.05
  rng = np.random.default_rng(0)
  for _ in range(30):
    a = rng.integers(0, 2, 16)
    ref = [_gym_step(o.astype(np.float64), ai) for o, ai in zip(obs, a)]
    new, reward, term, over = env.step(a)
    np.testing.assert_array_equal(term, [d for _, d in ref])
    live = ~over
    np.testing.assert_allclose(new[live], np.stack([s for s, _ in ref])[live], rtol=1e-5,
                               atol=1e-6)
    assert (reward == 1).all()
    obs = new


def test_dqn_update_learns_cartpole():
  """Random play lasts ~22 steps; the learned greedy policy must average ≥ 100."""
  cfg = drq.DrQConfig(gamma=0.99, update_horizon=3, min_replay_history=500, update_period=6,
                      target_update_period=100, epsilon_decay_period=2500,
                      learning_rate=1e-3, adam_eps=1e-8, batch_size=64,
                      data_augmentation=False)
  net = QNetwork(MLPEncoder((64, 64)), DuelingHead(2, hidden=64))
  res = drq_loop.train(cartpole.CartPoleVectorEnv(16, 0), net, cfg, 8000, 0, stack=1,
                       frame_dtype=np.float32, clip_rewards=False)
  early = np.mean(res.game_scores[:20])
  scores = drq_loop.evaluate(cartpole.CartPoleVectorEnv(8, 1), net, res.state.params, 16,
                             0.0, 1, stack=1, frame_dtype=np.float32)
  assert early < 40, early
  assert np.mean(scores) >= 100, (np.mean(scores), scores)
