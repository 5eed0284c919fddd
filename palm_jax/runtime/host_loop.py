"""The host side every resumable loop shares: schedule, finite check, stop, close-all.

Every trainer (PALM and its offline/passive variants, the GAN, DrQ, Atari collection) runs
a Python loop over jitted chunks or steps and, between them, decides the same things:

    with host_loop.HostLoop("gan", where=ckpt.directory) as loop:
      loop.own(ckpt, writer)                         # closed however the loop ends
      while step < total:
        ...one jitted step or chunk...
        loop.check_finite(metrics, step=step, hint="lower config.lr")   # one sentence
        stop = loop.stop_requested()                 # SIGTERM / SIGINT (preemption.py)
        if host_loop.due(step, every, last=step == total) or stop:
          save(step)
        if stop and step < total:
          loop.stop(f"{step} steps", f"step {step}")  # closes all, raises Preempted

`stop` closes everything the loop owns (checkpointers finish their async writes, writers
flush) before raising `preemption.Preempted`, which `palm_jax.main` turns into one line and
exit status 3: saved, rerun the same command to resume. Leaving the `with` block any other
way (done, an error) closes the same resources, errors or not.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from absl import logging

from palm_jax.runtime import preemption
from palm_jax.runtime.errors import UserError


def due(count: int, every: int, *, last: bool = False) -> bool:
  """Whether a periodic action is due at `count` (`every` <= 0: only at `last`)."""
  return last or (every > 0 and count % every == 0)


def nonfinite(metrics: Mapping[str, Any]) -> list[str]:
  """The names of the metrics that are NaN or infinite, sorted."""
  return sorted(k for k, v in metrics.items()
                if isinstance(v, (int, float)) and not math.isfinite(float(v)))


class HostLoop:
  """Owns a loop's closeable resources and its stop/finite rules (see the module doc).

  `name`: what runs ("palm", "gan", ...), used in messages; `where`: where its checkpoints
  are (for "kept in ..." sentences); `ckpt`: the checkpointer whose last good step a
  divergence message names (optional).
  """

  def __init__(self, name: str, *, where: str = "", ckpt=None):
    self.name, self.where, self.ckpt = name, where, ckpt
    self._owned: list = []

  def own(self, *resources):
    """Closes `resources` (None is skipped) when the loop ends, last owned first."""
    self._owned.extend(r for r in resources if r is not None)
    return resources[0] if len(resources) == 1 else resources

  def close(self) -> None:
    """Closes every owned resource once (checkpointers wait for their writes)."""
    owned, self._owned = self._owned[::-1], []
    errors = []
    for r in owned:
      try:
        r.close()
      except Exception as e:  # pylint: disable=broad-except  (close the rest first)
        errors.append(e)
    if errors:
      raise errors[0]

  def __enter__(self) -> HostLoop:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
      return
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except  (the loop's own error wins)
      logging.exception("%s: closing after an error failed too", self.name)

  @staticmethod
  def stop_requested() -> bool:
    """True once SIGTERM/SIGINT arrived (on any process)."""
    return preemption.requested()

  def stop(self, what: str, step_text: str, hint: str = "rerun the same command") -> None:
    """After the caller saved: closes everything and raises `Preempted` (exit status 3)."""
    self.close()
    raise preemption.stopped(what, step_text, hint)

  def check_finite(self, metrics: Mapping[str, Any], *, step_text: str, hint: str) -> None:
    """UserError naming the metrics that became NaN/inf and the checkpoint that is kept."""
    bad = nonfinite(metrics)
    if not bad:
      return
    kept = ""
    if self.ckpt is not None:
      self.ckpt.wait()  # the last good checkpoint may still be writing (async): finish it
      last = self.ckpt.latest_step()
      kept = (f"; the last good checkpoint (step {last}) is kept in {self.ckpt.directory}"
              if last is not None else "; no checkpoint had been written yet")
    raise UserError(f"{self.name} diverged at {step_text}: {', '.join(bad)} became "
                    f"NaN/inf{kept}; {hint}.")
