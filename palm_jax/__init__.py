"""palm_jax: PALM pretraining in JAX/Flax. `python -m palm_jax.main --config=... --workdir=...`.

The package is laid out by floor (README, "Architecture"): `main` → `jobs/` →
`experiments/` → `palm/`, `atari/`, `gan/`, `evaluation/`, `bench/` → the building blocks
(`agents/`, `rewards/`, `representation/`, `envs/`, `models/`, `data/`) → `runtime/`.

Modules that moved in the redesign keep their old import path for one release: importing
`palm_jax.checkpoint` (say) warns once (DeprecationWarning) and gives the module at its new
path, `palm_jax.runtime.checkpoint` — the same module object, so monkeypatching and
`isinstance` behave as before; `python -m palm_jax.<old module>` runs the new one.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "palm_jax.agents.drq_loop": "palm_jax.atari.trainer",
    "palm_jax.atari100k": "palm_jax.jobs.atari100k",
    "palm_jax.atari100k_grid": "palm_jax.jobs.atari100k_grid",
    "palm_jax.atari_collect": "palm_jax.atari.collect",
    "palm_jax.gan.metrics_fid": "palm_jax.evaluation.fid",
    "palm_jax.budget": "palm_jax.palm.budget",
    "palm_jax.checkpoint": "palm_jax.runtime.checkpoint",
    "palm_jax.compile_cache": "palm_jax.runtime.compile_cache",
    "palm_jax.errors": "palm_jax.runtime.errors",
    "palm_jax.evaluation.cas_eval": "palm_jax.jobs.cas",
    "palm_jax.evaluation.coverage_eval": "palm_jax.jobs.coverage",
    "palm_jax.evaluation.coverage_sources": "palm_jax.palm.coverage_sources",
    "palm_jax.evaluation.ood_eval": "palm_jax.jobs.ood_eval",
    "palm_jax.experience_log": "palm_jax.palm.experience_log",
    "palm_jax.exploration": "palm_jax.palm.exploration",
    "palm_jax.images": "palm_jax.runtime.images",
    "palm_jax.metrics": "palm_jax.runtime.metrics",
    "palm_jax.models.stylegan2_handle": "palm_jax.models.stylegan2.handle",
    "palm_jax.models.stylegan2_ops": "palm_jax.models.stylegan2.ops",
    "palm_jax.models.stylegan2_weights": "palm_jax.models.stylegan2.weights",
    "palm_jax.palm_step": "palm_jax.palm.step",
    "palm_jax.population": "palm_jax.palm.population",
    "palm_jax.preemption": "palm_jax.runtime.preemption",
    "palm_jax.preflight": "palm_jax.runtime.run_records",
    "palm_jax.replay": "palm_jax.palm.replay",
    "palm_jax.representation.offline": "palm_jax.palm.offline",
    "palm_jax.representation.passive": "palm_jax.palm.passive",
    "palm_jax.sample": "palm_jax.jobs.sample",
    "palm_jax.sharding": "palm_jax.runtime.sharding",
    "palm_jax.train": "palm_jax.palm.trainer",
}


class _MovedLoader(importlib.abc.Loader):
  """Loads an old path as the module at its new path (with a DeprecationWarning)."""

  def __init__(self, old: str, new: str):
    self.old, self.new = old, new

  def create_module(self, spec):
    warnings.warn(f"{self.old} moved to {self.new}; import it from there (the old path "
                  "works until the next release).", DeprecationWarning, stacklevel=3)
    return importlib.import_module(self.new)

  def exec_module(self, module) -> None:
    sys.modules[self.old] = module

  def get_code(self, fullname):  # `python -m <old path>` (runpy) runs the new module's code
    spec = importlib.util.find_spec(self.new)
    return spec.loader.get_code(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
    new = MOVED.get(fullname)
    if new is None:
      return None
    return importlib.util.spec_from_loader(fullname, _MovedLoader(fullname, new))


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
  sys.meta_path.insert(0, _MovedFinder())
