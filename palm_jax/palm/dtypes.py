"""Compute dtypes by name, as configs give them ("float32", "bfloat16", "float16")."""
from __future__ import annotations

import jax.numpy as jnp

from palm_jax.runtime.errors import require

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str, field: str):
  """The jnp dtype `name`, or one sentence naming `config.<field>` and the choices."""
  require(name in DTYPES, f"config.{field}={name!r} is not a dtype; use one of "
                          f"{sorted(DTYPES)}.")
  return DTYPES[name]
