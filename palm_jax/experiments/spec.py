"""A sweep's members: base config + fixed overrides + (variants × grid of axes) + evaluations.

A sweep config (`config.job = "sweep"`, see configs/sweeps/) names

    base       "configs/smoke.py" or "configs/linear_eval.py:smoke" (a config file, optional
               `:arg`; relative paths are taken from the working directory, then the repo)
    overrides  (("eval.train", ""), ...)     fixed `(dotted key, value)` pairs for every member
    variants   (("palm", {}), ("random", {"agent.action_source": "random"}), ...)
               named explicit override dicts (the paper's Fig 4 bars are not a grid); empty =
               one unnamed variant
    axes       (("env.alpha", (0.0, 0.5)), ("seed", (0, 1, 2)))  a grid: the product
    evals      (("linear_eval", "configs/linear_eval.py:smoke", {"probe.max_iter": 50}), ...)
               jobs run on each member's workdir after training, each with its own config
               file and overrides; a bare name ("ood_eval") means configs/<name>.py

Every member is variants × product(axes), in that order (the last axis varies fastest). Its
name is `<variant>__<axis>=<value>__...` (the axis' last key component, e.g. `alpha=0.5`;
values formatted readably and made filesystem-safe), unique and stable: it depends only on
the spec, so a rerun finds the same folders. Each stage of a member (training, then every
eval) is one command line `python -m palm_jax.main --config=FILE[:arg] --workdir=MEMBER
--config.key=value ...`, and the stage's resolved config is parsed from exactly that command
line by ml_collections' own flag parser (`resolve`), so what the local runner, a SLURM array
and a TPU command list run is the same thing, and a wrong key or type fails here, for every
member, before anything runs. Members that log to Weights & Biases (`log.wandb=True`) and
name no `log.wandb_group` get the sweep's name (its workdir's) as their group.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import os
import pathlib
import re
from typing import Any, Iterable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from palm_jax.runtime.errors import UserError, require

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED_KEY = "seed"


@dataclasses.dataclass(frozen=True)
class Stage:
  """One job run on a member's workdir: `python -m palm_jax.main <argv>`."""
  name: str                  # "train", or the eval's name ("linear_eval", "ood_eval", ...)
  config_file: str           # absolute path, with ":arg" if any
  overrides: tuple           # ((dotted key, value), ...), applied in this order

  def argv(self, workdir: str) -> list[str]:
    """palm_jax.main's flags for this stage (overrides as `--config.key=value`)."""
    return ([f"--config={self.config_file}", f"--workdir={workdir}"] +
            [f"--config.{k}={flag_value(v)}" for k, v in self.overrides])


@dataclasses.dataclass(frozen=True)
class Member:
  """One point of the sweep: a training run plus its evaluations, in `workdir`."""
  index: int
  name: str                  # folder name under WORKDIR/runs/
  variant: str               # "" when the sweep has no variants
  axes: tuple                # ((dotted key, value), ...) of the grid (seed included)
  stages: tuple              # (Stage, ...): training first, then the evals
  workdir: str

  @property
  def seed(self):
    return dict(self.axes).get(SEED_KEY)

  @property
  def condition(self) -> str:
    """The member's name without the seed: the group its seeds are averaged over."""
    return "__".join(p for p in self.name.split("__") if not p.startswith(f"{SEED_KEY}="))


def flag_value(value: Any) -> str:
  """A config value as ml_collections' flag parser reads it back (`--config.k=<this>`)."""
  if isinstance(value, bool):
    return "True" if value else "False"
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  if hasattr(value, "items"):
    raise UserError(f"a sweep override is a dict ({dict(value)!r}); a command line sets one "
                    "field at a time, so name each field (e.g. 'generator_kwargs.z_dim').")
  if value is None:
    raise UserError("a sweep override is None; ml_collections cannot set None from a "
                    "command line, so give the field a value (e.g. '' or 0).")
  return str(value)


