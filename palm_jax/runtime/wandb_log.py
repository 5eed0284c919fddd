"""Weights & Biases logging, optional: the scalars and pictures `MetricWriter` writes, for
the palm, gan and atari100k jobs (their configs' `log` group: `config_fields`), and final
numbers as the run's summary (`set_summary`: the palm job's probe, the Atari score; the
linear_eval and ood_eval jobs add theirs to the summary of the run they evaluate:
`evaluation_settings`).

    python -m palm_jax.main --config=configs/smoke.py --workdir=runs/smoke \
        --config.log.wandb=True --config.log.wandb_project=my_project

`config.log.wandb` (False by default) turns it on; `wandb` is then imported, and a missing
package is one sentence before anything compiles (`require_installed`). Only the writer of
process 0 opens a run (`MetricWriter.enabled`), so a multi-host job is one W&B run.

One workdir is one W&B run. Its id is kept in `WORKDIR/wandb_run.json` (written atomically
before `wandb.init`), and a rerun of the same workdir passes it back with `resume="allow"`:
W&B's documented behaviour (https://docs.wandb.ai/guides/runs/resuming) is to continue the
run with that id when it exists, and to start one with that id when it does not, so a run
resumed from its checkpoint goes on in the same W&B run. The history of a W&B run is indexed
by a step that must increase: points at steps below the resumed run's next step (those a
resumed job redoes after its checkpoint) are not sent again; `metrics.jsonl` holds the redone
values.

The run's files go to `WORKDIR/wandb/` (or to `$WANDB_DIR` when set). W&B's own environment
variables keep their meaning: `WANDB_MODE=offline` logs to those local files only, for
machines without internet, and `wandb sync WORKDIR/wandb/offline-run-*` uploads them later
(https://docs.wandb.ai/support/run_wandb_offline/). Populations open one run per member in
one process, which needs `reinit="create_new"` (W&B >= 0.19.10).
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from palm_jax.runtime import files
from palm_jax.runtime.errors import UserError, require

RUN_FILE = "wandb_run.json"  # {"id": ..., "project": ..., "entity": ...} of the workdir's run
_INSTALL = "pip install wandb (or pip install 'palm_jax[wandb]')"


def config_fields() -> ml_collections.ConfigDict:
  """The `config.log` fields of W&B logging, off, for every job config that logs (palm, gan,
  atari100k): `--config.log.wandb=True` turns it on."""
  return ml_collections.ConfigDict({
      "wandb": False,
      "wandb_project": "palm_jax",
      "wandb_entity": "",     # "" = your default entity
      "wandb_group": "",      # sweeps set it to the sweep's name ("" = no group)
      "wandb_tags": (),       # e.g. ("cifar10", "ablation")
  })


@dataclasses.dataclass(frozen=True)
class Settings:
  """Where a writer logs on W&B (`config.log.wandb*`); `config` is the run's config, flat."""
  enabled: bool = False
  project: str = "palm_jax"
  entity: str = ""              # "" = the logged-in user's default entity
  group: str = ""               # runs of one sweep share it ("" = no group)
  tags: tuple[str, ...] = ()
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_config(cls, config) -> Settings:
    """The settings of `config.log` (disabled for configs without `log.wandb`)."""
    log = config.get("log") or {}
    if not log.get("wandb", False):
      return cls()
    project = log.get("wandb_project", "palm_jax")
    tags = log.get("wandb_tags", ())
    require(isinstance(project, str) and project.strip() != "",
            f"config.log.wandb_project={project!r} must name a W&B project, e.g. 'palm_jax'.")
    require(isinstance(tags, (list, tuple)) and all(isinstance(t, str) for t in tags),
            f"config.log.wandb_tags={tags!r} must be a tuple of strings, e.g. "
            "\"('cifar10', 'ablation')\".")
    return cls(True, project, str(log.get("wandb_entity", "")),
               str(log.get("wandb_group", "")), tuple(tags), flat_config(config))


def evaluation_settings(config, workdir: str) -> Settings:
  """The settings of an evaluation job (linear_eval, ood_eval) on the run in `workdir`: its
  numbers join the summary of the W&B run that training logged to, so the project and entity
  are the ones recorded in `workdir/wandb_run.json` when it exists (whatever the evaluation's
  config names), and no config is sent: the evaluation's fields (`seed`, `data.*`) would
  overwrite the training run's fields of the same names."""
  settings = Settings.from_config(config)
  if not settings.enabled:
    return settings
  try:
    with open(os.path.join(workdir, RUN_FILE)) as f:
      recorded = json.load(f)
    settings = dataclasses.replace(settings, project=str(recorded["project"]),
                                   entity=str(recorded.get("entity", "")))
  except (OSError, ValueError, KeyError):  # no training run logged here: a new W&B run
    pass
  return dataclasses.replace(settings, config={})


