"""Honest timings for the benchmarks: ahead-of-time compilation, the compiled program's own
memory analysis, device-synchronised medians after warm-up, and out-of-memory detection.

    compiled, compile_s, memory = compile_aot(jax.jit(fn), *args)
    seconds = median_seconds(lambda: compiled(*args), repeats=5, warmup=1)

`compile_aot` lowers and compiles once (`jitted.lower(*args).compile()`) and returns the
executable, so the timed calls run exactly the program whose memory is reported. The
memory is XLA's plan for that program alone (`compiled.memory_analysis()`), not the
process's peak (`memory_stats()['peak_bytes_in_use']`), which later configurations would
inherit from earlier ones.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def memory_of(compiled) -> dict[str, int] | None:
  """Bytes XLA planned for one compiled program: arguments, outputs, temporaries, aliased
  (donated) buffers, and the peak (XLA's own figure where the backend reports it, else
  `arguments + outputs + temporaries - aliased`)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (backends without the analysis)
    return None
  if m is None:
    return None
  out = dict(argument_bytes=int(m.argument_size_in_bytes),
             output_bytes=int(m.output_size_in_bytes), temp_bytes=int(m.temp_size_in_bytes),
             alias_bytes=int(m.alias_size_in_bytes),
             code_bytes=int(m.generated_code_size_in_bytes))
  planned = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
  peak = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
  out["peak_bytes"] = peak if peak > 0 else planned
  return out


def compile_aot(jitted, *args, **kwargs) -> tuple[Any, float, dict | None]:
  """`(compiled, compile_seconds, memory_of(compiled))` for `jitted(*args, **kwargs)`."""
  start = time.perf_counter()
  compiled = jitted.lower(*args, **kwargs).compile()
  seconds = time.perf_counter() - start
  return compiled, seconds, memory_of(compiled)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
  """Median wall seconds of `fn()` over `repeats` calls, each waited for on the device
  (`block_until_ready`), after `warmup` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(max(repeats, 1)):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def is_oom(error: Exception) -> bool:
  """An allocation failure (at compile or run time) rather than a bug."""
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def oom_message(error: Exception) -> str:
  return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def gib(num_bytes: int | None) -> str:
  return "n/a" if num_bytes is None else f"{num_bytes / 2**30:.2f} GiB"


def device_description() -> str:
  device = jax.local_devices()[0]
  return f"{jax.device_count()} x {device.device_kind} ({jax.default_backend()})"