def split_config_file(spec: str) -> tuple[str, str | None]:
  """`"configs/x.py:mini"` → (absolute path, "mini"); the file must exist."""
  require(isinstance(spec, str) and spec.strip() != "",
          "config.base is empty; name a config file such as configs/smoke.py.")
  path, arg = spec.strip(), None
  head, sep, tail = path.rpartition(":")
  if sep and head.endswith(".py"):
    path, arg = head, tail
  for candidate in (pathlib.Path(path), REPO / path):
    if candidate.is_file():
      return str(candidate.resolve()), arg
  raise UserError(f"config file {path!r} does not exist (looked in {os.getcwd()} and "
                  f"{REPO}); give a path such as configs/smoke.py.")


def resolve(config_file: str, overrides: Sequence[tuple[str, Any]] = ()):
  """The locked ConfigDict that `palm_jax.main` builds from this stage's command line."""
  argv = ["palm_jax.main", f"--config={config_file}"] + [
      f"--config.{k}={flag_value(v)}" for k, v in overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=values, lock_config=True,
                                  sys_argv=argv)
  try:
    values(argv)
  except (flags.Error, TypeError, ValueError, AttributeError, KeyError) as e:
    raise UserError(f"{config_file} with {dict(overrides)} is not a valid config ({e}); "
                    "fix the sweep's overrides.") from None
  return values["config"].value


def dotted_keys(config, prefix: str = "") -> list[str]:
  """Every leaf key of a ConfigDict as a dotted path ("env.alpha", "seed", ...)."""
  out = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      sub = dotted_keys(value, path + ".")
      out.extend(sub if sub else [path])
    else:
      out.append(path)
  return out


def check_keys(keys: Iterable[str], config, where: str, config_file: str) -> None:
  """Unknown keys → one sentence with the closest known keys ("did you mean ...")."""
  known = dotted_keys(config)
  known_set = set(known)
  for key in keys:
    if key in known_set or any(k.startswith(key + ".") for k in known):
      continue
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
        "it is not a field of that config; see the file for the field names.")
    raise UserError(f"{where} names {key!r}, which {config_file} does not have; {hint}")


def pairs(value: Any, where: str) -> tuple:
  """A dict or a sequence of (key, value) pairs → tuple of pairs (order kept)."""
  if value is None:
    return ()
  if hasattr(value, "items"):
    return tuple((str(k), v) for k, v in value.items())
  try:
    out = tuple((str(k), v) for k, v in value)
  except (TypeError, ValueError):
    raise UserError(f"{where}={value!r} must be a dict or a sequence of (key, value) pairs, "
                    "e.g. (('env.alpha', 0.5),).") from None
  return out


def format_value(value: Any) -> str:
  """A readable, filesystem-safe rendering of an axis value (0.5 → "0.5", (1, 1) → "1-1")."""
  if isinstance(value, bool):
    text = str(value)
  elif isinstance(value, float):
    text = f"{value:g}"
  elif isinstance(value, (list, tuple)):
    text = "-".join(format_value(v) for v in value)
  else:
    text = str(value)
  text = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "empty"
  if len(text) > 40:  # e.g. a dataset path: keep its end readable, make it unique
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    text = f"{text[-24:].lstrip('-.')}-{digest}"
  return text


def axis_labels(keys: Sequence[str]) -> dict[str, str]:
  """Short labels: the last key component, or the full key (dots → '-') when ambiguous."""
  last = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k.replace(".", "-")) for k, s in zip(keys, last)}


def wandb_group(config, sweep: str) -> tuple:
  """`(("log.wandb_group", sweep),)` for a member that logs to W&B (`log.wandb=True`) with
  no group of its own, so the sweep's runs are one group in W&B's tables; else `()` (the
  command lines of members that do not log to W&B stay as they were)."""
  log = config.get("log") or {}
  if log.get("wandb", False) and "wandb_group" in log and not log.get("wandb_group"):
    return (("log.wandb_group", sweep),)
  return ()


