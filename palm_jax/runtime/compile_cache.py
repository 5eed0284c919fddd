"""JAX's persistent compilation cache, on by default for users of `palm_jax.main` and the
bench: a program compiled once (the PALM chunk: 26–42 s on CPU; `init`: 18 s) is read
back from disk on the next start or resume instead of being compiled again.

Location, first that applies:
  1. `$JAX_COMPILATION_CACHE_DIR` (JAX's own variable; the tests set it) — left as is;
  2. `$PALM_JAX_CACHE/xla` (`PALM_JAX_CACHE` is also where downloaded weights go);
  3. `~/.cache/palm_jax/xla`.
Opt out with `PALM_JAX_XLA_CACHE=0` (or `python -m palm_jax.main --nocompilation_cache`).

JAX writes only programs whose compilation took at least
`jax_persistent_cache_min_compile_time_secs` (default 1 s; settable by the environment
variable `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`), so tiny programs are not cached.
The cache key includes the program, the devices and the JAX/XLA versions, so a stale entry
is never used; deleting the directory is always safe.
"""
from __future__ import annotations

import os

OPT_OUT_ENV = "PALM_JAX_XLA_CACHE"


def default_dir() -> str:
  """`$PALM_JAX_CACHE/xla`, or `~/.cache/palm_jax/xla`."""
  root = os.environ.get("PALM_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "palm_jax")
  return os.path.join(root, "xla")


def enable(enabled: bool = True) -> str | None:
  """Turns the cache on before the first compile; returns its directory (None if off).

  Off when `enabled` is False or `$PALM_JAX_XLA_CACHE` is `0`/`false`/`off`. A directory
  already configured through `$JAX_COMPILATION_CACHE_DIR` is kept.
  """
  import jax  # pylint: disable=import-outside-toplevel
  if not enabled or os.environ.get(OPT_OUT_ENV, "1").lower() in ("0", "false", "off", "no"):
    return None
  path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir
  if not path:
    path = default_dir()
    jax.config.update("jax_compilation_cache_dir", path)
  return path
