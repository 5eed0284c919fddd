"""A sweep for a cluster: a SLURM job array, or a command list for TPU pod slices.

Both write one shell line per member (line i = member i), each self-contained and resumable:
it skips a member whose `DONE` marker exists, runs the member's stages in order (training,
then every eval: the same `python -m palm_jax.main ...` command lines as the local runner,
palm_jax/experiments/runner.py) and writes `DONE` when all succeeded. A rerun of a line
resumes the member's training from its own checkpoints. `mode=aggregate` afterwards reads
the same folder.

SLURM (`mode=slurm`): `WORKDIR/slurm/commands.txt` and `WORKDIR/slurm/submit.sh`, which calls

    sbatch --array=0-<N-1>%<max_parallel> launch/slurm_array.sbatch

with COMMANDS=commands.txt; array task i runs line i + 1 with `$PYTHON` (default the repo's
.venv) on one node: one process that drives the task's GPUs (a JAX process sees every GPU
SLURM gives it). Resubmitting the same script reruns only unfinished members.

TPU (`mode=tpu`): `WORKDIR/tpu/commands.txt`, one line per member: each stage through
`launch/tpu_pod.sh run` (every worker of the slice runs the stage, `--distributed`), the
DONE check and marker through `gcloud ... ssh --worker=0`. With TPU_NAME/ZONE exported,
`bash -c "$(sed -n 3p WORKDIR/tpu/commands.txt)"` runs member 2 on that slice; several
slices run different lines in parallel (e.g. one `xargs` worker per slice).
"""
from __future__ import annotations

import os
import shlex
from typing import Sequence

from palm_jax.experiments import spec as spec_lib


def _python_cmd(stage: spec_lib.Stage, workdir: str) -> str:
  # $PYTHON is expanded when the line runs (launch/slurm_array.sbatch exports the venv's).
  return '"${PYTHON:-python}" -m palm_jax.main ' + " ".join(
      shlex.quote(a) for a in stage.argv(workdir))


def slurm_line(member: spec_lib.Member) -> str:
  """`test -f DONE || { stage && stage && touch DONE; }` for one member."""
  done = shlex.quote(os.path.join(member.workdir, "DONE"))
  stages = " && ".join(_python_cmd(s, member.workdir) for s in member.stages)
  return f"test -f {done} || {{ {stages} && touch {done}; }}"


def tpu_line(member: spec_lib.Member) -> str:
  """The member's stages through launch/tpu_pod.sh, DONE checked/written on worker 0."""
  done = shlex.quote(os.path.join(member.workdir, "DONE"))
  ssh0 = ('gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project=$'
          'PROJECT} --worker=0 --command=')
  runs = []
  for s in member.stages:
    extra = " ".join(shlex.quote(a) for a in s.argv(member.workdir)[2:])
    runs.append(f"CONFIG={shlex.quote(s.config_file)} WORKDIR={shlex.quote(member.workdir)} "
                f"EXTRA={shlex.quote(extra)} launch/tpu_pod.sh run")
  return (f"if {ssh0}{shlex.quote('test -f ' + done)}; then echo 'done: {member.name}'; "
          f"else {' && '.join(runs)} && {ssh0}{shlex.quote('touch ' + done)}; fi")


def _write(path: str, text: str, executable: bool = False) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  if executable:
    os.chmod(path, 0o755)
  return path


def write_slurm(members: Sequence[spec_lib.Member], workdir: str, slurm) -> dict:
  """commands.txt + submit.sh under WORKDIR/slurm/; returns their paths and the sbatch line."""
  workdir = os.path.abspath(workdir)
  commands = _write(os.path.join(workdir, "slurm", "commands.txt"),
                    "".join(slurm_line(m) + "\n" for m in members))
  slurm = dict(slurm or {})
  limit = int(slurm.get("max_parallel", 0) or 0)
  array = f"0-{len(members) - 1}" + (f"%{limit}" if limit > 0 else "")
  opts = [f"--array={array}", f"--job-name={slurm.get('job_name') or 'palm_sweep'}",
          f"--output={os.path.join(workdir, 'slurm', '%x-%A_%a.out')}"]
  for key, flag in (("partition", "--partition"), ("time", "--time"),
                    ("gpus", "--gpus-per-node"), ("cpus", "--cpus-per-task"),
                    ("mem", "--mem")):
    if slurm.get(key):
      opts.append(f"{flag}={slurm[key]}")
  opts += list(slurm.get("extra_args", ()) or ())
  sbatch = (f"COMMANDS={shlex.quote(commands)} REPO={shlex.quote(str(spec_lib.REPO))} "
            f"sbatch {' '.join(shlex.quote(o) for o in opts)} "
            f"{shlex.quote(str(spec_lib.REPO / 'launch' / 'slurm_array.sbatch'))}")
  submit = _write(os.path.join(workdir, "slurm", "submit.sh"),
                  "#!/usr/bin/env bash\n# Submits the sweep's members as one SLURM job array "
                  "(resubmit to finish the rest).\nset -euo pipefail\n" + sbatch + "\n",
                  executable=True)
  return {"commands": commands, "submit": submit, "sbatch": sbatch}


def write_tpu(members: Sequence[spec_lib.Member], workdir: str) -> dict:
  """WORKDIR/tpu/commands.txt: one line per member (see module doc)."""
  workdir = os.path.abspath(workdir)
  commands = _write(os.path.join(workdir, "tpu", "commands.txt"),
                    "".join(tpu_line(m) + "\n" for m in members))
  return {"commands": commands}
