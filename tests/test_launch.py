"""Launch scripts: refuse clearly when a required variable is missing, and run the right
command (checked with stand-in `gcloud` / `srun` executables on PATH)."""
import os
import stat
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path, **env):
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir(exist_ok=True)
  for tool in ("gcloud", "srun"):
    path = fake_bin / tool
    path.write_text(f"#!/bin/sh\necho FAKE-{tool} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
  full_env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "HOME": str(tmp_path), **env}
  return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True,
                        timeout=60)


def test_tpu_pod_refuses_without_variables(tmp_path):
  out = _run(["bash", "launch/tpu_pod.sh", "run"], tmp_path)
  assert out.returncode == 2 and "TPU_NAME is not set" in out.stderr
  out = _run(["bash", "launch/tpu_pod.sh", "run"], tmp_path, TPU_NAME="t", ZONE="z")
  assert out.returncode == 2 and "CONFIG is not set" in out.stderr
  out = _run(["bash", "launch/tpu_pod.sh", "explode"], tmp_path)
  assert out.returncode == 2 and "usage" in out.stderr


def test_tpu_pod_run_uses_every_worker(tmp_path):
  out = _run(["bash", "launch/tpu_pod.sh", "run"], tmp_path, TPU_NAME="pod", ZONE="us-z",
             CONFIG="configs/cifar10.py", WORKDIR="/gcs/b/run")
  assert out.returncode == 0, out.stderr
  line = [l for l in out.stdout.splitlines() if l.startswith("FAKE-gcloud")][0]
  assert "tpu-vm ssh pod --zone=us-z --worker=all" in line
  assert "palm_jax.main --distributed --config=configs/cifar10.py --workdir=/gcs/b/run" in line


def test_slurm_refuses_and_runs(tmp_path):
  out = _run(["bash", "launch/slurm.sbatch"], tmp_path)
  assert out.returncode == 2 and "CONFIG is not set" in out.stderr
  python = tmp_path / "python"
  python.write_text("#!/bin/sh\n")
  python.chmod(0o755)
  out = _run(["bash", "launch/slurm.sbatch"], tmp_path, CONFIG="configs/smoke.py",
             WORKDIR="/shared/r", PYTHON=str(python))
  assert out.returncode == 0, out.stderr
  assert (f"FAKE-srun --kill-on-bad-exit=1 {python} -m palm_jax.main --distributed "
          "--config=configs/smoke.py --workdir=/shared/r") in out.stdout


def test_local_refuses_without_n_or_workdir(tmp_path):
  out = _run(["bash", "launch/local.sh", "--config=configs/smoke.py"], tmp_path)
  assert out.returncode == 2 and "number of processes N" in out.stderr
  out = _run(["bash", "launch/local.sh", "2", "--config=configs/smoke.py"], tmp_path)
  assert out.returncode == 2 and "no --workdir" in out.stderr


def test_tpu_pod_quotes_values_with_spaces(tmp_path):
  # A stand-in gcloud that prints each argument between brackets: argument boundaries show.
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "gcloud").write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done\n')
  (fake_bin / "gcloud").chmod(0o755)
  env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "HOME": str(tmp_path), "TPU_NAME": "pod",
         "ZONE": "us-z", "PROJECT": "my project", "CONFIG": "configs/cifar10.py",
         "WORKDIR": "/gcs/b/my run"}
  out = subprocess.run(["bash", "launch/tpu_pod.sh", "run"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  assert "[--project=my project]" in out.stdout          # one argument, not two
  assert r"--workdir=/gcs/b/my\ run" in out.stdout        # quoted for the remote shell
  env.pop("PROJECT")
  out = subprocess.run(["bash", "launch/tpu_pod.sh", "delete"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0 and "--project" not in out.stdout and "[]" not in out.stdout