def expand(config, workdir: str) -> list[Member]:
  """The sweep config's members, validated (every stage's config parses) before any runs."""
  base_file, base_arg = split_config_file(config.base)
  base_spec = base_file + (f":{base_arg}" if base_arg is not None else "")
  base = resolve(base_spec)
  fixed = pairs(config.get("overrides"), "config.overrides")
  axes = pairs(config.get("axes"), "config.axes")
  variants = tuple(config.get("variants") or ())
  for name, values in axes:
    require(isinstance(values, (list, tuple)) and len(values) > 0,
            f"config.axes entry {name!r} has values {values!r}; give a non-empty list, e.g. "
            "(0.0, 0.5, 1.0).")
  require(len({k for k, _ in axes}) == len(axes),
          f"config.axes names a key twice ({[k for k, _ in axes]}); give each key once.")
  check_keys([k for k, _ in fixed], base, "config.overrides", base_spec)
  check_keys([k for k, _ in axes], base, "config.axes", base_spec)
  named = []
  for entry in variants:
    require(isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str),
            f"config.variants entry {entry!r} must be a (name, {{key: value}}) pair.")
    vname = format_value(entry[0])
    require(vname == entry[0], f"variant name {entry[0]!r} is not filesystem-safe; use "
                               f"letters, digits and ._+- (e.g. {vname!r}).")
    vover = pairs(entry[1], f"config.variants[{entry[0]!r}]")
    check_keys([k for k, _ in vover], base, f"variant {entry[0]!r}", base_spec)
    named.append((vname, vover))
  require(len({n for n, _ in named}) == len(named),
          f"config.variants repeats a name ({[n for n, _ in named]}); names must be unique.")
  named = named or [("", ())]

  evals = []
  for entry in tuple(config.get("evals") or ()):
    if isinstance(entry, str):  # a bare job name: its config file in configs/
      entry = (entry, f"configs/{entry}.py")
    require(isinstance(entry, (list, tuple)) and len(entry) in (2, 3),
            f"config.evals entry {entry!r} must be (name, config_file[:arg], {{overrides}}).")
    ename, efile = entry[0], entry[1]
    efile_path, earg = split_config_file(efile)
    espec = efile_path + (f":{earg}" if earg is not None else "")
    eover = pairs(entry[2] if len(entry) == 3 else (), f"config.evals[{ename!r}]")
    check_keys([k for k, _ in eover], resolve(espec), f"eval {ename!r}", espec)
    evals.append(Stage(str(ename), espec, eover))
  require(len({s.name for s in evals}) == len(evals) and "train" not in
          {s.name for s in evals}, f"config.evals names {[s.name for s in evals]} must be "
                                   "unique and not 'train'.")

  labels = axis_labels([k for k, _ in axes])
  members, runs = [], os.path.join(os.path.abspath(workdir), "runs")
  sweep = os.path.basename(os.path.abspath(workdir))
  grid = list(itertools.product(*[values for _, values in axes])) if axes else [()]
  for vname, vover in named:
    for point in grid:
      point_pairs = tuple(zip([k for k, _ in axes], point))
      parts = ([vname] if vname else []) + [f"{labels[k]}={format_value(v)}"
                                            for k, v in point_pairs]
      name = "__".join(parts) or "run"
      mdir = os.path.join(runs, name)
      train = Stage("train", base_spec, fixed + vover + point_pairs)
      group = wandb_group(resolve(train.config_file, train.overrides), sweep)  # must parse
      train = dataclasses.replace(train, overrides=train.overrides + group)
      members.append(Member(len(members), name, vname, point_pairs, (train, *evals), mdir))
  names = [m.name for m in members]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise UserError(f"two members would share the folder {dupes[0]!r}; give the variants "
                    "or axis values distinct names.")
  return members