def flat_numbers(tree: Mapping[str, Any], prefix: str) -> dict[str, float]:
  """The numbers of a result record (nested dicts) as `{prefix/key/subkey: value}`; lists,
  strings and booleans are left out (W&B's summary shows single values)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flat_numbers(v, f"{prefix}/{k}"))
    elif isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)):
      out[f"{prefix}/{k}"] = float(v)
  return out


def flat_config(config) -> dict:
  """`config` as `{"env.alpha": 0.5, ...}` (the JSON a run writes, dotted keys), W&B's
  run config: its tables filter and group runs by these names."""
  def flat(tree, prefix):
    out = {}
    for k, v in tree.items():
      if isinstance(v, dict) and v:
        out.update(flat(v, f"{prefix}{k}."))
      else:
        out[f"{prefix}{k}"] = v
    return out
  return flat(json.loads(config.to_json_best_effort()), "")


def _import_wandb():
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return wandb


def require_installed(settings: Settings) -> None:
  """UserError when W&B logging is on and `wandb` cannot be imported (call before compiling;
  every process checks, so none waits on a coordinator that failed)."""
  if settings.enabled and _import_wandb() is None:
    raise UserError(f"config.log.wandb=True but the wandb package is not installed; "
                    f"{_INSTALL}, or set --config.log.wandb=False.")


def _run_id(workdir: str, settings: Settings) -> str:
  """The workdir's run id: the one recorded in `RUN_FILE`, else a new one recorded now."""
  path = os.path.join(workdir, RUN_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        return str(json.load(f)["id"])
    except (OSError, ValueError, KeyError) as e:
      logging.warning("Could not read the W&B run id in %s (%s); starting a new W&B run.",
                      path, e)
  run_id = uuid.uuid4().hex[:16]
  files.write_json(path, {"id": run_id, "project": settings.project,
                          "entity": settings.entity}, all_processes=True)
  return run_id


class Run:
  """The W&B run of one workdir, opened (or resumed) on construction, finished by `close`."""

  def __init__(self, workdir: str, settings: Settings):
    wandb = _import_wandb()
    if wandb is None:  # checked before compiling (`require_installed`); kept for callers
      require_installed(settings)
    self._wandb = wandb
    run_id = _run_id(workdir, settings)
    where = os.environ.get("WANDB_DIR") or ("" if "://" in workdir else workdir)
    try:
      self._run = wandb.init(
          project=settings.project, entity=settings.entity or None,
          group=settings.group or None, tags=list(settings.tags) or None,
          name=os.path.basename(os.path.abspath(workdir)), id=run_id, resume="allow",
          dir=where or None, reinit="create_new")
    except wandb.errors.Error as e:
      raise UserError(f"wandb.init failed for the W&B run {run_id} of {workdir} ({e}); run "
                      "`wandb login` (or set WANDB_API_KEY), set WANDB_MODE=offline to log "
                      "locally, or set --config.log.wandb=False.") from None
    # A resumed run may carry a changed config (--allow_config_change): the new values win.
    self._run.config.update(dict(settings.config), allow_val_change=True)
    # A resumed run's history goes on from its next step (W&B: "resumes from last step").
    self._next_step = int(getattr(self._run, "starting_step", 0) or 0)
    logging.info("Logging to W&B: project %s, run %s%s.", settings.project, run_id,
                 f" (group {settings.group})" if settings.group else "")

  def _log(self, step: int, data: dict) -> None:
    if step < self._next_step:  # redone after a resume: W&B keeps the first values
      return
    self._run.log(data, step=step)
    self._next_step = step

  def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """One history point per scalar at `step` (the step of `metrics.jsonl`)."""
    if scalars:
      self._log(int(step), dict(scalars))

  def log_image(self, step: int, name: str, image) -> None:
    """An `[H, W, C]` uint8 picture (C = 1 or 3) as a `wandb.Image` at `step`."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    self._log(int(step), {name: self._wandb.Image(image)})

  def set_summary(self, values: Mapping[str, float]) -> None:
    """Final numbers (the end-of-training probe): W&B's run summary, the single values its
    runs table shows and sorts by, without a history point (whose step could not follow a
    resumed run's last one)."""
    self._run.summary.update({k: float(v) for k, v in values.items()
                              if np.isfinite(float(v))})

  def close(self) -> None:
    """Finishes the run (W&B writes its last records); a failure is a warning, since the
    training it logged is done and saved."""
    run, self._run = self._run, None
    if run is None:
      return
    try:
      run.finish()
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Finishing the W&B run failed (%s); metrics.jsonl and tb/ are complete.",
                      e)


def write_summary(workdir: str, settings: Settings, values: Mapping[str, float]) -> None:
  """Adds `values` to the summary of the workdir's W&B run (process 0; nothing when off)."""
  if not settings.enabled or jax.process_index() != 0:
    return
  run = Run(workdir, settings)
  try:
    run.set_summary(values)
  finally:
    run.close()
