"""Runs a sweep's members on this machine, one after another, resumably.

Per member folder (`WORKDIR/runs/<name>/`):

    member.json    the member: name, variant, axis values, every stage's command line and
                   resolved config (written before anything runs)
    status.json    {"state": "running" | "done" | "failed", "completed": [stage, ...],
                    "stage": the stage running or failed, "error": one sentence, seconds}
    DONE           written after the last stage succeeded: the member is finished
    logs/<stage>.log  the stage's stdout and stderr (subprocess executor)

A member with `DONE` is skipped. Otherwise its stages not yet in `completed` run in order:
an interrupted training stage simply runs again and the palm job resumes from its own
checkpoints in the folder; a finished stage is not repeated. A failing stage marks the member
failed with the one-sentence error and the sweep goes on with the next member; a rerun
of the sweep retries failed members.

Executor. Each stage runs as a subprocess `python -m palm_jax.main ...` by default: a crash
(XLA abort, out-of-memory kill, a NaN stop) takes down only that member; device memory and
compiled programs are released between members (a sweep mixes shapes and generators); and
it is exactly the command a cluster runs (palm_jax/experiments/cluster.py), which the
member.json records for hand reruns. The price is one interpreter start and compilation per
stage (seconds; XLA's persistent cache takes the recompilation away when
JAX_COMPILATION_CACHE_DIR is set). `executor="inprocess"` calls `palm_jax.jobs.run_job` in
this process instead: no isolation, but lets tests register a fake job.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from typing import Callable, Sequence

from absl import logging

from palm_jax.experiments import spec as spec_lib
from palm_jax.runtime import files
from palm_jax.runtime.errors import UserError, require

DONE_FILE = "DONE"
STATUS_FILE = "status.json"
MEMBER_FILE = "member.json"


def read_status(member_dir: str) -> dict:
  """The member's status.json (`{}` when absent or unreadable); DONE wins over it."""
  status = {}
  try:
    with open(os.path.join(member_dir, STATUS_FILE)) as f:
      status = json.load(f)
  except (OSError, ValueError):
    pass
  if os.path.exists(os.path.join(member_dir, DONE_FILE)):
    status["state"] = "done"
  return status


def write_member_file(member: spec_lib.Member) -> None:
  """`member.json`: what this member is and exactly how each stage is run."""
  stages = []
  for stage in member.stages:
    config = spec_lib.resolve(stage.config_file, stage.overrides)
    stages.append({"name": stage.name, "config_file": stage.config_file,
                   "overrides": [[k, v] for k, v in stage.overrides],
                   "command": ["python", "-m", "palm_jax.main",
                               *stage.argv(member.workdir)],
                   "config": json.loads(config.to_json_best_effort())})
  files.write_json(os.path.join(member.workdir, MEMBER_FILE), {
      "name": member.name, "index": member.index, "variant": member.variant,
      "axes": [[k, v] for k, v in member.axes], "stages": stages})


_ERROR_LINE = re.compile(r"^(error: .+|[A-Za-z_.]*(Error|Exception|Interrupt)\b.*)$")


def error_sentence(output: str, returncode: int) -> str:
  """The one line that says why a stage failed: main's `error: ...`, else the exception."""
  lines = [l.strip() for l in output.splitlines() if l.strip()]
  for line in reversed(lines):
    if line.startswith("error: "):
      return line[len("error: "):]
  for line in reversed(lines):
    if _ERROR_LINE.match(line):
      return line
  if returncode < 0:
    return f"killed by signal {-returncode} (out of memory?); see the stage's log."
  return f"exit status {returncode}; see the stage's log."


def _run_subprocess(stage: spec_lib.Stage, member: spec_lib.Member, python: str) -> str | None:
  """Runs a stage as `python -m palm_jax.main`; None on success, else the error sentence."""
  log_path = os.path.join(member.workdir, "logs", f"{stage.name}.log")
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  cmd = [python, "-m", "palm_jax.main", *stage.argv(member.workdir)]
  with open(log_path, "a") as log:
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=str(spec_lib.REPO), stdout=log, stderr=subprocess.STDOUT,
                          check=False)
  if proc.returncode == 0:
    return None
  with open(log_path) as f:
    tail = f.read()[-20000:]
  return error_sentence(tail, proc.returncode)


