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
mid-save leaves only a temporary directory that Orbax ignores. A newest checkpoint that
cannot be read while an older one can is *moved aside* to `DIR/checkpoints/broken/<step>`
(never deleted: it may be worth inspecting) with one warning, so the resumed run can save
that step again; nothing is ever deleted except by `max_to_keep` rotation.

Full disks: `save` first compares the free space of the checkpoint directory with the
size of what it writes (array bytes × `files.SPACE_MARGIN`); a save that still fails (quota,
ENOSPC mid-write) removes its own `*.orbax-checkpoint-tmp*` folder and becomes one
`UserError` sentence; the previous checkpoint is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import math
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from palm_jax.runtime import files
from palm_jax.runtime.errors import UserError

ITEMS = ("state", "encoder", "replay", "meta")
BROKEN = "broken"
AHEAD = "ahead"    # readable steps set aside so that population members resume together
# Orbax warns this on every read-only manager (every restore_encoder, every evaluation), as
# if something were wrong with the directory; reading it is exactly what was asked.
READ_ONLY_NOTICE = "Given directory is read only"


class _DropReadOnlyNotice:
  """A `logging` filter for the one Orbax notice above (other warnings still pass)."""

  def filter(self, record) -> bool:
    return not str(record.msg).startswith(READ_ONLY_NOTICE)


@contextlib.contextmanager
def _without_read_only_notice():
  """absl's logger (Orbax logs through it) drops READ_ONLY_NOTICE inside the block."""
  logger, quiet = logging.get_absl_logger(), _DropReadOnlyNotice()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


def tree_bytes(*trees: Any) -> int:
  """Bytes of all array leaves (arrays or ShapeDtypeStructs) of `trees`, global shapes."""
  total = 0
  for tree in trees:
    for leaf in jax.tree.leaves(tree):
      if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        total += math.prod(leaf.shape) * jax.numpy.dtype(leaf.dtype).itemsize
  return int(total)


