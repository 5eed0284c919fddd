r"""The one entry point: `python -m palm_jax.main --config=configs/<x>.py --workdir=DIR`.

Any config field can be overridden on the command line, e.g.
`--config.env.num_envs=1024 --config.seed=3`; a field that does not exist, one value given
to a group of fields (`--config.data=...` where `data` has `train`, `test`, ...) or an
argument after `FILE:` that the file's `get_config` does not take is answered in one
sentence (exit status 2). `config.job` picks the job:

  palm         PALM pretraining (latent environments + SimSiam + SAC + APT reward);
               with config.population.seeds, N members in one program (population.py)
  passive      the palm job's encoder trained on a palm run's experience log (no play)
  gan          train a StyleGAN2 generator on a dataset
  linear_eval  linear probe of a run's encoder
  ood_eval     out-of-distribution detection with a run's encoder
  coverage     how many training images generated ones cover (uniform vs PALM, Table 3)
  cas          classification accuracy score of conditional generators (class content)
  sample       render a class-by-sample grid from a generator
  atari100k    DrQ(ε) on one Atari 100k game, then evaluation (configs/atari/drq.py:<game>)
  collect      Atari frames from N emulators into a frame log (configs/atari/collect.py:<game>)
  sweep        many runs of another job (grid/variants x seeds) and their results tables

Multi-host: pass `--distributed` (or set PALM_JAX_DISTRIBUTED=1) and every process calls
`jax.distributed.initialize()`; on TPU pods and SLURM the coordinator is found
automatically, elsewhere give `--coordinator_address`, `--num_processes`, `--process_id`.

Exit status: 0 done; 2 a mistake the user can fix (one sentence on stderr, nothing
compiled); 3 stopped by SIGTERM/SIGINT after saving a checkpoint — rerun the same command
to resume (`palm_jax.runtime.preemption`); 130 interrupted before anything could be saved.
A workdir holding a run refuses a config that changes the computation unless
`--allow_config_change` is given (`palm_jax.runtime.run_records`).
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from palm_jax import jobs
from palm_jax.runtime import compile_cache, preemption
from palm_jax.runtime.errors import UserError

JOBS = jobs.JOBS  # config.job -> module (palm_jax/jobs/)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, images.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("PALM_JAX_DISTRIBUTED", "0") == "1",
    "Call jax.distributed.initialize() (multi-host runs).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host, not TPU/SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a run although config fields that change the "
    "computation differ from the run's config_<job>.json (they are logged).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs on disk so a restart or resume "
    "skips compilation (see palm_jax/runtime/compile_cache.py for the location; opting out: "
    "--nocompilation_cache or PALM_JAX_XLA_CACHE=0).")
_LOCAL_DEVICES = flags.DEFINE_list(
    "local_device_ids", None, "Devices this process drives (e.g. 0,1,2,3,4,5,6,7 for one "
    "process per node on SLURM, where JAX otherwise gives each process one GPU).")


def _initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if _COORDINATOR.value:
    kwargs = dict(coordinator_address=_COORDINATOR.value,
                  num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  if _LOCAL_DEVICES.value:
    kwargs["local_device_ids"] = [int(i) for i in _LOCAL_DEVICES.value]
  jax.distributed.initialize(**kwargs)


class _QuietLibraries:
  """Drops INFO lines that Orbax/TensorStore log on every save (warnings still pass), the
  read-only notices Orbax warns on every evaluation's restore, and JAX's probe of absent
  TPU/GPU backends (noise on every CPU/GPU run)."""

  def filter(self, record) -> bool:
    if "/orbax/" in record.pathname:
      msg = str(record.msg).lower()
      return record.levelno >= 30 and not any(  # 30: WARNING
          w in msg for w in ("read-only", "read only", "read_only"))
    return not str(record.msg).startswith("Unable to initialize backend")


def run_job(config, workdir: str, allow_config_change: bool | None = None,
            config_file: str = ""):
  """Runs `config.job` in `workdir` (`palm_jax.jobs.run_job`).

  `allow_config_change`: resume despite a changed config (default: the flag's value).
  `config_file`: the `--config` value, named if the config lacks fields the job reads.
  """
  if allow_config_change is None:
    allow_config_change = flags.FLAGS.is_parsed() and _ALLOW_CHANGE.value
  return jobs.run_job(config, workdir, allow_config_change=allow_config_change,
                      config_file=config_file)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    if _CONFIG.value is None:
      raise UserError("no config given; pass --config=configs/smoke.py (or another file in "
                      "configs/).")
    if not _WORKDIR.value:
      raise UserError("no workdir given; pass --workdir=DIR (checkpoints, logs and images "
                      "go there, and a run resumes from it).")
    if _DISTRIBUTED.value:
      _initialize_distributed()
    quiet = _QuietLibraries()
    logging.get_absl_logger().addFilter(quiet)
    import logging as py_logging  # pylint: disable=g-import-not-at-top
    py_logging.getLogger("jax._src.xla_bridge").addFilter(quiet)
    import jax  # pylint: disable=g-import-not-at-top
    cache_dir = compile_cache.enable(_COMPILATION_CACHE.value)   # before the first compile
    if jax.process_index() != 0:
      logging.set_verbosity(logging.WARNING)
    logging.info("XLA compilation cache: %s", cache_dir or "off")
    run_job(_CONFIG.value, _WORKDIR.value, config_file=flags.FLAGS["config"].config_filename)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except preemption.Preempted as e:
    print(f"palm_jax: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_PREEMPTED)


def _config_error(e: BaseException) -> str:
  """One sentence for a --config file or override that ml_collections rejected."""
  text = str(e).replace("\\n", "\n").strip().strip("'\"")
  lines = [l.strip().strip("'\"") for l in text.splitlines() if l.strip()]
  hint = next((l for l in lines if l.startswith("Did you mean")), "")
  if "No such file" in text or "Failed loading config file" in text:
    path = next((l for l in lines if l.startswith("/") or l.endswith(".py")), "")
    return (f"the --config file {path or ''} cannot be loaded (no such file or it failed to "
            "import); pass a file such as --config=configs/smoke.py.").replace("  ", " ")
  names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", lines[0]) if lines else []
  key = names[0] if names else "?"
  given = [a.split("=")[0] for a in sys.argv[1:] if a.startswith("--config.")
           and re.search(rf"\b{re.escape(key)}\b", a.split("=")[0])]
  what = given[0] if given else f"field {key!r}"
  hint = hint.replace("Did you mean", "did you mean").rstrip("?")
  return (f"{what} names a config field that does not exist; "
          f"{hint + '?' if hint else 'see the config file for the fields it has.'}")


def _flag_value(argv, name: str) -> str:
  """The value `argv` gives `--name` (`--name=V` or `--name V`), or ""."""
  for i, a in enumerate(argv):
    if a.lstrip("-") == name and a.startswith("-") and i + 1 < len(argv):
      return argv[i + 1]
    if a.startswith("-") and a.lstrip("-").startswith(name + "="):
      return a.split("=", 1)[1]
  return ""


def _get_config_function(path: str):
  """The `get_config` of the config file at `path`, or None if it cannot be loaded."""
  try:
    spec = importlib.util.spec_from_file_location("_palm_jax_config_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config
  except Exception:  # pylint: disable=broad-except
    return None


def _config_argument_error(argv, text: str) -> str:
  """One sentence for `--config=FILE:ARG` whose `get_config` takes no argument or refused
  ARG (ml_collections reports either as a traceback)."""
  value = _flag_value(argv, "config")
  path, colon, arg = value.partition(":")
  last = next((l.strip() for l in reversed(text.splitlines()) if l.strip()), "")
  kind, _, message = last.partition(": ")
  get_config = _get_config_function(path)
  params = None if get_config is None else inspect.signature(get_config).parameters
  if colon and params is not None and not params:
    return (f"{path} takes no argument after ':' (got {arg!r}); pass --config={path}, and "
            f"set fields with --config.<field>=<value>.")
  if kind == "ValueError" and message:
    return f"--config={value}: {message}"
  doc = (inspect.getdoc(get_config) or "").split("\n\n")[0].replace("\n", " ").rstrip(".")
  accepts = f"; its get_config says: {doc}" if get_config and doc else ""
  return f"--config={value} could not be built: {last.rstrip('.')}{accepts}."


def _group_error(argv, text: str) -> str:
  """One sentence for `--config.GROUP=VALUE`: one value given to a group of fields."""
  match = re.match(r"flag --(config(?:\.\w+)+)=", text)
  if not match:
    return text.splitlines()[0]
  name = match.group(1)
  value = _flag_value(argv, name)
  group = flags.FLAGS["config"].value
  for key in name.split(".")[1:]:
    group = group[key] if group is not None and key in group else None
  if not hasattr(group, "keys") or not list(group.keys()):
    return f"--{name} is a group of fields, not one value; set one of its fields instead."
  fields = list(group.keys())
  # The example: a field holding what was given (a string for a string, an int for an int).
  given = type(next(iter(_literal(value)), value))
  example = next((k for k in fields if type(group[k]) is given), fields[0])
  return (f"--{name} is a group of fields ({', '.join(fields)}), not one value; set one of "
          f"them, e.g. --{name}.{example}={value}.")


def _literal(value: str) -> list:
  """`[the Python literal value spells]`, or [] when it is a plain string."""
  try:
    return [ast.literal_eval(value)]
  except (SyntaxError, ValueError):
    return []


def parse_flags(argv):
  """absl's parser, with config-file and unknown-field errors as one line and exit 2."""
  try:
    rest = flags.FLAGS(argv)
    if _CONFIG.present:
      _CONFIG.value.keys()  # a config file that failed to load reports its error here
    return rest
  except flags.Error as e:
    cause = e.__cause__ or e.__context__
    if isinstance(cause, (TypeError, ValueError)) and "Error whilst parsing config file" in \
        str(cause):
      msg = _config_argument_error(argv, str(cause))
    elif isinstance(cause, ValueError) and "as a ConfigDict" in str(cause):
      msg = _group_error(argv, str(e))
    else:
      msg = _config_error(cause) if isinstance(cause, (AttributeError, KeyError, IOError,
                                                       OSError)) else str(e)
  except (AttributeError, KeyError, OSError, IOError) as e:
    msg = _config_error(e)
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def entry() -> None:
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:
    print("palm_jax: interrupted before a checkpoint could be saved; rerun the same command "
          "to resume from the last one.", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  entry()
