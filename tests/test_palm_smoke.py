"""The smoke PALM run end to end on 8 simulated devices: it finishes, writes what users
read, survives a SIGKILL, and a resumed run ends exactly where an uninterrupted one does."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from palm_jax import main
from palm_jax.data import frame_log
from palm_jax.jobs import palm as palm_job
from palm_jax.palm import trainer as train
from palm_jax.runtime import checkpoint
from palm_jax.runtime.errors import UserError
from checkpoint_damage import truncate_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  import runpy
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.eval.train = ""
  c.total_env_steps = 64 * 24
  c.log.chunk_iterations = 8
  c.checkpoint.every_chunks = 1
  c.log.rollout_every_chunks = 2
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


def _final_encoder(workdir):
  _, variables, meta = checkpoint.restore_encoder(workdir)
  return jax.tree.map(np.asarray, variables), meta


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """`_config()` run uninterrupted, in process: the reference the resumed runs must equal."""
  workdir, total = tmp_path_factory.mktemp("full"), 64 * 32   # 4 chunks
  config = _config(total_env_steps=total, **{"experience.log": True})
  return workdir, palm_job.run(config, str(workdir))[0].metrics, total


def _read_log(workdir):
  log = frame_log.FrameLog(os.path.join(str(workdir), "experience"))
  return log, log.read(range(len(log)))


def test_experience_log_holds_every_env_step_once_in_online_order(full_run):
  """The uninterrupted run's experience log (palm_jax/palm/experience_log.py)."""
  config = _config()
  ref_log, ref = _read_log(full_run[0])
  n, length = config.env.num_envs, config.env.episode_length
  iterations = full_run[2] // n
  assert len(ref_log) == iterations * n and list(ref_log.shards) == [0, 1, 2, 3]
  # Online order: iteration-major, then environment, every (iteration, env) once.
  np.testing.assert_array_equal(ref["iteration"], np.repeat(np.arange(iterations), n))
  np.testing.assert_array_equal(ref["env"], np.tile(np.arange(n), iterations))
  # Episodes: t counts 0..L-1 one step at a time, the episode counter and class change
  # exactly when t wraps to 0, and every (env, episode, t) appears once.
  t = ref["t"].reshape(iterations, n)
  episode, label = ref["episode"].reshape(iterations, n), ref["label"].reshape(iterations, n)
  np.testing.assert_array_equal(t[1:], (t[:-1] + 1) % length)
  np.testing.assert_array_equal(episode[1:] - episode[:-1], (t[1:] == 0).astype(int))
  assert (label[1:] == label[:-1])[t[1:] != 0].all()
  assert episode[0].min() == 0 and (t[0] > 0).any()  # staggered starts
  keys = set(zip(ref["env"].tolist(), ref["episode"].tolist(), ref["t"].tolist()))
  assert len(keys) == len(ref_log)
  assert ref["frame"].shape[1:] == (16, 16, 3) and ref["frame"].std() > 0
  # Actions as the agent took them (uniform in [-1, 1] during warm-up), stored as float16.
  assert np.abs(ref["action"]).max() <= 1 and ref["action"].dtype == np.float16