def _reason(e: BaseException) -> str:
  """A short readable cause: the first line of the message, cut at 160 characters."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  text = lines[0] if lines else ""
  if any(code in text for code in ("OUT_OF_RANGE", "DATA_LOSS", "Error reading")):
    return "its data files are truncated or corrupt"  # TensorStore's wording is internal
  text = text if len(text) <= 160 else text[:157] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


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
    self._saved = 0
    # Read-only: options a reader does not use are None/False, so Orbax has nothing to warn
    # about ("read_only=True, setting max_to_keep=None", on every evaluation).
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        read_only=read_only, **({"save_interval_steps": 0} if read_only else {}),
        enable_async_checkpointing=async_save)
    with _without_read_only_notice() if read_only else contextlib.nullcontext():
      self._manager = ocp.CheckpointManager(self.directory, options=options,
                                            item_names=ITEMS)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, *, state: Any, meta: dict, encoder: Any = None,
           replay: Any = None) -> None:
    """Saves (asynchronously) the items given; `meta` must be JSON-serialisable.

    Raises a UserError (before writing anything) when the disk lacks room, or when the
    save, or the previous asynchronous one, fails; the last finished checkpoint stays.
    """
    try:
      self._manager.wait_until_finished()  # the previous async save's errors surface here
    except Exception as e:  # pylint: disable=broad-except
      raise self._failed_save(None, e) from None
    files.check_free_space(self.directory, tree_bytes(state, encoder, replay),
                     f"the checkpoint of step {int(step):,}")
    items = {"state": ocp.args.StandardSave(state),
             "meta": ocp.args.JsonSave(dict(meta, step=int(step)))}
    if encoder is not None:
      items["encoder"] = ocp.args.StandardSave(encoder)
    if replay is not None:
      items["replay"] = ocp.args.StandardSave(replay)
    try:
      self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # pylint: disable=broad-except
      raise self._failed_save(int(step), e) from None
    # One line for the first save; the rest at debug level (`--verbosity=1`), so a long run
    # does not print a line per checkpoint (stops and the end say where they saved).
    log = logging.info if not self._saved else logging.debug
    log("Saving checkpoint %s (%s) to %s%s.", f"{int(step):,}",
        files.mib(tree_bytes(state, encoder, replay)), self.directory,
        "" if self._saved else "; later saves are logged with --verbosity=1")
    self._saved += 1

  def _failed_save(self, step: int | None, e: BaseException) -> UserError:
    """Removes the unfinished step folders and words the failure as one sentence."""
    if jax.process_index() == 0 and "://" not in self.directory:
      for tmp in glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*")):
        shutil.rmtree(tmp, ignore_errors=True)
    kept = [s for s in self.all_steps() if step is None or s != step]
    try:
      self._manager.reload()
      kept = self.all_steps()
    except Exception:  # pylint: disable=broad-except
      pass
    last = (f"the last finished checkpoint (step {kept[-1]:,}) is intact" if kept
            else "no earlier checkpoint exists")
    full = any(isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT)
               for x in (e, e.__cause__, e.__context__))
    fix = ("free disk space and rerun to resume" if full else
           f"rerun to resume; if it fails again at this step, move {self.directory}/{step} "
           "aside" if step is not None else "rerun to resume")
    return UserError(f"saving the checkpoint{'' if step is None else f' of step {step:,}'} in "
                     f"{self.directory} failed ({_reason(e)}); {last}; {fix}.")

  def set_aside_after(self, step: int, why: str) -> None:
    """Moves the (readable) step folders newer than `step` to `DIR/ahead/<step>`, so the run
    resumes from `step` and saves its later steps afresh; `why` ends the warning."""
    newer = [s for s in self.all_steps() if s > step]
    self._move_aside(newer, step, {s: why for s in newer}, folder=AHEAD,
                     message="Checkpoint %d is kept aside (%s); moved it to %s and resumed "
                             "from step %d.")

  def _move_aside(self, steps: list[int], kept: int, reasons: dict, *, folder: str = BROKEN,
                  message: str = "Checkpoint %d cannot be read (%s); moved it to %s and "
                                 "resumed from step %d.") -> None:
    """Moves step folders to `DIR/<folder>/<step>` (process 0, `DIR/broken/` by default:
    unreadable ones) and reloads."""
    if jax.process_index() == 0:
      aside = os.path.join(self.directory, folder)
      os.makedirs(aside, exist_ok=True)
      for s in steps:
        dest, i = os.path.join(aside, str(s)), 1
        while os.path.exists(dest):  # an earlier run already moved a step of this number
          dest, i = os.path.join(aside, f"{s}.{i}"), i + 1
        os.replace(os.path.join(self.directory, str(s)), dest)
        logging.warning(message, s, reasons[s], dest, kept)
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("palm_jax_checkpoint_move_aside")
    self._manager.reload()

  def _restore_items(self, step: int, **items) -> dict:
    return dict(self._manager.restore(step, args=ocp.args.Composite(**items)).items())

  def restore(self, state_template: Any, *, step: int | None = None,
              replay_template: Any = None) -> tuple[int, Any, Any, dict] | None:
    """Restores `(step, state, replay, meta)` from `step` or the newest readable one.

    `state_template` (and `replay_template`) are pytrees of arrays (or ShapeDtypeStructs)
    whose shapes, dtypes and shardings the restored arrays take. Returns None when the
    directory holds no checkpoint. Newer checkpoints that cannot be read while an older one
    can are moved to `DIR/broken/<step>` with one warning each; if none can be read (a
    changed config, say), nothing is moved and a UserError names the directory.
    """
    steps = self.all_steps()
    if not steps:
      return None
    candidates = [step] if step is not None else steps[::-1]
    if step is not None and step not in steps:
      raise UserError(f"no checkpoint for step {step} in {self.directory} (it has {steps}); "
                      "pass one of those steps or none for the latest.")
    errors, failed, reasons = [], [], {}
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
            if failed:
              self._move_aside(failed, s, reasons)
            return s, out["state"], None, out["meta"]
          except Exception:  # pylint: disable=broad-except
            pass
        reasons[s] = _reason(e)
        errors.append(f"step {s}: {reasons[s]}")
        failed.append(s)
        continue
      if failed:  # an older step reads with the same template: the newer ones are broken
        self._move_aside(failed, s, reasons)
      return s, out["state"], out.get("replay"), out["meta"]
    raise UserError(
        f"no checkpoint in {self.directory} could be restored into this run's state "
        f"({'; '.join(errors)}); if the config changed, use a new --workdir, otherwise move "
        "the broken checkpoint directories aside.")

  def wait(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._failed_save(None, e) from None

  def close(self) -> None:
    self.wait()
    self._manager.close()


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def snapshot_dir(workdir: str) -> str:
  return os.path.join(workdir, "snapshots")


def validate_snapshot_steps(snapshot_steps, steps_per_chunk: int, total_steps: int) -> None:
  """Snapshots are written at chunk ends, so each step must be one (checked before compiling)."""
  for s in snapshot_steps:
    if s <= 0 or s % steps_per_chunk or s > total_steps:
      near = max(steps_per_chunk, round(s / steps_per_chunk) * steps_per_chunk)
      raise UserError(
          f"config.checkpoint.snapshot_steps holds {s}, which is not a chunk boundary in "
          f"(0, {total_steps:,}]; use multiples of env.num_envs * log.chunk_iterations = "
          f"{steps_per_chunk:,} (e.g. {min(near, total_steps)}).")


def snapshot_due(snapshot_steps, prev_steps: int, steps: int) -> bool:
  """Whether a snapshot step lies in `(prev_steps, steps]` (the chunk just run)."""
  return any(prev_steps < s <= steps for s in snapshot_steps)


def checkpointers(workdir: str, keep: int, snapshot_steps=()
                  ) -> tuple[Checkpointer, Checkpointer | None]:
  """The rolling manager (`keep` checkpoints) and the snapshot one (None if no steps)."""
  rolling = Checkpointer(checkpoint_dir(workdir), max_to_keep=keep)
  snaps = (Checkpointer(snapshot_dir(workdir), max_to_keep=None)
           if snapshot_steps else None)
  return rolling, snaps


def set_aside_stale_snapshots(snaps: Checkpointer | None, step: int) -> None:
  """Before a run goes on from env step `step`: snapshots after it were written by an attempt
  killed before its next checkpoint (SIGKILL, a lost machine). The run saves them again when
  it gets there, so the old ones move to `snapshots/ahead/` instead of blocking that save."""
  if snaps is not None:
    snaps.set_aside_after(step, f"an earlier attempt saved it after step {step:,}, where this "
                          "run starts; it is saved again when the run gets there")


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


def has_encoder(workdir: str) -> bool:
  """Whether the run has an encoder to evaluate: a rolling checkpoint or a snapshot (a run
  cut short before its first checkpoint still has its snapshots)."""
  if "://" in workdir:
    return True
  return any(os.path.isdir(d) and any(p.isdigit() for p in os.listdir(d))
             for d in (checkpoint_dir(workdir), snapshot_dir(workdir)))


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
