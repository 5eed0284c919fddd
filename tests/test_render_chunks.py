"""Chunked rendering (`config.env.render_chunk`): the same frames, bit for bit, as one call.

Checked for `reset` and `step` (hence `init` and rollouts, which call them), for a chunk
that divides the batch and one that needs padding, on an environment batch split over the
8 simulated devices as in training.
"""
import jax
import numpy as np
import pytest

from palm_jax.envs.latent_env import EnvParams, LatentEnv, generator_info
from palm_jax.models.stylegan2 import init_generator
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import UserError


@pytest.fixture(scope="module")
def gen():
  return init_generator(jax.random.key(0), z_dim=8, c_dim=3, w_dim=8, img_resolution=8,
                        img_channels=3, mapping_kwargs=dict(num_layers=1),
                        synthesis_kwargs=dict(channel_base=64, channel_max=8, conv_clamp=256))


def _env(gen, chunk, latent_space="z"):
  return LatentEnv(gen.module, **generator_info(gen), latent_space=latent_space,
                   render_chunk=chunk)


def test_chunked_reset_and_step_equal_unchunked_bit_for_bit(gen):
  mesh = sharding.make_mesh()
  n = 32
  params = EnvParams()
  gen_vars = sharding.host_to_global(gen.variables, mesh, sharded=False)
  data = sharding.data_sharded(mesh)

  def run(chunk):
    env = _env(gen, chunk)

    @jax.jit
    def fn(key, gen_vars):
      obs0, state = env.reset(key, gen_vars, params, n)
      action = jax.random.uniform(jax.random.fold_in(key, 1), (n, env.action_dim),
                                  minval=-1, maxval=1)
      action = jax.lax.with_sharding_constraint(action, data)
      state = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, data), state)
      obs1, _, _ = env.step(jax.random.fold_in(key, 2), state, action, gen_vars, params)
      return obs0, obs1
    return [np.asarray(x) for x in fn(jax.random.key(3), gen_vars)]

  full = run(0)
  assert full[0].dtype == np.uint8 and full[0].shape == (n, 8, 8, 3)
  assert len(np.unique(full[1].reshape(n, -1), axis=0)) == n        # distinct frames
  for chunk in (8, 12):                                             # divides; padded
    for a, b in zip(run(chunk), full):
      np.testing.assert_array_equal(a, b)


def test_render_chunk_config_is_checked_before_compiling():
  import os
  import runpy

  from palm_jax.palm import validate
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = runpy.run_path(os.path.join(root, "configs", "smoke.py"))["get_config"]()
  config.env.render_chunk = 12                        # does not divide 64 envs
  with pytest.raises(UserError, match="render_chunk=12"):
    validate.validate(config, sharding.make_mesh())
  config.env.render_chunk = 16
  config.generator_up_impl = "bogus"
  with pytest.raises(UserError, match="generator_up_impl='bogus'"):
    validate.validate(config, sharding.make_mesh())
  with pytest.raises(UserError, match="render_chunk=-1"):
    _env(init_generator(jax.random.key(0), z_dim=4, c_dim=0, w_dim=4, img_resolution=4,
                        img_channels=3, synthesis_kwargs=dict(channel_base=16,
                                                              channel_max=4)), -1)
