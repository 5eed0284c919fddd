r"""Population training: N PALM members in one vmapped program (`config.population`).

    python -m palm_jax.main --config=configs/mini.py --workdir=runs/pop \
        --config.population.seeds='(0,1,2)' [--config.population.alpha='(0.25,0.5,0.75)']

One member per seed (optionally with its own `env.alpha` / `env.beta`: `EnvParams` are
traced, so they vary inside one program). Each member has its own state, replay, keys and
metrics; they share the generator, the compiled chunk and the devices: the chunk is
`palm_step.make_chunk(..., members=N)`, the iteration `jax.vmap`ped over a leading member
axis (environments stay split over `data` on the axis after it). This is how seeds of a
small config fill an accelerator that one member would leave idle.

Every member is a normal palm run in `WORKDIR/members/<name>/` (`seed0`, or
`seed0_alpha0.25_beta0.9` when those vary; `config.population.workdirs` places them
elsewhere, as a sweep with `population=True` does): its own `config_palm.json` (the single-run
config that reproduces it), checkpoints, snapshots, `metrics.jsonl`, `tb/`, rollouts and
final probe, so `linear_eval`, `ood_eval`, `coverage` and sweeps read it unchanged. Member
i equals the single run of its config up to float rounding of batched kernels
(tests/test_population.py). A generator drawn at random (`generator="random"`) or trained
first (`generator=""`) is made once and written to a file every member's config names, so
all members play in the same world and each config still reproduces its member alone.
Members start, checkpoint and resume together; the experience log, offline pairs and
passive PALM run singly. This module names the members and their configs; the one host
loop for 1..N members is `palm.trainer`.
"""
from __future__ import annotations

import dataclasses
import os

import jax

from palm_jax.palm import experience_log, generator, offline
from palm_jax.palm import validate as validate_lib
from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

MEMBERS_DIR = "members"


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  config: object   # the single-run config of this member (population fields cleared)
  workdir: str


def enabled(config) -> bool:
  """Whether `config` asks for a population (`config.population.seeds` non-empty)."""
  pop = config.get("population")
  return bool(pop is not None and len(pop.get("seeds", ())))


def _values(config, field: str, n: int) -> list:
  given = tuple(config.population.get(field, ()))
  require(len(given) in (0, n), f"config.population.{field}={given} must be empty (every "
          f"member uses config.env.{field}={config.env[field]}) or give one value for each of "
          f"the {n} seeds.")
  return list(given) if given else [config.env[field]] * n


def members(config, workdir: str, generator: str | None = None) -> list[Member]:
  """The members' names, single-run configs and workdirs (`generator`: the file every
  member's config names instead of `config.generator`)."""
  seeds = list(config.population.seeds)
  require(all(isinstance(s, int) and not isinstance(s, bool) for s in seeds),
          f"config.population.seeds={tuple(seeds)} must be integers, e.g. (0, 1, 2).")
  alphas, betas = _values(config, "alpha", len(seeds)), _values(config, "beta", len(seeds))
  vary = [f for f in ("alpha", "beta") if len(config.population.get(f, ()))]
  dirs = tuple(config.population.get("workdirs", ()))
  require(len(dirs) in (0, len(seeds)), f"config.population.workdirs has {len(dirs)} entries "
          f"for {len(seeds)} seeds; give one workdir per seed or none (WORKDIR/members/).")
  out = []
  for i, (seed, alpha, beta) in enumerate(zip(seeds, alphas, betas)):
    name = f"seed{seed}" + "".join(f"_{f}{v:g}" for f, v in zip(("alpha", "beta"),
                                                                 (alpha, beta)) if f in vary)
    c = config.copy_and_resolve_references()
    c.seed, c.env.alpha, c.env.beta = seed, float(alpha), float(beta)
    c.population.seeds, c.population.alpha, c.population.beta = (), (), ()
    if "workdirs" in c.population:
      c.population.workdirs = ()
    if generator is not None:
      c.generator = generator
    out.append(Member(name, c, os.path.abspath(dirs[i]) if dirs else
                      os.path.join(workdir, MEMBERS_DIR, name)))
  names = [m.name for m in out]
  require(len(set(names)) == len(names), f"config.population gives the member names {names} "
          "more than once; make every (seed, alpha, beta) distinct.")
  require(len({m.workdir for m in out}) == len(out), "config.population.workdirs names a "
          "directory twice; every member needs its own.")
  return out


def validate(config, mesh, workdir: str) -> list[Member]:
  """Population mistakes, and every member's own config checks, before anything compiles."""
  require(config.get("job", "palm") == "palm" and not offline.is_offline(config),
          f"config.population runs palm members that play; config.job={config.get('job')!r} "
          f"with config.simsiam.pairs={config.simsiam.pairs!r} runs without an environment: "
          "run those members one by one (a sweep over seeds).")
  require(not experience_log.enabled(config), "config.experience.log=True is not supported "
          "with config.population; log the experience of a single run.")
  out = members(config, workdir)
  for m in out:
    validate_lib.validate(m.config, mesh)
  return out


def shared_generator(config, workdir: str):
  """The population's generator, and the file members' configs name (None: as given)."""
  name = config.generator
  if name not in ("random", ""):
    return generator.load_env_generator(config, workdir), None
  if name == "":  # trained first, into WORKDIR/gan, exported to WORKDIR/gan/generator.npz
    generator.load_env_generator(config, workdir)
    from palm_jax.gan import train as gan_train  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, "gan", gan_train.GENERATOR_FILE)
  else:  # drawn once from the population's own seed, as a single run would draw it
    from palm_jax.models import stylegan2  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, "generator.npz")
    if jax.process_index() == 0 and not os.path.exists(path):
      stylegan2.save_generator_npz(path, stylegan2.init_generator(
          jax.random.PRNGKey(config.seed + 1), **config.generator_kwargs.to_dict()))
    sharding.wait_for_all_processes("population generator")
  file_config = config.copy_and_resolve_references()
  file_config.generator = path
  return generator.load_env_generator(file_config, workdir), path
