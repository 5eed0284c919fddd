"""A run's records: its workdir, the config it was trained with, and the resume guard.

`palm_jax.main` calls `check_workdir` and `check_resume_config` before a job starts; the
jobs call `write_config` once their own validation (the config, the data and the generator
loaded) has passed.

Resuming with a changed config: a workdir with a checkpoint was trained with the config in
its newest `config_<job>[.N].json`; a rerun whose config differs in any field outside
`SAFE_FIELDS[job]` (how often to log, evaluate, checkpoint — nothing that changes what is
computed) is refused with the fields named, unless `--allow_config_change` is given.
`write_config` never overwrites a different file: a changed config goes to the next free
`config_<job>.<N>.json`, so every configuration a run used stays on disk.
"""
from __future__ import annotations

import json
import os
import re
import uuid

from absl import logging

from palm_jax.runtime.errors import UserError, require

# Fields that change only what is logged/evaluated/kept, never the computation resumed.
SAFE_FIELDS = {
    "palm": ("log.rollout_every_chunks", "log.rollout_rows", "log.wandb", "eval.",
             "checkpoint.every_chunks", "checkpoint.keep"),
    "atari100k": ("log_every", "checkpoint_every", "checkpoint_keep", "eval_", "log.wandb"),
    "gan": ("log_every_kimg", "sample_every_kimg", "checkpoint_every_kimg",
            "keep_checkpoints", "fid.", "log.wandb"),
}
_NUMBERED = re.compile(r"^config_(?P<job>\w+?)(?:\.(?P<n>\d+))?\.json$")


def check_workdir(workdir: str) -> None:
  """UserError unless `workdir` is a writable directory or can be created as one.

  Creates nothing: the probe file goes to `workdir` or its nearest existing parent.
  """
  if "://" in workdir:
    return
  require(not os.path.exists(workdir) or os.path.isdir(workdir),
          f"--workdir={workdir} is a file, not a directory; pass a directory (it is created "
          "if missing).")
  where = os.path.abspath(workdir)
  while not os.path.exists(where) and os.path.dirname(where) != where:
    where = os.path.dirname(where)
  require(os.path.isdir(where), f"--workdir={workdir} lies under the file {where}; pass a "
          "directory path.")
  try:
    probe = os.path.join(where, f".palm_jax_write_test_{uuid.uuid4().hex}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"--workdir={workdir} is not writable ({e.strerror or e}); pass a "
                    "directory you can write to.") from None


def _flat(tree, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_json(config) -> dict:
  """The config as the JSON a run writes (tuples become lists), for comparisons."""
  return json.loads(config.to_json_best_effort())


def _config_files(workdir: str, job: str) -> list[tuple[int, str]]:
  files = []
  for name in os.listdir(workdir) if os.path.isdir(workdir) else ():
    m = _NUMBERED.match(name)
    if m and m.group("job") == job:
      files.append((int(m.group("n") or 0), os.path.join(workdir, name)))
  return sorted(files)


def _has_checkpoint(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(p.isdigit() for p in os.listdir(directory))


def changed_fields(old: dict, new: dict) -> list[str]:
  a, b = _flat(old), _flat(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_resume_config(workdir: str, job: str, config, allow_change: bool) -> None:
  """Refuses to resume a checkpointed run with a config that changes the computation."""
  if job not in SAFE_FIELDS or "://" in workdir or not _has_checkpoint(workdir):
    return
  files = _config_files(workdir, job)
  if not files:
    return
  with open(files[-1][1]) as f:
    old = json.load(f)
  changed = changed_fields(old, config_json(config))
  unsafe = [k for k in changed if not k.startswith(SAFE_FIELDS[job])]
  if not unsafe:
    return
  shown = ", ".join(f"{k}: {_flat(old).get(k, '<absent>')!r} -> "
                    f"{_flat(config_json(config)).get(k, '<absent>')!r}" for k in unsafe[:8])
  more = f" (and {len(unsafe) - 8} more)" if len(unsafe) > 8 else ""
  if allow_change:
    logging.warning("Resuming %s with a changed config (--allow_config_change): %s%s.",
                    workdir, shown, more)
    return
  raise UserError(f"{workdir} holds a run with a different config ({shown}{more}); use a new "
                  "--workdir, rerun with the original values, or pass --allow_config_change "
                  "to resume with the new ones.")


def write_config(workdir: str, job: str, config) -> str | None:
  """Writes `config_<job>.json` after validation, never over a different one (process 0)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return None
  os.makedirs(workdir, exist_ok=True)
  new = config_json(config)
  files = _config_files(workdir, job)
  if files:
    with open(files[-1][1]) as f:
      if json.load(f) == new:
        return files[-1][1]
  n = files[-1][0] + 1 if files else 0
  path = os.path.join(workdir, f"config_{job}.json" if n == 0 else f"config_{job}.{n}.json")
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(path + ".tmp", path)
  if n:
    logging.info("The config differs from the one this workdir used before; wrote it to %s.",
                 path)
  return path
