r"""A sweep (the `sweep` job's library): many runs from one config, and their results as tables.

    python -m palm_jax.main --config=configs/sweeps/fig5.py:mini --workdir=runs/fig5_mini
    python -m palm_jax.main --config=configs/sweeps/fig5.py --workdir=/shared/fig5 \
        --config.mode=slurm                       # then: bash /shared/fig5/slurm/submit.sh
    python -m palm_jax.main --config=configs/sweeps/fig5.py --workdir=/shared/fig5 \
        --config.mode=aggregate                   # results.csv / results.md of what exists

`config.mode`:
  local      run every unfinished member here, one after another (resumable; failures are
             recorded and the sweep goes on), then aggregate; with `config.population=True`
             the members that differ only in their seed train as one population first
             (palm_jax/palm/population.py: one program, N seeds; what a GPU wants for small
             configs), each into its own folder, then every member's evals run
  expand     only write WORKDIR/runs/<member>/member.json (what would run, and how)
  slurm      write a SLURM job array (WORKDIR/slurm/, launch/slurm_array.sbatch)
  tpu        write a command list for TPU pod slices (WORKDIR/tpu/commands.txt)
  aggregate  WORKDIR/results.csv and results.md from the members' eval/*.json, and the
             `config.plots` figure in WORKDIR/plots/ (palm_jax/experiments/plots.py)

The spec (base, overrides, variants, axes, evals) is palm_jax/experiments/spec.py's; every
member's every stage is validated before anything runs or is written. This job calls the
other jobs only through their command line (`python -m palm_jax.main`) or, with
`executor="inprocess"`, through `palm_jax.main.run_job`: never their internals.
"""
from __future__ import annotations

import os

import jax

from palm_jax.experiments import aggregate as aggregate_lib
from palm_jax.experiments import cluster, runner
from palm_jax.experiments import spec as spec_lib
from palm_jax.runtime import files
from palm_jax.runtime.errors import require

MODES = ("local", "expand", "slurm", "tpu", "aggregate")


def _write_index(members, workdir: str) -> str:
  return files.write_json(os.path.join(workdir, "sweep.json"), {"members": [
      {"index": m.index, "name": m.name, "variant": m.variant,
       "axes": [[k, v] for k, v in m.axes], "workdir": m.workdir} for m in members]})


def _generator_first(config, workdir: str) -> spec_lib.Member | None:
  """`config.generator_gan` (a gan config file, e.g. configs/gan_cifar10_subset.py): the
  generator every member renders, trained once into WORKDIR/gan/ before the members (a
  one-stage pseudo-member, resumable like the others); None when the field is empty."""
  gan_file = config.get("generator_gan", "")
  if not gan_file:
    return None
  path, arg = spec_lib.split_config_file(gan_file)
  stage = spec_lib.Stage("gan", path + (f":{arg}" if arg is not None else ""), ())
  require(spec_lib.resolve(stage.config_file).get("job") == "gan",
          f"config.generator_gan={gan_file!r} is not a gan config (its job is not 'gan'); "
          "name one such as configs/gan_cifar10_subset.py, or leave it empty.")
  return spec_lib.Member(index=-1, name="gan", variant="", axes=(), stages=(stage,),
                         workdir=os.path.join(os.path.abspath(workdir), "gan"))