def _run_inprocess(stage: spec_lib.Stage, member: spec_lib.Member, run_job) -> str | None:
  require(run_job is not None, "config.executor='inprocess' needs the job dispatch "
          "(palm_jax.jobs.run_job); run the sweep through palm_jax.main.")
  try:
    run_job(spec_lib.resolve(stage.config_file, stage.overrides), member.workdir)
  except UserError as e:
    return str(e)
  except Exception as e:  # pylint: disable=broad-except
    # A failing member must not stop the sweep; the log keeps the traceback.
    logging.exception("member %s stage %s failed", member.name, stage.name)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
  return None


@dataclasses.dataclass
class Summary:
  """What a local sweep did: member names per outcome, and each failure's sentence."""
  ran: list = dataclasses.field(default_factory=list)
  skipped: list = dataclasses.field(default_factory=list)
  failed: dict = dataclasses.field(default_factory=dict)

  def text(self, total: int) -> str:
    lines = [f"sweep: {total} members: {len(self.ran)} ran, {len(self.skipped)} already "
             f"done (skipped), {len(self.failed)} failed."]
    lines += [f"  FAILED {name}: {err}" for name, err in self.failed.items()]
    return "\n".join(lines)


def run_member(member: spec_lib.Member, *, executor: str = "subprocess",
               python: str | None = None, run_job=None,
               on_stage: Callable[[spec_lib.Member, str], None] | None = None) -> str | None:
  """Runs the member's unfinished stages; None when it is done, else the error sentence."""
  status = read_status(member.workdir)
  completed = list(status.get("completed", []))
  start = time.time()
  for stage in member.stages:
    if stage.name in completed:
      continue
    files.write_json(os.path.join(member.workdir, STATUS_FILE), {
        "state": "running", "stage": stage.name, "completed": completed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if on_stage is not None:
      on_stage(member, stage.name)
    logging.info("sweep member %s: stage %s", member.name, stage.name)
    if executor != "inprocess":
      print(f"  {stage.name}: {os.path.join(member.workdir, 'logs', stage.name + '.log')}",
            flush=True)
    t0 = time.time()
    if executor == "inprocess":
      error = _run_inprocess(stage, member, run_job)
    else:
      error = _run_subprocess(stage, member, python or sys.executable)
    if error is not None:
      files.write_json(os.path.join(member.workdir, STATUS_FILE), {
          "state": "failed", "stage": stage.name, "completed": completed, "error": error,
          "seconds": round(time.time() - t0, 1)})
      return error
    completed.append(stage.name)
  files.write_json(os.path.join(member.workdir, STATUS_FILE), {
      "state": "done", "completed": completed, "seconds": round(time.time() - start, 1)})
  with open(os.path.join(member.workdir, DONE_FILE), "w") as f:
    f.write(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
  return None


# Jobs whose training stage accepts `config.population` (palm_jax/palm/population.py).
POOLABLE_JOBS = ("palm",)
_NO_ENVIRONMENT_PAIRS = ("real", "real_aug")  # offline SimSiam (representation/offline.py)


def _poolable(config) -> bool:
  """Whether a member's training config can run inside a population (palm, playing)."""
  pairs = config.get("simsiam", {}).get("pairs", "temporal")
  return (config.get("job") in POOLABLE_JOBS and "seeds" in config.get("population", {})
          and pairs not in _NO_ENVIRONMENT_PAIRS
          and not config.get("experience", {}).get("log", False))


def population_groups(members: Sequence[spec_lib.Member]) -> list[list[spec_lib.Member]]:
  """Members whose training differs only in the seed and can share one population run
  (`config.population=True` sweeps); members that cannot are left out (they run alone)."""
  groups: dict[str, list] = {}
  for m in members:
    train = m.stages[0]
    if m.seed is None or not _poolable(spec_lib.resolve(train.config_file, train.overrides)):
      continue
    groups.setdefault(m.condition, []).append(m)
  return list(groups.values())


def group_stage(group: Sequence[spec_lib.Member]) -> tuple[spec_lib.Stage, str]:
  """The one training stage of `group` (a population of its seeds, each member trained
  into its own folder) and the population's own folder, `WORKDIR/populations/<condition>`."""
  train = group[0].stages[0]
  fixed = tuple((k, v) for k, v in train.overrides if k != spec_lib.SEED_KEY)
  stage = spec_lib.Stage("train", train.config_file, fixed + (
      ("population.seeds", tuple(int(m.seed) for m in group)),
      ("population.workdirs", tuple(m.workdir for m in group))))
  runs = os.path.dirname(group[0].workdir)
  return stage, os.path.join(os.path.dirname(runs), "populations",
                             group[0].condition or "run")


def _train_populations(members, summary: Summary, executor: str, python: str | None, run_job,
                       on_stage) -> None:
  """Trains each population group's unfinished members in one run; marks their training
  done (or failed) in every member's status, so `run_member` goes on with the evals."""
  for group in population_groups(members):
    todo = [m for m in group if read_status(m.workdir).get("state") != "done"
            and "train" not in read_status(m.workdir).get("completed", [])]
    if not todo:
      continue
    stage, workdir = group_stage(todo)
    pseudo = spec_lib.Member(-1, f"population {todo[0].condition or 'run'}", todo[0].variant,
                             (), (stage,), workdir)
    print(f"sweep: population of {len(todo)} ({', '.join(m.name for m in todo)}) in {workdir}",
          flush=True)
    for m in todo:
      files.write_json(os.path.join(m.workdir, STATUS_FILE), {
          "state": "running", "stage": "train", "completed": [], "population": workdir})
      if on_stage is not None:
        on_stage(m, "train")
    t0 = time.time()
    error = (_run_inprocess(stage, pseudo, run_job) if executor == "inprocess"
             else _run_subprocess(stage, pseudo, python or sys.executable))
    for m in todo:
      if error is None:
        files.write_json(os.path.join(m.workdir, STATUS_FILE), {
            "state": "running", "completed": ["train"], "population": workdir,
            "seconds": round(time.time() - t0, 1)})
      else:
        files.write_json(os.path.join(m.workdir, STATUS_FILE), {
            "state": "failed", "stage": "train", "completed": [], "error": error,
            "population": workdir, "seconds": round(time.time() - t0, 1)})
        summary.failed[m.name] = error
    if error is not None:
      print(f"sweep: population {workdir} FAILED: {error}", flush=True)


def run_local(members: Sequence[spec_lib.Member], *, executor: str = "subprocess",
              python: str | None = None, on_stage=None, population: bool = False,
              run_job=None) -> Summary:
  """Runs every member not yet done, one after another; failures are recorded, not raised.

  `population=True`: first, the members that differ only in their seed train together as
  one population (palm_jax/palm/population.py, one program for all seeds), each into its own
  folder; then every member's evaluations run as usual."""
  if executor not in ("subprocess", "inprocess"):
    raise UserError(f"config.executor={executor!r} is not known; use 'subprocess' (isolated, "
                    "the default) or 'inprocess'.")
  summary = Summary()
  for member in members:
    write_member_file(member)
  if population:
    _train_populations(members, summary, executor, python, run_job, on_stage)
  for member in members:
    if member.name in summary.failed:
      continue  # its population's training failed: recorded above, retried on a rerun
    if read_status(member.workdir).get("state") == "done":
      summary.skipped.append(member.name)
      continue
    print(f"sweep: member {member.index + 1}/{len(members)} {member.name}", flush=True)
    error = run_member(member, executor=executor, python=python, run_job=run_job,
                       on_stage=on_stage)
    if error is None:
      summary.ran.append(member.name)
    else:
      summary.failed[member.name] = error
      print(f"sweep: member {member.name} FAILED: {error}", flush=True)
  return summary
