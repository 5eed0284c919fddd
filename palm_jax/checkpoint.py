"""Orbax checkpoints: periodic saves, automatic resume, fallback, encoder-only restore.

Layout of `DIR/checkpoints/<step>/` (one Orbax composite checkpoint per saved step):
  state    the whole training state pytree (restored straight onto the mesh's shardings)
  encoder  `{"params": ..., "batch_stats": ...}` of the encoder alone, so evaluation can
           restore it without knowing the training state's structure
  replay   the replay buffer (optional: large)
  meta     JSON: `{"step", "job", "config", "encoder": {...model kwargs...}, ...}`

Permanent snapshots (`config.checkpoint.snapshot_steps`, as URLB keeps its 100k/500k/1M/2M
frame snapshots) live beside them in `DIR/snapshots/<step>/`: a second Orbax manager that
never rotates, holding `encoder` and `meta` (and `state` = the encoder variables, so the
layout is the same). `restore_encoder(workdir, step)` looks there when the rolling
checkpoints do not hold `step`.

Every process calls `save`/`restore` (Orbax coordinates multi-host writes). A run killed
mid-save leaves only a temporary directory that Orbax ignores; a checkpoint that cannot be
read is skipped with a warning in favour of the previous one, and nothing is ever deleted
except by `max_to_keep` rotation.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from palm_jax.errors import UserError

ITEMS = ("state", "encoder", "replay", "meta")


def _abs(path: str) -> str:
  return path if "://" in path else os.path.abspath(path)


def abstract(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of a pytree of arrays, as Orbax restores want."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class Checkpointer:
  """A thin, opinionated wrapper over `orbax.checkpoint.CheckpointManager`."""

  def __init__(self, directory: str, *, max_to_keep: int | None = 2, async_save: bool = True,
               read_only: bool = False):
    self.directory = _abs(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, *, state: Any, meta: dict, encoder: Any = None,
           replay: Any = None) -> None:
    """Saves (asynchronously) the items given; `meta` must be JSON-serialisable."""
    items = {"state": ocp.args.StandardSave(state),
             "meta": ocp.args.JsonSave(dict(meta, step=int(step)))}
    if encoder is not None:
      items["encoder"] = ocp.args.StandardSave(encoder)
    if replay is not None:
      items["replay"] = ocp.args.StandardSave(replay)
    self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)

  def _restore_items(self, step: int, **items) -> dict:
    return dict(self._manager.restore(step, args=ocp.args.Composite(**items)).items())

  def restore(self, state_template: Any, *, step: int | None = None,
              replay_template: Any = None) -> tuple[int, Any, Any, dict] | None:
    """Restores `(step, state, replay, meta)` from `step` or the newest readable one.

    `state_template` (and `replay_template`) are pytrees of arrays (or ShapeDtypeStructs)
    whose shapes, dtypes and shardings the restored arrays take. Returns None when the
    directory holds no checkpoint. An unreadable newest checkpoint is skipped with a warning
    (fallback); if none can be read, raises a UserError naming the directory.
    """
    steps = self.all_steps()
    if not steps:
      return None
    candidates = [step] if step is not None else steps[::-1]
    if step is not None and step not in steps:
      raise UserError(f"no checkpoint for step {step} in {self.directory} (it has {steps}); "
                      "pass one of those steps or none for the latest.")
    errors = []
    for s in candidates:
      items = {"state": ocp.args.StandardRestore(abstract(state_template)),
               "meta": ocp.args.JsonRestore()}
      if replay_template is not None:
        items["replay"] = ocp.args.StandardRestore(abstract(replay_template))
      try:
        out = self._restore_items(s, **items)
      except Exception as e:  # pylint: disable=broad-except
        # A replay saved without, or a corrupt file: try the state alone, then older steps.
        if replay_template is not None:
          try:
            items.pop("replay")
            out = self._restore_items(s, **items)
            logging.warning("Checkpoint %d has no readable replay buffer; starting with an "
                            "empty one.", s)
            return s, out["state"], None, out["meta"]
          except Exception:  # pylint: disable=broad-except
            pass
        msg = str(e).strip().splitlines()
        errors.append(f"step {s}: {type(e).__name__}: {msg[-1] if msg else ''}"[:300])
        logging.warning("Could not read checkpoint %d in %s (%s); trying an older one.",
                        s, self.directory, errors[-1])
        continue
      return s, out["state"], out.get("replay"), out["meta"]
    raise UserError(
        f"no checkpoint in {self.directory} could be restored into this run's state "
        f"({'; '.join(errors)}); if the config changed, use a new --workdir, otherwise move "
        "the broken checkpoint directories aside.")

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def snapshot_dir(workdir: str) -> str:
  return os.path.join(workdir, "snapshots")


def snapshot_steps(config) -> tuple[int, ...]:
  """`config.checkpoint.snapshot_steps` as sorted ints (empty when the field is absent)."""
  steps = config.checkpoint.get("snapshot_steps", ()) or ()
  return tuple(sorted({int(s) for s in steps}))


def validate_snapshot_steps(config, steps_per_chunk: int, total_steps: int) -> None:
  """Snapshots are written at chunk ends, so each step must be one (checked before compiling)."""
  for s in snapshot_steps(config):
    if s <= 0 or s % steps_per_chunk or s > total_steps:
      near = max(steps_per_chunk, round(s / steps_per_chunk) * steps_per_chunk)
      raise UserError(
          f"config.checkpoint.snapshot_steps holds {s}, which is not a chunk boundary in "
          f"(0, {total_steps:,}]; use multiples of env.num_envs * log.chunk_iterations = "
          f"{steps_per_chunk:,} (e.g. {min(near, total_steps)}).")


def snapshot_due(config, prev_steps: int, steps: int) -> bool:
  """Whether a snapshot step lies in `(prev_steps, steps]` (the chunk just run)."""
  return any(prev_steps < s <= steps for s in snapshot_steps(config))


def checkpointers(workdir: str, config) -> tuple[Checkpointer, Checkpointer | None]:
  """The rolling manager (`checkpoint.keep`) and the snapshot one (None if none asked)."""
  rolling = Checkpointer(checkpoint_dir(workdir), max_to_keep=config.checkpoint.keep)
  snaps = (Checkpointer(snapshot_dir(workdir), max_to_keep=None)
           if snapshot_steps(config) else None)
  return rolling, snaps


def save_snapshot(snaps: Checkpointer, step: int, encoder: Any, meta: dict) -> None:
  """A permanent encoder snapshot (state = the encoder: no optimiser, no replay)."""
  snaps.save(step, state={"encoder": encoder}, meta=dict(meta, snapshot=True), encoder=encoder)


def all_encoder_steps(workdir: str) -> list[int]:
  """Every step with an encoder on disk: rolling checkpoints and snapshots together."""
  steps = set()
  for directory in (checkpoint_dir(workdir), snapshot_dir(workdir)):
    if os.path.isdir(directory):
      steps.update(Checkpointer(directory, read_only=True).all_steps())
  return sorted(steps)


def restore_encoder(workdir: str, step: int | None = None) -> tuple[int, Any, dict] | None:
  """Restores only `(step, encoder_variables, meta)` from a run's workdir.

  Returns None if the workdir has no checkpoint. Falls back to older checkpoints when the
  newest cannot be read, like `Checkpointer.restore`. A `step` the rolling checkpoints do
  not hold is looked up in the permanent snapshots (`DIR/snapshots/`); with no rolling
  checkpoint at all, the newest snapshot stands in for the latest.
  """
  directory = checkpoint_dir(workdir)
  snap_directory = snapshot_dir(workdir)
  if os.path.isdir(snap_directory):
    snap_steps = Checkpointer(snap_directory, read_only=True).all_steps()
    rolling = (Checkpointer(directory, read_only=True).all_steps()
               if os.path.isdir(directory) else [])
    if snap_steps and ((step is not None and step not in rolling and step in snap_steps)
                       or (step is None and not rolling)):
      directory = snap_directory
  if not os.path.isdir(directory) and "://" not in directory:
    return None
  ckpt = Checkpointer(directory, read_only=True)
  steps = ckpt.all_steps()
  if not steps:
    return None
  if step is not None and step not in steps:
    raise UserError(f"no checkpoint for step {step} in {directory} (it has {steps}; "
                    f"all encoder steps incl. snapshots: {all_encoder_steps(workdir)}); "
                    "set --config.step to one of those or -1 for the latest.")
  errors = []
  for s in ([step] if step is not None else steps[::-1]):
    try:
      out = ckpt._restore_items(  # pylint: disable=protected-access
          s, encoder=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
      if out.get("encoder") is None:
        raise ValueError("the checkpoint has no 'encoder' item")
      return s, out["encoder"], out["meta"]
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"step {s}: {type(e).__name__}: {str(e).strip()[:200]}")
      logging.warning("Could not read the encoder of checkpoint %d (%s).", s, errors[-1])
  raise UserError(f"no encoder could be restored from {directory} ({'; '.join(errors)}); "
                  "point --workdir at a PALM run's directory or use "
                  "--config.encoder_init=random.")