def run_sweep(config, workdir: str, *, run_job=None) -> None:
  """The sweep of `config` (configs/sweeps/*.py); `run_job(config, workdir)` runs a stage
  in this process (executor "inprocess"; `palm_jax.jobs.run_job`)."""
  mode = config.get("mode", "local")
  require(mode in MODES, f"config.mode={mode!r} is not known; use one of {list(MODES)}.")
  generator = _generator_first(config, workdir)
  if generator is not None:  # every member renders the generator the sweep trains first
    config.overrides = tuple(config.overrides) + (
        ("generator", os.path.join(generator.workdir, "generator.npz")),)
  members = spec_lib.expand(config, workdir)  # validates everything before any work
  conditions = sorted({m.condition for m in members})
  for pair in config.get("contrasts", ()) or ():
    require(len(pair) == 2 and all(c in conditions for c in pair),
            f"config.contrasts has {tuple(pair)!r}; each entry is a pair of the sweep's "
            f"conditions {conditions}.")
  reference = (config.get("plots") or {}).get("reference", "")
  require(not reference or reference in conditions,
          f"config.plots.reference={reference!r} is not one of the sweep's conditions "
          f"{conditions}; name one, or '' for no reference line.")
  if jax.process_index() != 0:
    return  # the sweep's bookkeeping is one process's job; members run as their own jobs
  workdir = os.path.abspath(workdir)
  _write_index(members, workdir)
  title = config.get("title") or f"Sweep {os.path.basename(workdir)}"
  print(f"sweep: {len(members)} members under {workdir}/runs/", flush=True)
  if mode == "expand":
    for m in members:
      runner.write_member_file(m)
      print(f"  {m.name}")
    return
  if mode in ("slurm", "tpu"):
    for m in members:
      runner.write_member_file(m)
    if mode == "slurm":
      out = cluster.write_slurm(members, workdir, config.get("slurm"))
      print(f"sweep: wrote {out['commands']}; submit with\n  bash {out['submit']}\n"
            f"(= {out['sbatch']})\nthen aggregate with --config.mode=aggregate.")
    else:
      out = cluster.write_tpu(members, workdir)
      print(f"sweep: wrote {out['commands']} (line i+1 = member i); with TPU_NAME and ZONE "
            f"exported run one line per slice, e.g.\n  bash -c \"$(sed -n 1p "
            f"{out['commands']})\"\nthen aggregate with --config.mode=aggregate.")
    return
  if generator is not None and mode in ("slurm", "tpu"):
    print(f"sweep: the members render {generator.workdir}/generator.npz: train it before "
          f"they start:\n  python -m palm_jax.main "
          f"{' '.join(generator.stages[0].argv(generator.workdir))}", flush=True)
  if mode == "local" and generator is not None and (
      runner.read_status(generator.workdir).get("state") != "done"):
    print(f"sweep: training the members' generator first ({generator.stages[0].config_file} "
          f"into {generator.workdir}; log in {generator.workdir}/logs/gan.log)", flush=True)
    error = runner.run_member(generator, executor=config.get("executor", "subprocess"),
                              python=config.get("python") or None, run_job=run_job)
    require(error is None, f"the sweep's generator could not be trained: {error}")
  if mode == "local":
    summary = runner.run_local(members, executor=config.get("executor", "subprocess"),
                               run_job=run_job,
                               python=config.get("python") or None,
                               population=bool(config.get("population", False)))
    print(summary.text(len(members)), flush=True)
  plots = config.get("plots") or {}
  matrix = ((plots.get("metric", "linear_eval/test_top1"), plots["x"], plots["y"])
            if plots.get("kind") == "heatmap" else None)
  result = aggregate_lib.aggregate(
      members, workdir, title=title, matrix=matrix,
      contrasts=tuple(tuple(p) for p in config.get("contrasts", ()) or ()),
      contrast_metrics=tuple(config.get("contrast_metrics", ()) or ()))
  print(f"sweep: wrote {result['csv']} and {result['md']}", flush=True)
  if plots.get("kind"):
    from palm_jax.experiments import plots as plots_lib  # pylint: disable=g-import-not-at-top
    path = plots_lib.plot(result["rows"], [k for k, _ in members[0].axes],
                          os.path.join(workdir, "plots"), kind=plots["kind"],
                          metric=plots.get("metric", "linear_eval/test_top1"),
                          x=plots.get("x", ""), y=plots.get("y", ""), title=title,
                          reference=plots.get("reference", ""))
    have = sorted({r["metric"] for r in result["rows"] if r["value"] != ""})
    print(f"sweep: wrote {path}" if path else
          f"sweep: no member has {plots.get('metric')!r} yet; no plot drawn"
          + (f" (the members have: {', '.join(have)}; set config.plots.metric to one)."
             if have else "."), flush=True)
