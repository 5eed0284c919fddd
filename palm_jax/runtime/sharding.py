"""Mesh and shardings: one 1-D `("data",)` mesh over every device of every process.

Everything batched (environments, replay, training batches) is split along its leading
axis over `data`; parameters and optimiser state are replicated. XLA inserts the gradient
all-reduce itself when a loss averages over a sharded batch. The same code runs on one CPU,
one GPU, 8 simulated CPU devices (tests) or a multi-host pod: only the mesh size changes.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.runtime.errors import require

DATA = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named `data` over all global devices (or the first `num_devices`)."""
  devices = jax.devices()
  if num_devices is not None:
    require(0 < num_devices <= len(devices),
            f"num_devices={num_devices} but {len(devices)} devices are visible; "
            f"use a value between 1 and {len(devices)}.")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimiser state, scalars)."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """The leading axis is split over `data`; other axes are whole on each device."""
  return NamedSharding(mesh, P(DATA))


def check_divisible(name: str, value: int, mesh: Mesh) -> None:
  """Raises a UserError unless `value` (a config field) splits evenly over the devices."""
  n = mesh.size
  if value % n:
    lower, upper = (value // n) * n, (value // n + 1) * n
    hint = f"{lower} or {upper}" if lower else f"{upper}"
    require(False, f"config.{name}={value} does not divide over the {n} devices of the "
                   f"mesh; set it to a multiple of {n} (e.g. {hint}).")


def is_local(mesh: Mesh) -> bool:
  """Whether every device of `mesh` belongs to this process (no collectives across hosts)."""
  return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def solver_mesh(mesh: Mesh) -> Mesh:
  """Where small iterative solvers run (the linear probe's L-BFGS, kNN, cross-validation):
  `mesh` in a single process; with several processes, this process's own devices — every
  process solves the same small problem redundantly instead of running each of thousands
  of solver steps as a collective across hosts (over gloo on CPU, a run's probe took ~3x
  its training; issue 23). On CPU it is one device: there even a process's own devices
  talk over gloo, and a 4-device probe still took longer than training."""
  if jax.process_count() == 1 or is_local(mesh):
    return mesh
  local = jax.local_devices()
  if local[0].platform == "cpu":
    local = local[:1]
  return jax.make_mesh((len(local),), (DATA,), devices=local,
                       axis_types=(jax.sharding.AxisType.Auto,))


def local_slice(global_size: int, mesh: Mesh | None = None) -> slice:
  """The rows of a `data`-sharded axis of `global_size` that this process feeds (all of
  them on a mesh of this process's devices alone)."""
  if mesh is not None and is_local(mesh):
    return slice(0, global_size)
  per_process = global_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def host_to_global(tree: Any, mesh: Mesh, *, sharded: bool = True) -> Any:
  """Places host NumPy arrays on the mesh.

  With `sharded=True` each process passes its own rows (`local_slice`) of a batch whose
  leading axis is split over `data` (all rows on a mesh of this process's devices alone:
  `solver_mesh`); with `sharded=False` every process passes the same whole array and it is
  replicated. Works for one or many processes.
  """
  if sharded and not (jax.process_count() > 1 and is_local(mesh)):
    sharding = data_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)
  sharding = data_sharded(mesh) if sharded else replicated(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                             lambda idx, x=np.asarray(x): x[idx]), tree)


def to_host(tree: Any) -> Any:
  """Fetches (possibly sharded, possibly multi-host) arrays as NumPy on every process.

  Replicated arrays are read from the local copy; sharded ones are gathered across
  processes first. Call it only at log/checkpoint boundaries: it synchronises.
  """
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(fetch, tree)


def num_bytes(tree: Any) -> int:
  """Total bytes of all array leaves (global shapes)."""
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree))


# A program may wait this long at its first run for the other processes to compile it.
START_TIMEOUT_S = 3600
_barriers = itertools.count()


def _signature(x) -> tuple:
  """What selects a compiled program for one argument leaf: shape, dtype and sharding of an
  array; the value itself of anything else (a static argument, e.g. a linen module, which
  hashes by its fields)."""
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return (np.shape(x), str(x.dtype), getattr(x, "sharding", None))
  try:
    return ("static", type(x).__name__, hash(x), x)
  except TypeError:  # unhashable: only this very object may reuse the program
    return ("static", type(x).__name__, id(x))


def start_together(jitted: Callable, name: str) -> Callable:
  """`jitted`, whose every new argument signature all processes start together.

  XLA:CPU's gloo collectives connect the processes at an executable's *first* run and give
  up after a fixed 30 s, so when one process compiles a big program half a minute slower
  (a loaded 2-core machine) both die with `Gloo context initialization failed`. In a
  multi-process run each new signature is therefore compiled ahead of time
  (`lower(...).compile()`), then every process waits at a coordination-service barrier
  (no collective, `START_TIMEOUT_S`), then runs it; later calls go straight to the
  compiled program; under tracing (`jax.eval_shape`) it is `jitted`. One process: `jitted`
  itself, untouched. Every process must call the wrapped programs in the same order (SPMD
  code does).
  """
  if jax.process_count() == 1:
    return jitted
  compiled: dict = {}

  def run(*args):
    leaves, tree = jax.tree.flatten(args)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
      return jitted(*args)  # traced (eval_shape, an outer jit): nothing runs here
    key = (tree, tuple(_signature(x) for x in leaves))
    program = compiled.get(key)
    if program is None:
      program = compiled[key] = jitted.lower(*args).compile()
      wait_for_all_processes(name)
    return program(*args)
  return run


def wait_for_all_processes(name: str) -> None:
  """A coordination-service barrier (no collective program) across every process.

  Every process must call it the same number of times in the same order; a no-op in a
  single process."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  if client is not None:  # None: processes not started by jax.distributed (nothing to wait on)
    client.wait_at_barrier(f"palm_jax/{name}/{next(_barriers)}", START_TIMEOUT_S * 1000)