def _assert_same_log(workdir, reference):
  ref_log, ref = _read_log(reference)
  log, got = _read_log(workdir)
  assert len(log) == len(ref_log) and log.shards == ref_log.shards
  assert not [p for p in os.listdir(workdir / "experience") if p.endswith(".tmp")]
  for k in ("iteration", "env", "episode", "t", "label", "action", "frame"):
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_result(tmp_path, monkeypatch, full_run):
  full_dir, full, total = full_run
  config = _config(total_env_steps=total, **{"experience.log": True})
  assert full["updated"] == 1.0 and np.isfinite(full["simsiam/loss"])

  # Crash right after the checkpoint of the second chunk was written.
  real_save = train._save
  calls = []

  def save_then_crash(*args, **kwargs):
    real_save(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2:
      args[0].wait()
      raise KeyboardInterrupt("simulated crash")
  monkeypatch.setattr(train, "_save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    palm_job.run(config, str(tmp_path / "resumed"))[0]
  monkeypatch.setattr(train, "_save", real_save)
  palm_job.run(config, str(tmp_path / "resumed"))[0]

  a, meta = _final_encoder(str(full_dir))
  b, _ = _final_encoder(str(tmp_path / "resumed"))
  assert meta["env_steps"] == total and meta["encoder"]["width"] == 8
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)
  steps = [json.loads(l)["step"] for l in open(tmp_path / "resumed" / "metrics.jsonl")]
  assert steps == [512, 1024, 1536, 2048]  # the crashed run's lines were kept, none repeated
  assert len([p for p in os.listdir(full_dir / "rollouts") if p.endswith(".png")]) == 2


def _wait_until(proc, cond, seconds=300):
  deadline = time.time() + seconds
  while time.time() < deadline and proc.poll() is None and not cond():
    time.sleep(0.1)
  return cond()


def _metric_steps(path):
  return [json.loads(l)["step"] for l in open(path)] if os.path.exists(path) else []


@pytest.mark.slow
def test_cli_sigterm_then_sigkill_resume_exactly_then_get_past_a_corrupt_checkpoint(
    tmp_path, full_run, caplog):
  """At the command line: SIGTERM → the chunk finishes, a checkpoint is saved, exit 3 with
  one resume line. The rerun is killed with SIGKILL mid-run (after it logged a step past
  the checkpoint); the third run drops those metric lines and experience-log shards,
  resumes and equals the uninterrupted run, its experience log included. Then (in process, same config) the newest checkpoint is corrupted: the rerun moves
  it to checkpoints/broken/, redoes the work and finishes (it died with Orbax's
  StepAlreadyExistsError before); a further rerun says the run is complete."""
  workdir, total = tmp_path / "run", full_run[2]
  overrides = {"eval.train": "", "total_env_steps": total, "log.rollout_every_chunks": 2,
               "checkpoint.every_chunks": 3, "experience.log": True}
  cmd = [sys.executable, "-m", "palm_jax.main", f"--config={ROOT}/configs/smoke.py",
         f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
  popen = lambda: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
  metrics = workdir / "metrics.jsonl"
  proc = popen()
  _wait_until(proc, lambda: _metric_steps(metrics))
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 3, out[-3000:]  # palm_jax.runtime.preemption.EXIT_PREEMPTED
  last = out.strip().splitlines()[-1]
  assert last.startswith("palm_jax: stopped by SIGTERM after") and "rerun the same command " \
      "to resume" in last and "Traceback" not in out
  saved = checkpoint.Checkpointer(str(workdir / "checkpoints")).all_steps()
  assert saved and saved[-1] in (512, 1024)  # saved on the signal (cadence: every 3 chunks)

  proc = popen()                             # resumes, then dies with no chance to clean up
  assert _wait_until(proc, lambda: _metric_steps(metrics)[-1] > saved[-1]), \
      proc.communicate()[0][-3000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert _metric_steps(metrics)[-1] < total  # it was killed before the end

  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0 and "Resumed from the checkpoint" in done.stderr, \
      done.stderr[-3000:]
  a, _ = _final_encoder(str(full_run[0]))
  b, meta = _final_encoder(str(workdir))
  assert meta["env_steps"] == total
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _metric_steps(metrics) == list(range(512, total + 1, 512))  # each step once
  assert os.path.exists(workdir / "rollouts")
  assert re.search(r"Experience log: kept (512|1,024|1,536) frames up to iteration "
                   r"(8|16|24)", done.stderr), done.stderr[-2000:]
  _assert_same_log(workdir, full_run[0])     # every env step once, the same frames

  config = _config(**overrides)              # the command line's config, in process
  truncate_state(str(workdir / "checkpoints" / str(total)))
  with caplog.at_level("INFO"):
    main.run_job(config, str(workdir))
  assert f"Checkpoint {total} cannot be read (its data files are truncated or corrupt); " \
      "moved it to" in caplog.text and f"Run finished at {total:,} env steps" in caplog.text
  assert os.listdir(workdir / "checkpoints" / "broken") == [str(total)]  # kept, not deleted
  jax.tree.map(np.testing.assert_array_equal, a, _final_encoder(str(workdir))[0])
  _assert_same_log(workdir, full_run[0])     # the redone chunks' shards were rewritten
  caplog.clear()
  with caplog.at_level("INFO"):
    main.run_job(config, str(workdir))
  assert f"is already complete ({total:,} env steps); nothing to train" in caplog.text


def test_config_mistakes_are_one_sentence(tmp_path):
  with pytest.raises(UserError, match=r"config.env.num_envs=60 .* multiple of 8"):
    palm_job.run(_config(**{"env.num_envs": 60}), str(tmp_path))[0]
  with pytest.raises(UserError, match="config.env.beta=1.5"):
    palm_job.run(_config(**{"env.beta": 1.5}), str(tmp_path))[0]
  with pytest.raises(UserError, match="config.simsiam.pairs='jitter'"):
    palm_job.run(_config(**{"simsiam.pairs": "jitter"}), str(tmp_path))[0]


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  real_make_chunk = train.palm_step.make_chunk

  def poisoned_make_chunk(*args, **kwargs):
    chunk, calls = real_make_chunk(*args, **kwargs), []

    def poisoned(*chunk_args):
      state, replay, metrics = chunk(*chunk_args)
      calls.append(1)
      if len(calls) == 2:  # the second chunk's critic loss diverges
        metrics = dict(metrics, **{"sac/critic_loss": np.float32("nan")})
      return state, replay, metrics
    return poisoned
  monkeypatch.setattr(train.palm_step, "make_chunk", poisoned_make_chunk)
  with pytest.raises(UserError, match=r"diverged at env step 1,024: sac/critic_loss became "
                                      r"NaN/inf; the last good checkpoint \(step 512\) is kept"):
    palm_job.run(_config(), str(tmp_path))[0]
  assert checkpoint.Checkpointer(checkpoint.checkpoint_dir(str(tmp_path))).all_steps() == [512]


@pytest.mark.slow
def test_resume_without_saved_replay_refills_before_updating(tmp_path, monkeypatch):
  config = _config(**{"checkpoint.save_replay": False})
  real_save = train._save

  def save_then_crash(*args, **kwargs):
    real_save(*args, **kwargs)
    args[0].wait()
    raise KeyboardInterrupt("simulated crash")
  monkeypatch.setattr(train, "_save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    palm_job.run(config, str(tmp_path))[0]
  assert not os.path.exists(tmp_path / "checkpoints" / "512" / "replay")
  monkeypatch.setattr(train, "_save", real_save)
  palm_job.run(config, str(tmp_path))[0]
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [512, 1024, 1536]
  # First chunk after the resume: its first iteration only refills the empty ring (an
  # iteration inserts before it updates, so the second already has a transition).
  assert rows[1]["updated"] == 0.875 and rows[2]["updated"] == 1.0


@pytest.mark.slow
def test_scan_and_host_loops_compute_the_same_run(tmp_path):
  """`loop="scan"` (accelerators) and `loop="host"` (CPU) are the same computation."""
  results = {}
  for loop in ("scan", "host"):
    # One chunk (4 warm-up iterations, then 4 with updates): on CPU the scan loop's
    # gradient convolutions are slow, and one chunk already compares every part.
    config = _config(loop=loop, total_env_steps=64 * 8, **{"log.rollout_every_chunks": 0})
    results[loop] = palm_job.run(config, str(tmp_path / loop))[0]
  a = jax.tree.leaves(results["scan"].state.simsiam.params)
  b = jax.tree.leaves(results["host"].state.simsiam.params)
  for x, y in zip(a, b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5)
  for k in ("simsiam/loss", "reward/mean", "sac/critic_loss", "updated"):
    np.testing.assert_allclose(results["scan"].metrics[k], results["host"].metrics[k],
                               rtol=1e-3, atol=1e-5)
