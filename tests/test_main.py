"""The entry point answers user mistakes with one sentence and exit status 2."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "palm_jax.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_unknown_job_is_one_sentence(tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text("import ml_collections\n"
                 "def get_config():\n"
                 "  return ml_collections.ConfigDict({'job': 'nope'})\n")
  out = _run(f"--config={cfg}", f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith("error: config.job='nope'")
  assert "Traceback" not in out.stderr


def test_missing_workdir(tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text("import ml_collections\n"
                 "def get_config():\n"
                 "  return ml_collections.ConfigDict({'job': 'sample'})\n")
  out = _run(f"--config={cfg}")
  assert out.returncode == 2 and "--workdir=DIR" in out.stderr


def _last_error(out):
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  return out.stderr.strip().splitlines()[-1]


def test_config_argument_is_one_sentence(tmp_path):
  """`FILE:ARG` for a config whose get_config takes no argument, or refuses ARG: one line
  saying what the file accepts, not ml_collections' traceback."""
  w = f"--workdir={tmp_path / 'w'}"
  assert _last_error(_run("--config=configs/smoke.py:foo", w)) == (
      "error: configs/smoke.py takes no argument after ':' (got 'foo'); pass "
      "--config=configs/smoke.py, and set fields with --config.<field>=<value>.")
  assert _last_error(_run("--config=configs/ood_eval.py:foo", w)) == (
      "error: --config=configs/ood_eval.py:foo: unknown config argument 'foo'; give none, or "
      "':smoke' for the tiny variant.")
  cfg = tmp_path / "needs_game.py"
  cfg.write_text("import ml_collections\n"
                 "def get_config(game):\n"
                 "  '''`game`: an Atari game, e.g. pong.'''\n"
                 "  return ml_collections.ConfigDict({'job': 'sample'})\n")
  assert _last_error(_run(f"--config={cfg}", w)).endswith(
      "missing 1 required positional argument: 'game'; its get_config says: `game`: an "
      "Atari game, e.g. pong.")
  assert not (tmp_path / "w").exists()


def test_a_value_for_a_group_names_its_fields(tmp_path):
  """`--config.data=tfds:x` where `data` is a group: the group's fields, and an example."""
  w = f"--workdir={tmp_path / 'w'}"
  assert _last_error(_run("--config=configs/linear_eval.py", "--config.data=tfds:nosuchset",
                          w)) == (
      "error: --config.data is a group of fields (download, image_size, limit, test, "
      "tfds_data_dir, train), not one value; set one of them, e.g. "
      "--config.data.test=tfds:nosuchset.")
  assert _last_error(_run("--config=configs/smoke.py", "--config.replay=7", w)).startswith(
      "error: --config.replay is a group of fields (action_dtype, capacity), not one value; "
      "set one of them, e.g. --config.replay.capacity=7.")


def test_a_config_for_another_job_names_the_file_to_use(tmp_path):
  out = _run("--config=configs/smoke.py", "--config.job=coverage", f"--workdir={tmp_path}/w")
  assert _last_error(out) == (
      "error: config.job='coverage' needs fields num_images, sources, features, inception, "
      "run, run_step, data, nn that configs/smoke.py does not have; use "
      "--config=configs/coverage.py.")


def _config_of(config_file: str):
  """The config a job module's CONFIG names ("FILE[:<game>] [--config.job=J]")."""
  import runpy  # pylint: disable=g-import-not-at-top
  file, *flags_ = config_file.split()
  path, _, arg = file.partition(":")
  config = runpy.run_path(os.path.join(ROOT, path))["get_config"](
      *(["pong"] if arg == "<game>" else [arg] if arg else []))
  for f in flags_:
    key, value = f[len("--config."):].split("=")
    config[key] = value
  return config


def test_every_job_names_its_config_and_the_fields_it_needs():
  """Each job's CONFIG exists, is a config for that job, and has every REQUIRED field."""
  from palm_jax import jobs  # pylint: disable=g-import-not-at-top
  for job in jobs.JOBS:
    config_file, required = jobs.config_file_for(job), jobs.required_fields(job)
    config = _config_of(config_file)
    assert config.job == job, (job, config_file)
    assert required and set(required) <= set(config.keys()), (job, config_file)
    jobs.check_fields(job, config, config_file)  # passes


@pytest.mark.parametrize("job, other, missing, use", [
    ("coverage", "configs/smoke.py", "num_images", "configs/coverage.py"),
    ("linear_eval", "configs/smoke.py", "data", "configs/linear_eval.py"),
    ("ood_eval", "configs/linear_eval.py", "knn_k", "configs/ood_eval.py"),
    ("palm", "configs/linear_eval.py", "total_env_steps", "configs/cifar10.py"),
    ("passive", "configs/coverage.py", "total_env_steps",
     "configs/cifar10.py --config.job=passive"),
    ("gan", "configs/smoke.py", "data_limit", "configs/gan_cifar10.py"),
    ("cas", "configs/smoke.py", "generators", "configs/cas.py"),
    ("sample", "configs/linear_eval.py", "generator", "configs/sample.py"),
    ("atari100k", "configs/smoke.py", "game", "configs/atari/drq.py:<game>"),
    ("collect", "configs/atari/drq.py", "frames_per_shard", "configs/atari/collect.py:<game>"),
    ("sweep", "configs/smoke.py", "base", "configs/sweeps/mini_paper.py"),
])
def test_a_job_refuses_a_config_written_for_another(tmp_path, job, other, missing, use):
  """`--config=<other job's file> --config.job=<job>` ended in an AttributeError inside the
  job; now one sentence names the missing fields and the file to use, before anything runs."""
  from palm_jax import jobs  # pylint: disable=g-import-not-at-top
  from palm_jax.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  config = _config_of(other)
  config.job = job
  with pytest.raises(UserError) as e:
    jobs.run_job(config, str(tmp_path / "w"), config_file=other)
  msg = str(e.value)
  assert msg.startswith(f"config.job={job!r} needs fields ") and f" {missing}" in msg
  assert msg.endswith(f"that {other} does not have; use --config={use}.")
  assert not (tmp_path / "w").exists()
