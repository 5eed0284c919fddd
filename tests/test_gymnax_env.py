"""The latent world for other libraries: the gymnax contract (shapes, spaces, auto-reset,
vmap, traced params), the episodic kNN reward against NumPy and `apt`, rejax's PPO
training on encoder features end to end, and Gymnasium's `check_env` and vector API."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.envs import gymnasium_env, gymnax_env
from palm_jax.evaluation import features
from palm_jax.models import procedural
from palm_jax.rewards import apt
from palm_jax.runtime.errors import UserError

RES, CLASSES, LENGTH = 8, 4, 4


@pytest.fixture(scope="module")
def gen():
  return procedural.load("procedural:shapes", dict(resolution=RES, num_classes=CLASSES))


@pytest.fixture(scope="module")
def encoder():
  return features.random_encoder(dict(stage_sizes=[1], width=4), image_size=RES)


@pytest.fixture(scope="module")
def feature_env(gen, encoder):
  return gymnax_env.GymnaxLatentEnv(gen, observation="features", encoder=encoder,
                                    episode_length=LENGTH, knn_k=2)


def test_gymnax_contract_vmap_autoreset_and_traced_params(feature_env, encoder, gen):
  env = feature_env
  params = env.default_params
  assert params.max_steps_in_episode == LENGTH - 1
  assert env.action_space(params).shape == (procedural.LATENT_DIM,)
  assert env.observation_space(params).shape == (encoder.feature_dim,)
  n = 3
  reset = jax.vmap(env.reset, in_axes=(0, None))
  step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

  @jax.jit
  def rollout(params, key):
    k_reset, k_steps = jax.random.split(key)
    obs, state = reset(jax.random.split(k_reset, n), params)
    action = jnp.full((n, procedural.LATENT_DIM), 0.5)

    def body(carry, k):
      obs, state = carry
      nxt, state2, r, term, trunc, info = step(jax.random.split(k, n), state, action, params)
      return (nxt, state2), (obs, state, r, term, trunc, state2, info["final_observation"])
    _, out = jax.lax.scan(body, (obs, state), jax.random.split(k_steps, LENGTH + 1))
    frame = env.render_frame(jax.tree.map(lambda x: x[0], state), params)
    return out, frame

  (obs, states, rewards, term, trunc, nxt, final), frame = rollout(params, jax.random.PRNGKey(0))
  assert obs.shape == (LENGTH + 1, n, encoder.feature_dim) and obs.dtype == jnp.float32
  assert np.all(np.asarray(env.observation_space(params).contains(obs[0, 0])))
  # Episodes: LENGTH frames, LENGTH - 1 transitions, truncated (never terminated), reset.
  np.testing.assert_array_equal(np.asarray(states.time[:, 0]), [0, 1, 2, 0, 1])
  np.testing.assert_array_equal(np.asarray(trunc[:, 0]), [0, 0, 1, 0, 0])
  assert not np.asarray(term).any() and np.all(np.isfinite(rewards)) and rewards.min() > 0
  # Observations are the frozen encoder's features of the frame G(z_0, c), in uint8.
  img = np.asarray(jax.jit(gen.renderer.render)(gen.variables, states.latent[0, :1],
                                                 states.label[0, :1]))[0]
  np.testing.assert_array_equal(np.asarray(frame),
                                np.clip(np.round(img * 127.5 + 128), 0, 255))
  encode = jax.jit(lambda v, x: encoder.model.apply(v, x, train=False))
  want = encode(encoder.variables, np.asarray(frame)[None])[0]
  np.testing.assert_allclose(np.asarray(obs[0, 0]), np.asarray(want), rtol=1e-4, atol=1e-5)
  # T_ema step by step, with the noise gymnax's `step` -> `step_env` -> LatentEnv drew:
  # z_1 = beta z_0 + (1 - beta)(alpha a + (1 - alpha) eps).
  k_steps = jax.random.split(jax.random.PRNGKey(0))[1]
  k_env0 = jax.random.split(jax.random.split(k_steps, LENGTH + 1)[0], n)[0]
  k_step = jax.random.split(k_env0)[0]
  eps = np.asarray(jax.random.normal(jax.random.split(k_step, 3)[1], (1, 8)))[0]
  z0, z1 = np.asarray(states.latent[0, 0]), np.asarray(nxt.latent[0, 0])
  np.testing.assert_allclose(z1, 0.95 * z0 + 0.05 * (0.5 * 0.5 + 0.5 * eps), atol=1e-5)
  # The info's final observation is the stepped frame's; it differs from obs at a reset.
  np.testing.assert_allclose(np.asarray(final[0]), np.asarray(obs[1]), atol=1e-6)
  assert not np.allclose(np.asarray(final[2]), np.asarray(obs[3]))
  # Changing alpha (traced) changes the dynamics without retracing.
  traces = rollout._cache_size()
  out2, _ = rollout(params.replace(alpha=0.9), jax.random.PRNGKey(0))
  assert rollout._cache_size() == traces
  np.testing.assert_allclose(np.asarray(out2[5].latent[0, 0]),
                             0.95 * z0 + 0.05 * (0.9 * 0.5 + 0.1 * eps), atol=1e-5)


def test_episodic_knn_reward_matches_numpy_and_apt():
  rng = np.random.default_rng(0)
  memory, h = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
  fn = jax.jit(gymnax_env.episodic_knn_reward, static_argnums=3)
  for count, k in [(1, 3), (2, 3), (4, 3), (6, 2)]:
    d = np.sort(np.linalg.norm(memory[:count] - h, axis=1))[:k]
    np.testing.assert_allclose(fn(h, memory, count, k), np.log1p(d.mean()), rtol=1e-5)
  full = apt.knn_reward(jnp.asarray(h)[None], jnp.asarray(memory), k=3)[0]
  np.testing.assert_allclose(fn(h, memory, 6, 3), full, rtol=1e-4)


def test_bad_settings_are_one_sentence(gen):
  with pytest.raises(UserError, match="encoder"):
    gymnax_env.GymnaxLatentEnv(gen, observation="features")
  with pytest.raises(UserError, match="knn_k"):
    gymnax_env.GymnaxLatentEnv(gen, knn_k=9, memory_size=4)


def test_rejax_ppo_trains_on_encoder_features_with_the_knn_reward(feature_env):
  """rejax (PyPI, pure-JAX PPO) on the gymnax env: its own `create` and `train`, unchanged."""
  import rejax  # pylint: disable=g-import-not-at-top
  algo = rejax.PPO.create(
      env=gymnax_env.LegacyStepEnv(feature_env), env_params=feature_env.default_params,
      num_envs=4, num_steps=6, num_epochs=1, num_minibatches=2, total_timesteps=48,
      eval_freq=24, skip_initial_evaluation=True,
      agent_kwargs=dict(hidden_layer_sizes=(16,)))
  # rejax's default evaluation runs 128 episodes per eval; a cheaper one, same signature.
  algo = algo.replace(eval_callback=lambda algo, ts, rng: ts.global_step)
  before = jax.jit(algo.init_state)(jax.random.PRNGKey(0))
  ts, evaluation = jax.jit(algo.train)(jax.random.PRNGKey(0))
  assert int(ts.global_step) == 48 and list(np.asarray(evaluation)) == [24, 48]
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                       ts.actor_ts.params, before.actor_ts.params)
  assert max(jax.tree.leaves(moved)) > 0                     # the policy was updated
  assert np.all(np.isfinite(np.asarray(ts.last_obs)))


@pytest.mark.filterwarnings("ignore:.*spec.*")   # made directly, not via gymnasium.make
def test_gymnasium_check_env_and_vector_api(gen):
  from gymnasium.utils.env_checker import check_env  # pylint: disable=g-import-not-at-top
  env = gymnax_env.GymnaxLatentEnv(gen, observation="pixels", episode_length=3, knn_k=2)
  single = gymnasium_env.LatentGymEnv(env)
  check_env(single)
  vec = gymnasium_env.LatentVectorEnv(env, 3)
  assert vec.observation_space.shape == (3, RES, RES, 3)
  assert vec.action_space.shape == (3, procedural.LATENT_DIM)
  obs, infos = vec.reset(seed=7)
  again, _ = vec.reset(seed=7)
  np.testing.assert_array_equal(obs, again)                  # seeded reset is repeatable
  assert obs in vec.observation_space and infos["label"].shape == (3,)
  vec.action_space.seed(0)
  for t in range(3):
    prev = obs
    obs, rew, term, trunc, infos = vec.step(vec.action_space.sample())
    assert obs in vec.observation_space and rew.dtype == np.float32 and rew.shape == (3,)
    assert not term.any() and trunc.all() == (t == 1)
    if t == 1:  # same-step auto-reset: the final frames are in infos, obs start anew
      assert vec.metadata["autoreset_mode"].value == "SameStep"
      assert infos["_final_obs"].all() and infos["final_obs"].shape == (3,)
      assert infos["final_obs"][0].shape == (RES, RES, 3)
      assert not np.array_equal(infos["final_obs"][0], obs[0])
    del prev
  with pytest.raises(UserError, match="shape"):
    vec.step(np.zeros((2, procedural.LATENT_DIM)))


class _Uninstalled:
  """A meta-path finder for which `names` (and their submodules) are not installed."""

  def __init__(self, *names):
    self.names = names

  def find_spec(self, name, path=None, target=None):  # pylint: disable=unused-argument
    if name.split(".")[0] in self.names:
      raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return None


def _import_without(monkeypatch, module, *names):
  """Imports `module` afresh as if `names` were not installed; returns the UserError's text.
  sys.modules is put back as it was (the half-imported packages are dropped)."""
  import importlib  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  saved = dict(sys.modules)
  for loaded in saved:
    if loaded.split(".")[0] in names + ("gymnax", "gymnasium") or loaded == module:
      del sys.modules[loaded]
  monkeypatch.setattr(sys, "meta_path", [_Uninstalled(*names)] + sys.meta_path)
  try:
    with pytest.raises(UserError) as e:
      importlib.import_module(module)
  finally:
    monkeypatch.undo()
    for added in set(sys.modules) - set(saved):
      del sys.modules[added]
    sys.modules.update(saved)
  return str(e.value)


def test_missing_dependency_names_the_module_really_missing(monkeypatch):
  """gymnax 1.0.1 imports `six` without declaring it: the sentence names six, not gymnax,
  and an install line that brings both (the `rl` extra)."""
  msg = _import_without(monkeypatch, "palm_jax.envs.gymnax_env", "six")
  assert "'six'" in msg and 'pip install -e ".[rl]"' in msg and "pip install six" in msg
  assert "needs the optional package gymnax" not in msg
  msg = _import_without(monkeypatch, "palm_jax.envs.gymnax_env", "gymnax")
  assert "needs the optional package gymnax, which is not installed" in msg
  msg = _import_without(monkeypatch, "palm_jax.envs.gymnasium_env", "gymnasium")
  assert "optional package gymnasium" in msg and ".[rl]" in msg
  # The install line the sentences give brings every one of them.
  tomllib = pytest.importorskip("tomllib")
  with open(pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert {"gymnax", "gymnasium", "rejax", "six"} <= set(extras["rl"])
