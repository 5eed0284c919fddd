"""Stop signals only set a flag (no KeyboardInterrupt in Orbax threads or compilation);
the second one takes the default action; handlers are restored after the job."""
import os
import signal
import time

from palm_jax.runtime import preemption


def _wait_for(cond, seconds=5.0):
  deadline = time.time() + seconds
  while not cond() and time.time() < deadline:
    time.sleep(0.01)
  return cond()


def test_first_signal_sets_the_flag_and_arms_the_default(capfd):
  before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  with preemption.stop_requests():
    assert not preemption.requested()
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt is raised
    assert _wait_for(preemption.requested)
    assert preemption.signal_name() == "SIGINT"
    # A second Ctrl-C would end the process at once (the OS default), even mid-compile.
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "received SIGINT; finishing the current chunk" in err
    stop = preemption.stopped("3 chunks", "env step 1,536 in /w/checkpoints")
    assert str(stop) == ("stopped by SIGINT after 3 chunks: checkpoint saved at env step "
                         "1,536 in /w/checkpoints; rerun the same command to resume from it.")
  assert not preemption.requested()
  assert {s: signal.getsignal(s) for s in before} == before


def test_exit_status_is_distinct():
  assert preemption.EXIT_PREEMPTED == 3  # 2 is a user error; 130/143 mean "killed, unsaved"
