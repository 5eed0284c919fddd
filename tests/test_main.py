"""The entry point answers user mistakes with one sentence and exit status 2."""
import os
import subprocess
import sys

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
