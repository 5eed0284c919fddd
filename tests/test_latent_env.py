"""Latent environment: the dynamics step by step against NumPy; auto-reset; both spaces."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.envs import latent_env
from palm_jax.runtime.errors import UserError

Z, W, NUM_WS, CLASSES = 6, 5, 3, 4


class ToyGenerator(nn.Module):
  """Deterministic stand-in with the generator's interface (mapping + synthesis)."""

  def setup(self):
    self.mix = self.param("mix", nn.initializers.normal(1.0), (Z + CLASSES, W))
    self.to_img = self.param("to_img", nn.initializers.normal(0.3), (W, 2 * 2 * 3))

  def mapping(self, z, c, truncation_psi=1.0):
    z = z * jax.lax.rsqrt(jnp.mean(z**2, axis=1, keepdims=True) + 1e-8)
    w = jnp.concatenate([z, c], 1) @ self.mix
    w = truncation_psi * w
    return jnp.broadcast_to(w[:, None], (w.shape[0], NUM_WS, W))

  def synthesis(self, ws, noise_mode="const"):
    return jnp.tanh(ws.mean(1) @ self.to_img).reshape(-1, 2, 2, 3)

  def __call__(self, z, c):
    return self.synthesis(self.mapping(z, c))


def _numpy_render(variables, latent, labels, space):
  p = jax.tree.map(np.asarray, variables["params"])
  if space == "z":
    z = latent / np.sqrt(np.mean(latent**2, 1, keepdims=True) + 1e-8)
    w = np.concatenate([z, np.eye(CLASSES)[labels]], 1) @ p["mix"]
  else:
    w = latent
  img = np.tanh(w @ p["to_img"]).reshape(-1, 2, 2, 3)
  return np.clip(np.round(img * 127.5 + 128), 0, 255).astype(np.uint8)


def _setup(space):
  gen = ToyGenerator()
  variables = gen.init(jax.random.PRNGKey(0), jnp.zeros((1, Z)), jnp.zeros((1, CLASSES)))
  env = latent_env.LatentEnv(gen, z_dim=Z, w_dim=W, num_ws=NUM_WS, num_classes=CLASSES,
                             latent_space=space)
  return gen, variables, env


@pytest.mark.parametrize("space", ["z", "w"])
@pytest.mark.parametrize("alpha,beta", [(0.5, 0.95), (0.0, 0.9), (1.0, 0.0), (0.3, 1.0)])
def test_dynamics_step_by_step_match_numpy(space, alpha, beta):
  gen, variables, env = _setup(space)
  params = latent_env.EnvParams(alpha=alpha, beta=beta, action_scale=0.7, episode_length=4)
  n = 5
  step = jax.jit(env.step)
  key = jax.random.PRNGKey(1)
  obs, state = env.reset(key, variables, params, n)
  z = np.asarray(state.latent)
  labels = np.asarray(state.label)
  np.testing.assert_array_equal(obs, _numpy_render(variables, z, labels, space))
  rng = np.random.default_rng(0)
  for t in range(1, 9):
    key = jax.random.fold_in(key, t)
    action = rng.uniform(-1, 1, (n, env.action_dim)).astype(np.float32)
    obs, state, first = step(key, state, action, variables, params)
    # Recover this step's noise exactly as the env drew it.
    k_label, k_eps, _ = jax.random.split(key, 3)
    is_first = t % 4 == 0
    assert np.all(np.asarray(first) == is_first)
    if is_first:
      labels = np.asarray(jax.random.randint(k_label, (n,), 0, CLASSES, jnp.int32))
    eps = np.asarray(jax.random.normal(k_eps, (n, Z)))
    if space == "w":
      c = np.eye(CLASSES, dtype=np.float32)[labels]
      eps = np.asarray(gen.apply(variables, eps, c, method=gen.mapping))[:, 0]
    if is_first:
      z = eps
    else:
      z = beta * z + (1 - beta) * (alpha * 0.7 * action + (1 - alpha) * eps)
    np.testing.assert_allclose(state.latent, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(state.label, labels)
    np.testing.assert_array_equal(state.t, np.full(n, t % 4))
    got = np.asarray(obs).astype(int)
    assert np.abs(got - _numpy_render(variables, z, labels, space)).max() <= 1


def test_staggered_reset_and_classes_uniform():
  _, variables, env = _setup("z")
  params = latent_env.EnvParams(episode_length=3)
  t0 = jnp.arange(600) % 3
  _, state = env.reset(jax.random.PRNGKey(2), variables, params, 600, t0=t0)
  counts = np.bincount(np.asarray(state.label), minlength=CLASSES)
  assert counts.min() > 100  # ~150 each
  _, state, first = env.step(jax.random.PRNGKey(3), state,
                             jnp.zeros((600, Z)), variables, params)
  np.testing.assert_array_equal(first, np.asarray(t0) == 2)


def test_bad_space_is_user_error():
  gen = ToyGenerator()
  with pytest.raises(UserError, match="latent_space='x'"):
    latent_env.LatentEnv(gen, z_dim=Z, w_dim=W, num_ws=NUM_WS, num_classes=CLASSES,
                         latent_space="x")
