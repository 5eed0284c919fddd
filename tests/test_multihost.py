"""Multi-host for real: the smoke run as 2 processes x 4 CPU devices (gloo collectives)
and as 1 process x 8 devices from the same seed; a crash of the 2-process run resumes."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_multihost_worker.py")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, num_processes, devices_each, crash_after=0):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}")
  procs = [subprocess.Popen([sys.executable, WORKER, str(workdir), str(num_processes),
                             str(i), str(port), str(crash_after)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  outs = [p.communicate(timeout=900)[0] for p in procs]
  return [p.returncode for p in procs], outs


def _params(path):
  with np.load(path) as f:
    return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
def test_two_processes_match_each_other_and_one_process(tmp_path):
  two, one = tmp_path / "two", tmp_path / "one"
  codes, outs = _launch(two, 2, 4, crash_after=1)
  assert codes == [3, 3], outs[0][-3000:]           # both died right after the 1st save
  assert not (two / "params_process0.npz").exists()
  codes, outs = _launch(two, 2, 4)
  assert codes == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert "Resumed from the checkpoint at env step 256" in outs[0]
  codes, outs = _launch(one, 1, 8)
  assert codes == [0], outs[0][-3000:]

  p0, p1 = _params(two / "params_process0.npz"), _params(two / "params_process1.npz")
  ref = _params(one / "params_process0.npz")
  assert len(p0) == len(ref) > 0
  for a, b in zip(p0, p1):
    np.testing.assert_array_equal(a, b)  # replicated parameters agree bit for bit
  # Same seed, same global program on 8 devices; only the reduction order of the
  # cross-process all-reduce differs, so the runs agree to float32 rounding drift.
  flat = lambda ps: np.concatenate([p.ravel() for p in ps])
  a, r = flat(p0), flat(ref)
  assert np.linalg.norm(a - r) / np.linalg.norm(r) < 1e-3


class _Recorded:
  """A stand-in for a jitted function that records lower / compile / run."""

  def __init__(self, events):
    self.events = events

  def lower(self, *args):
    self.events.append(("lower", np.shape(args[0])))
    return self

  def compile(self):
    self.events.append(("compile",))
    return lambda *args: self.events.append(("run", np.shape(args[0]))) or args[0] * 2


def test_start_together_compiles_then_waits_for_every_process_once_per_signature(
    monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top

  from palm_jax.runtime import sharding  # pylint: disable=g-import-not-at-top
  plain = jax.jit(lambda x: x * 2)
  assert sharding.start_together(plain, "one process") is plain  # untouched
  events = []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(sharding, "wait_for_all_processes",
                      lambda name: events.append(("barrier", name)))
  run = sharding.start_together(_Recorded(events), "prog")
  np.testing.assert_array_equal(run(np.ones(3)), 2 * np.ones(3))
  run(np.ones(3))
  run(np.ones(5))
  kinds = [e[0] for e in events]
  assert kinds == ["lower", "compile", "barrier", "run", "run",
                   "lower", "compile", "barrier", "run"], events
  assert [e[1] for e in events if e[0] == "barrier"] == ["prog", "prog"]
  # Under tracing (eval_shape) nothing is compiled, waited for or run.
  events.clear()
  real = sharding.start_together(plain, "traced")
  assert jax.eval_shape(real, jax.ShapeDtypeStruct((4,), np.float32)).shape == (4,)
  assert events == []
