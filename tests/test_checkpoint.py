"""Checkpointer: sharded save/restore, fallback past a corrupt checkpoint, encoder-only."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax import checkpoint, sharding
from palm_jax.errors import UserError


def _state(mesh, value):
  return {"params": jax.device_put(jnp.full((3, 2), value), sharding.replicated(mesh)),
          "envs": jax.device_put(jnp.arange(16.0) + value, sharding.data_sharded(mesh))}


def _corrupt(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for f in files:
      if os.sep + "d" in root:
        with open(os.path.join(root, f), "wb") as fh:
          fh.write(b"not a checkpoint")


def test_save_restore_sharded_and_fallback(tmp_path):
  mesh = sharding.make_mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=3)
  for step in (10, 20):
    ckpt.save(step, state=_state(mesh, step), meta={"job": "test"},
              encoder={"params": {"w": jnp.ones(2) * step}})
  ckpt.wait()
  template = _state(mesh, 0)
  step, state, replay_state, meta = ckpt.restore(template)
  assert step == 20 and meta == {"job": "test", "step": 20} and replay_state is None
  np.testing.assert_array_equal(state["envs"], np.arange(16.0) + 20)
  assert state["envs"].sharding.spec == template["envs"].sharding.spec

  _corrupt(str(tmp_path / "ckpt" / "20"))
  step, state, _, _ = checkpoint.Checkpointer(str(tmp_path / "ckpt")).restore(template)
  assert step == 10
  np.testing.assert_array_equal(state["params"], np.full((3, 2), 10.0))


def test_all_unreadable_is_one_user_error(tmp_path):
  mesh = sharding.make_mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, state=_state(mesh, 1), meta={})
  ckpt.close()
  wrong = {"params": jnp.zeros((5, 5)), "envs": jnp.zeros(16)}  # a changed config
  with pytest.raises(UserError, match="new --workdir"):
    checkpoint.Checkpointer(str(tmp_path / "ckpt")).restore(wrong)
  assert os.path.isdir(tmp_path / "ckpt" / "1")  # never deleted


def test_empty_directory_restores_none(tmp_path):
  assert checkpoint.Checkpointer(str(tmp_path / "c")).restore({"a": jnp.zeros(1)}) is None
  assert checkpoint.restore_encoder(str(tmp_path / "nothing")) is None


def test_restore_encoder_only(tmp_path):
  mesh = sharding.make_mesh()
  ckpt = checkpoint.Checkpointer(checkpoint.checkpoint_dir(str(tmp_path)))
  enc = {"params": {"w": jnp.arange(4.0)}, "batch_stats": {"m": jnp.ones(2)}}
  ckpt.save(5, state=_state(mesh, 5), meta={"encoder": {"width": 8}}, encoder=enc)
  ckpt.close()
  step, variables, meta = checkpoint.restore_encoder(str(tmp_path))
  assert step == 5 and meta["encoder"] == {"width": 8}
  np.testing.assert_array_equal(variables["params"]["w"], np.arange(4.0))
  with pytest.raises(UserError, match="step 6"):
    checkpoint.restore_encoder(str(tmp_path), step=6)
