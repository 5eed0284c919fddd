"""Every bad input of issue 13 answered in one sentence before anything compiles.

Each case ran for minutes or ended in a traceback before (see the issue); here each must
raise a `UserError` (main prints it and exits 2) quickly, without writing config_*.json.
CLI-level cases (flag parsing) run `python -m palm_jax.main`; those exit before JAX is
imported, so each costs about a second.
"""
import json
import os
import runpy
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from palm_jax.main import run_job
from palm_jax.palm import validate
from palm_jax.runtime import run_records as preflight
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(**overrides):
  c = runpy.run_path(os.path.join(ROOT, "configs", "smoke.py"))["get_config"]()
  c.eval.train = c.eval.test = ""
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


def _npz(path, classes, n=40):
  rng = np.random.default_rng(0)
  np.savez(path, images=rng.integers(0, 256, (n, 16, 16, 3), np.uint8),
           labels=np.arange(n) % classes)
  return str(path)


def _refused(config, workdir, match):
  start = time.time()
  with pytest.raises(UserError, match=match):
    run_job(config, str(workdir))
  assert time.time() - start < 30  # refused before the chunk compiles (minutes on CPU)
  if os.path.isdir(workdir):
    assert not [p for p in os.listdir(workdir) if p.startswith("config_")]


def test_bad_sizes_and_paths_are_refused_before_compiling(tmp_path):
  _refused(_smoke(**{"env.num_envs": 0}), tmp_path / "a", r"num_envs=0 must be a positive")
  _refused(_smoke(**{"env.num_envs": -64}), tmp_path / "a", r"num_envs=-64 must be a posi")
  _refused(_smoke(batch_size=512, **{"reward.k": 4}), tmp_path / "a",
           r"batch_size=512 is larger than the 192 transitions")
  _refused(_smoke(**{"eval.train": "npz:/nonexistent.npz", "eval.test": "npz:/x.npz"}),
           tmp_path / "a", r"'/nonexistent.npz' does not exist")
  (tmp_path / "file").write_text("x")
  _refused(_smoke(), tmp_path / "file", r"is a file, not a directory")


def test_read_only_workdir(tmp_path):
  if os.geteuid() == 0:  # root writes through permission bits; /sys refuses everyone
    workdir = "/sys"
  else:
    workdir = tmp_path / "ro"
    workdir.mkdir()
    workdir.chmod(0o555)
  with pytest.raises(UserError, match=r"is not writable"):
    preflight.check_workdir(str(workdir))


def test_unreadable_generator_files(tmp_path):
  (tmp_path / "text.npz").write_text("not an archive")
  good = tmp_path / "good.npz"
  np.savez(good, **{"state/x": np.zeros(1000, np.float32)})
  (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
  (tmp_path / "gdir").mkdir()
  (tmp_path / "text.pkl").write_text("not a pickle")
  for name, match in (("text.npz", r"is not an .npz archive \(not a complete zip file"),
                      ("cut.npz", r"is not an .npz archive"),
                      ("text.pkl", r"as a StyleGAN2-ADA snapshot"),
                      ("gdir", r"is a directory; pass the weights file")):
    _refused(_smoke(generator=str(tmp_path / name)), tmp_path / "w", match)
  assert zipfile.is_zipfile(good)


def test_real_pairs_need_the_generators_classes(tmp_path):
  # pairs="real" now trains offline on every class of the dataset (representation/
  # offline.py); the check guards the in-environment bank, whose classes are the generator's.
  from palm_jax.data import load_dataset
  data = _npz(tmp_path / "ten.npz", classes=10)
  with pytest.raises(UserError, match=r"has 10 classes but the generator has c_dim=4"):
    validate.check_real_pairs(load_dataset(f"npz:{data}"), 4, f"npz:{data}")


def test_resume_with_a_changed_config(tmp_path):
  workdir = str(tmp_path)
  config = _smoke()
  assert preflight.write_config(workdir, "palm", config).endswith("config_palm.json")
  os.makedirs(os.path.join(workdir, "checkpoints", "512"))
  changed = _smoke(seed=7, **{"env.alpha": 0.1})
  with pytest.raises(UserError, match=r"different config \(env.alpha: 0.5 -> 0.1, seed: 0 -> "
                                      r"7\).*--allow_config_change"):
    preflight.check_resume_config(workdir, "palm", changed, allow_change=False)
  preflight.check_resume_config(workdir, "palm", changed, allow_change=True)
  # Logging, evaluation and checkpoint cadence may change.
  safe = _smoke(**{"log.rollout_every_chunks": 1, "eval.train": "npz:x",
                   "checkpoint.every_chunks": 5})
  preflight.check_resume_config(workdir, "palm", safe, allow_change=False)
  # A changed config never overwrites the file of the first one.
  assert preflight.write_config(workdir, "palm", safe).endswith("config_palm.1.json")
  assert preflight.write_config(workdir, "palm", safe).endswith("config_palm.1.json")
  with open(os.path.join(workdir, "config_palm.json")) as f:
    assert json.load(f)["checkpoint"]["every_chunks"] == config.checkpoint.every_chunks


def _cli(*args):
  cmd = [sys.executable, "-m", "palm_jax.main", f"--config={ROOT}/configs/smoke.py",
         "--workdir=/tmp/palm_jax_never_created", *args]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, match", [
    (["--config.env.num_envss=1"], 'names a config field that does not exist; did you mean '
                                   '"num_envs" instead of "num_envss"?'),
    (["--config.env.nonexistent=1"], "--config.env.nonexistent names a config field"),
    (["--config=/nonexistent/palm.py"], "--config file /nonexistent/palm.py cannot be loaded"),
])
def test_cli_flag_mistakes_are_one_line(args, match):
  out = _cli(*args)
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip() == f"error: {out.stderr.strip()[7:]}" and match in out.stderr
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
  assert not os.path.exists("/tmp/palm_jax_never_created")
