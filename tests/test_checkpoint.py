"""Checkpointer: sharded save/restore, fallback past a corrupt checkpoint, encoder-only."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging

from palm_jax.runtime import checkpoint, sharding
from palm_jax.runtime import files as files_lib
from palm_jax.runtime.errors import UserError


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


def test_restore_encoder_drops_orbax_read_only_notice(tmp_path, caplog):
  """Reading a run is what restore_encoder is for: Orbax's "Given directory is read only"
  warning (every read-only manager) is not printed, and the filter ends with the restore."""
  ckpt = checkpoint.Checkpointer(checkpoint.checkpoint_dir(str(tmp_path)))
  ckpt.save(3, state={"w": jnp.ones(2)}, meta={}, encoder={"params": {}, "batch_stats": {}})
  ckpt.close()
  with caplog.at_level("WARNING"):
    assert checkpoint.restore_encoder(str(tmp_path))[0] == 3
    assert checkpoint.all_encoder_steps(str(tmp_path)) == [3]
  assert not [r for r in caplog.records if "read only" in r.getMessage()]
  with caplog.at_level("WARNING"):  # the filter is gone once the manager is built
    logging.warning("Given directory is read only=%s", "elsewhere")
  assert [r for r in caplog.records if "read only=elsewhere" in r.getMessage()]


def test_corrupt_newest_is_moved_aside_and_can_be_saved_again(tmp_path):
  mesh = sharding.make_mesh()
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=3)
  for step in (10, 20):
    ckpt.save(step, state=_state(mesh, step), meta={})
  ckpt.close()
  _corrupt(str(tmp_path / "ckpt" / "20"))
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=3)
  assert ckpt.restore(_state(mesh, 0))[0] == 10
  assert os.path.isdir(tmp_path / "ckpt" / "broken" / "20")  # kept, never deleted
  assert ckpt.all_steps() == [10]
  ckpt.save(20, state=_state(mesh, 21), meta={})  # the redone step saves again
  ckpt.close()
  step, state, _, _ = checkpoint.Checkpointer(str(tmp_path / "ckpt")).restore(_state(mesh, 0))
  assert step == 20 and float(state["params"][0, 0]) == 21.0


def _no_tmp(directory):
  return not [p for p in os.listdir(directory) if "tmp" in p]


def test_full_disk_is_one_sentence_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  mesh = sharding.make_mesh()
  directory = tmp_path / "ckpt"
  ckpt = checkpoint.Checkpointer(str(directory))
  ckpt.save(1, state=_state(mesh, 1), meta={})
  ckpt.wait()
  # 1. The free-space check refuses before writing anything.
  monkeypatch.setattr(files_lib, "free_bytes", lambda path: 1000)
  with pytest.raises(UserError, match=r"step 2 needs about 16.0 MiB in .* only 0.0 MiB is "
                                      r"free; free some space"):
    ckpt.save(2, state=_state(mesh, 2), meta={})
  monkeypatch.undo()
  # 2. A write that fails anyway (ENOSPC mid-save, as on a tiny tmpfs): its temporary
  # folder is removed, the error is one sentence, step 1 is intact.
  real_save = ckpt._manager.save

  def enospc(step, *args, **kwargs):
    os.makedirs(directory / f"{step}.orbax-checkpoint-tmp-123")
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(ckpt._manager, "save", enospc)
  with pytest.raises(UserError, match=r"saving the checkpoint of step 3 .* failed \(OSError: "
                                      r".*No space left.*\); the last finished checkpoint "
                                      r"\(step 1\) is intact; free disk space"):
    ckpt.save(3, state=_state(mesh, 3), meta={})
  # Any other failure does not send the user to free disk space.
  monkeypatch.setattr(ckpt._manager, "save", lambda *a, **k: (_ for _ in ()).throw(
      ValueError("Checkpoint for step 3 already exists.")))
  with pytest.raises(UserError, match=r"failed \(ValueError: Checkpoint for step 3 already "
                                      r"exists.\); .* intact; rerun to resume; if it fails "
                                      r"again at this step, move .*/3 aside\.$"):
    ckpt.save(3, state=_state(mesh, 3), meta={})
  monkeypatch.setattr(ckpt._manager, "save", real_save)
  assert _no_tmp(directory) and ckpt.all_steps() == [1]
  ckpt.close()
  assert checkpoint.Checkpointer(str(directory)).restore(_state(mesh, 0))[0] == 1


def test_tree_bytes_counts_global_array_bytes():
  tree = {"a": jnp.zeros((3, 4), jnp.float32), "b": jax.ShapeDtypeStruct((5,), jnp.bfloat16),
          "meta": "not an array"}
  assert checkpoint.tree_bytes(tree, None) == 3 * 4 * 4 + 5 * 2
