"""SIGTERM / SIGINT: finish the current chunk, save a checkpoint, exit so a rerun resumes.

Clusters stop jobs with a signal and a grace period (SLURM: SIGTERM, then SIGKILL after
`KillWait`; with `#SBATCH --signal=B:TERM@120` the signal comes 120 s before the time limit;
TPU VMs: SIGTERM on preemption). A Python `KeyboardInterrupt` raised at an arbitrary
bytecode lands in Orbax's async threads, weakref callbacks or XLA compilation and is either
swallowed or printed as a long traceback. Instead `stop_requests()` installs handlers that
only *record* the signal; the host loops (`palm_jax.palm.trainer`, `palm_jax.gan.train`) poll
`requested()` between chunks, save, and raise `Preempted`, which `palm_jax.main` turns into
one line and exit status `EXIT_PREEMPTED`.

Exit status: 3, chosen over the shell's 128+signum (130/143) because those mean "killed by
the signal, nothing saved" to schedulers and wrappers; 3 means "stopped cleanly on request,
a checkpoint is saved, rerun the same command to resume" (2 is palm_jax's user error).
A second signal of the same kind exits at once: after the first, the handler is reset to
the default action, so the OS ends the process immediately even while the main thread is
inside a long compilation (a Python handler could only run after it returns).

Multi-host: a signal may reach the processes at different chunks; `requested()` with
`sync=True` takes the logical OR over processes so every process saves the same step.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

EXIT_PREEMPTED = 3
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []


class Preempted(Exception):
  """Raised by a job's host loop after it saved on request; `str()` is the one line."""


def _handler(signum, frame) -> None:  # pylint: disable=unused-argument
  _received.append(signum)
  # The next signal of this kind takes the default action (exit at once, no checkpoint).
  signal.signal(signum, signal.SIG_DFL)
  name = signal.Signals(signum).name
  again = "Ctrl-C" if signum == signal.SIGINT else name
  print(f"palm_jax: received {name}; finishing the current chunk and saving a checkpoint "
        f"(send {again} again to stop at once without saving).", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _handling(handler) -> Iterator[None]:
  """`handler` for SIGTERM and SIGINT within the block, the previous ones after it."""
  previous = {s: signal.getsignal(s) for s in _SIGNALS}
  for s in _SIGNALS:
    signal.signal(s, handler)
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


@contextlib.contextmanager
def stop_requests() -> Iterator[None]:
  """Within the block, SIGTERM/SIGINT only set `requested()` (main thread only)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  _received.clear()
  try:
    with _handling(_handler):
      yield
  finally:
    _received.clear()


def requested(sync: bool = True) -> bool:
  """True once a stop signal arrived (on any process when `sync` and multi-host)."""
  local = bool(_received)
  if not sync:
    return local
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return local
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.asarray([local], np.int32))
  return bool(np.asarray(flags).any())


def signal_name() -> str:
  return signal.Signals(_received[0]).name if _received else "a stop signal"


def stopped(what: str, step_text: str, command_hint: str = "rerun the same command") -> \
    Preempted:
  """The `Preempted` exception a loop raises after saving at `step_text`."""
  return Preempted(f"stopped by {signal_name()} after {what}: checkpoint saved at "
                   f"{step_text}; {command_hint} to resume from it.")


@contextlib.contextmanager
def stop_at_once(what: str, step_text: str,
                 command_hint: str = "rerun the same command") -> Iterator[None]:
  """Within the block (work after the last checkpoint, e.g. a final evaluation), a stop
  signal needs nothing saved: it raises `stopped(what, step_text)` as soon as the main
  thread runs Python again (after the XLA call in flight), the same line and exit status
  as a stop during training. A signal that arrived just before the block counts too."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def raise_now(signum, frame):  # pylint: disable=unused-argument
    _received.append(signum)
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise stopped(what, step_text, command_hint)

  if _received:
    raise stopped(what, step_text, command_hint)
  with _handling(raise_now):
    yield
