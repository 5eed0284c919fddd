"""linear_eval and ood_eval end to end: tiny encoder checkpoints, random init, errors.

Every run uses the `:smoke` configs' shapes (512 training images, tiny ResNet, batch 128)
so the encoder and the probe solver compile once for the whole module.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.evaluation import features, linear_eval
from palm_jax.main import run_job
from palm_jax.models import resnet
from palm_jax.runtime.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"stage_sizes": [1, 1], "width": 8}
# Ten well-separated mean colours: even a random encoder's features separate the classes.
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                    [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                    [128, 128, 128], [0, 0, 0]], np.float64)


def _config(name: str, **data):
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.data.update(data)
  return config


def _coloured(rng, n):
  labels = rng.integers(0, 10, n)
  images = PALETTE[labels][:, None, None, :] + rng.normal(0, 12, (n, 32, 32, 3))
  return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Synthetic npz splits and a tiny encoder checkpoint at step 7."""
  root = tmp_path_factory.mktemp("eval")
  rng = np.random.default_rng(0)
  paths = {}
  for split, n in (("train", 512), ("test", 200)):
    images, labels = _coloured(rng, n)
    np.savez(root / f"{split}.npz", images=images, labels=labels)
    paths[split] = f"npz:{root / f'{split}.npz'}"
  np.savez(root / "noise.npz", images=rng.integers(0, 256, (150, 32, 32, 3), np.uint8))
  paths["noise"] = f"npz:{root / 'noise.npz'}"
  model = resnet.ResNet(stage_sizes=(1, 1), width=8)
  # Eager init, like `features.random_encoder`: they share compiled initialisers.
  variables = model.init(jax.random.key(42), jnp.zeros((1, 32, 32, 3), jnp.uint8))
  paths["run"] = str(root / "run")
  features.save_encoder_checkpoint(paths["run"], 7, dict(variables), TINY)
  paths["variables"] = variables
  return paths


def _read(workdir, name):
  with open(os.path.join(workdir, "eval", name)) as f:
    return json.load(f)


def test_linear_eval_restores_the_checkpoint(files):
  config = _config("linear_eval", train=files["train"], test=files["test"], limit=0)
  config.encoder.width = 4  # Ignored: the checkpoint's meta names its own architecture.
  run_job(config, files["run"])
  result = _read(files["run"], "linear_eval.json")
  assert result["encoder_init"] == "checkpoint" and result["step"] == 7
  assert result["encoder"] == TINY and result["feature_dim"] == 16
  assert (result["num_train"], result["num_test"], result["num_classes"]) == (512, 200, 10)
  assert result["test_top1"] >= 0.9 and result["train_top1"] >= 0.9
  assert result["weight_decay"] in result["weight_decay_grid"]
  assert result["dataset"] == "train"
  # The weighted kNN classifier on the split, and the repeated stratified k-fold over
  # train + test pooled (the :smoke config: 5 folds, 1 repeat), all 712 images tested.
  assert set(result["knn_top1"]) == {"20", "200"}
  assert all(v >= 0.9 for v in result["knn_top1"].values())
  cv = result["cv"]
  assert (cv["num_images"], cv["folds"], cv["repeats"]) == (712, 5, 1)
  assert cv["probe_top1"] >= 0.9 and set(cv["knn_top1"]) == {"20", "200"}
  p = cv["probe_top1"]
  assert cv["probe_top1_se"] == pytest.approx(np.sqrt(p * (1 - p) / 712))
  assert np.mean(cv["probe_fold_top1"][0]) == pytest.approx(p, abs=0.01)
  eval_dir = pathlib.Path(files["run"]) / "eval"
  assert list((eval_dir / "tb").glob("events.out.tfevents.*"))
  logged = json.loads((eval_dir / "metrics.jsonl").read_text().splitlines()[-1])
  assert logged["step"] == 7 and logged["linear_eval/train/test_top1"] == result["test_top1"]
  # The record is named by datasets, encoder and step; linear_eval.json is its latest copy.
  record = "linear_eval_train__test_checkpoint_step7.json"
  assert result["record"] == record and _read(files["run"], record)["test_top1"] == \
      result["test_top1"]
  # The restored encoder computes exactly what the saved variables compute.
  restored = features.load_encoder(files["run"])
  images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), np.uint8)
  expected = resnet.ResNet(stage_sizes=(1, 1), width=8).apply(files["variables"], images)
  np.testing.assert_allclose(features.FeatureExtractor(restored, batch_size=8)(images),
                             expected, rtol=1e-5, atol=1e-5)


def test_evaluate_linear_api_for_the_palm_loop(files):
  encoder = features.from_variables(files["variables"], step=3)  # Architecture inferred.
  assert encoder.kwargs == TINY
  result = linear_eval.evaluate_linear(encoder, files["train"], files["test"], batch_size=128,
                                       probe={"max_iter": 100})
  assert result["step"] == 3 and result["test_top1"] >= 0.9


def test_from_variables_trusts_the_parameters_over_wrong_settings(files):
  wrong = {"stage_sizes": [2, 2], "width": 4, "proj_dim": 3, "dtype": "bfloat16"}
  assert features.from_variables(files["variables"], wrong).kwargs == TINY
  with pytest.raises(UserError, match="stem_conv"):
    features.from_variables({"params": {"dense": {"kernel": np.zeros((2, 2))}}})
  with pytest.raises(UserError, match="not ResNet arguments"):
    features.random_encoder({"depth": 18})


def test_linear_eval_random_init(files, tmp_path):
  config = _config("linear_eval", train=files["train"], test=files["test"], limit=0)
  # A workdir without a checkpoint (a mistyped path) is refused and not created...
  with pytest.raises(UserError, match=r"holds no checkpoint to evaluate.*encoder_init=random"):
    run_job(config, str(tmp_path / "empty"))
  assert not os.path.exists(tmp_path / "empty")
  config.encoder_init = "random"  # ...unless the random floor is asked for.
  run_job(config, str(tmp_path / "empty"))
  result = _read(tmp_path / "empty", "linear_eval.json")
  assert result["encoder_init"] == "random" and result["step"] == 0
  assert result["encoder"] == TINY and result["test_top1"] >= 0.5
  # Forced, even though the run has a checkpoint.
  workdir = tmp_path / "forced"
  features.save_encoder_checkpoint(str(workdir), 5, dict(files["variables"]), TINY)
  run_job(config, str(workdir))
  forced = _read(workdir, "linear_eval.json")
  assert forced["encoder_init"] == "random"
  assert "random_floor_test_top1" not in forced  # the encoder is the floor already


def test_linear_eval_prints_the_random_floor(files, tmp_path, monkeypatch, capsys):
  """A checkpoint's top-1 comes with the floor the palm job prints at the end of training:
  the same probe on a random encoder of the same architecture (cached; can be skipped)."""
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path / "cache"))
  workdir = tmp_path / "run"
  features.save_encoder_checkpoint(str(workdir), 5, dict(files["variables"]), TINY)
  config = _config("linear_eval", train=files["train"], test=files["test"], limit=0)
  assert config.random_floor  # on by default
  run_job(config, str(workdir))
  result = _read(workdir, "linear_eval.json")
  assert len(list((tmp_path / "cache" / "floors").glob("*.json"))) == 1
  floor = linear_eval.random_floor(  # the cached floor: what the job computed
      TINY, linear_eval.load_split(files["train"]), linear_eval.load_split(files["test"]),
      probe=config.probe, batch_size=config.batch_size)
  assert floor["encoder_init"] == "random" and floor["encoder"] == TINY
  assert result["random_floor_test_top1"] == floor["test_top1"]
  out = capsys.readouterr().out
  assert f"(a random encoder of the same architecture: {floor['test_top1']:.4f})" in out
  config.random_floor = False
  run_job(config, str(workdir))
  assert "random_floor_test_top1" not in _read(workdir, "linear_eval.json")
  assert "random encoder" not in capsys.readouterr().out


def test_ood_eval_end_to_end(files):
  config = _config("ood_eval", train=files["train"], test=files["test"], limit=0,
                   ood=f"{files['noise']},interp")
  run_job(config, files["run"])
  aurocs = _read(files["run"], "ood.json")
  assert set(aurocs) == {"noise", "interp"}
  for by_score in aurocs.values():
    assert set(by_score) == {"msp", "knn"}
    assert all(0.0 <= v <= 1.0 for v in by_score.values())
  assert aurocs["noise"]["knn"] > 0.95  # Uniform noise is far from the colour patches.
  details = _read(files["run"], "ood_details.json")
  assert details["encoder_init"] == "checkpoint" and details["step"] == 7
  assert details["sets"]["interp"]["num_images"] == 200 and details["knn_k"] == 10
  # The same label metrics as linear_eval's (linear_eval.knn_and_cv).
  assert set(details["knn_top1"]) == {"20", "200"} and details["knn_temperature"] == 0.07
  assert details["cv"]["num_images"] == 712 and details["cv"]["probe_top1"] >= 0.9
  spectrum = details["features"]    # label-free collapse numbers of the same features
  assert 0.0 < spectrum["normalised_std"] and 1.0 <= spectrum["effective_rank"] <= spectrum["dim"]
  png = pathlib.Path(files["run"]) / "eval" / "ood_roc.png"
  assert png.stat().st_size > 1000


def test_evaluations_join_the_wandb_summary_of_the_run_they_evaluate(files, tmp_path,
                                                                     monkeypatch):
  """With log.wandb=True, linear_eval and ood_eval add their numbers to the summary of the
  W&B run the training logged to (its id, project and entity from wandb_run.json), and send
  none of their own config fields (which would overwrite the training run's)."""
  pytest.importorskip("wandb")
  import wandb_records  # pylint: disable=import-outside-toplevel  (tests/: needs wandb)
  from palm_jax.runtime import metrics, wandb_log  # pylint: disable=import-outside-toplevel
  wandb_records.offline(monkeypatch, tmp_path)
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path / "cache"))
  workdir = str(tmp_path / "run")
  features.save_encoder_checkpoint(workdir, 7, dict(files["variables"]), TINY)
  training = wandb_log.Settings(True, "palm_train", config={"seed": 3, "data": "train"})
  writer = metrics.MetricWriter(workdir, enabled=True, wandb=training)
  writer.write_scalars(7, {"loss": 1.0})
  writer.close()
  for name, extra in (("linear_eval", {}), ("ood_eval", {"ood": files["noise"]})):
    config = _config(name, train=files["train"], test=files["test"], limit=0, **extra)
    config.log.wandb = True  # config.log.wandb_project stays "palm_jax": the run's file wins
    run_job(config, workdir)
  train_run, probe_run, ood_run = wandb_records.read_offline_runs(os.path.join(workdir, "wandb"))
  assert train_run["id"] == probe_run["id"] == ood_run["id"]
  assert probe_run["project"] == ood_run["project"] == "palm_train"
  for run in (probe_run, ood_run):  # the training run's config stays (W&B adds its `_wandb`)
    assert [k for k in run["config"] if not k.startswith("_")] == []
  assert probe_run["history"] == ood_run["history"] == {}     # summary only
  probe, ood_details = _read(workdir, "linear_eval.json"), _read(workdir, "ood_details.json")
  summary = probe_run["summary"]
  assert summary["linear_eval/test_top1"] == pytest.approx(probe["test_top1"])
  assert summary["linear_eval/knn_top1/20"] == pytest.approx(probe["knn_top1"]["20"])
  assert summary["linear_eval/cv/probe_top1"] == pytest.approx(probe["cv"]["probe_top1"])
  assert summary["linear_eval/random_floor_test_top1"] == pytest.approx(
      probe["random_floor_test_top1"])
  summary = ood_run["summary"]
  assert summary["ood/auroc/noise/knn"] == pytest.approx(ood_details["auroc"]["noise"]["knn"])
  assert summary["ood/probe_test_top1"] == pytest.approx(ood_details["probe_test_top1"])
  assert not any(k.startswith(("ood/encoder/", "ood/in_distribution/")) for k in summary)


@pytest.mark.parametrize("overrides, match", [
    ({"step": 99}, "no checkpoint for step 99"),
    ({"batch_size": 100}, "divide over the 8 devices"),
    ({"encoder_init": "pretrained"}, "encoder_init='pretrained'"),
    ({"data.train": "npz:/no/such/file.npz"}, "does not exist"),
    ({"data.test": "tfds:cifar10"}, "malformed"),
    ({"data.train": "NOISE"}, "has no labels"),
])
def test_user_errors(files, overrides, match):
  config = _config("linear_eval", train=files["train"], test=files["test"], limit=0)
  for key, value in overrides.items():
    value = files["noise"] if value == "NOISE" else value
    if key.startswith("data."):
      config.data[key[5:]] = value
    else:
      config[key] = value
  with pytest.raises(UserError, match=match):
    run_job(config, files["run"])


def test_ood_errors(files, tmp_path):
  config = _config("ood_eval", train=files["train"], test=files["test"], ood="")
  with pytest.raises(UserError, match="config.data.ood is empty"):
    run_job(config, str(tmp_path))
  config.data.ood = "interp"
  config.knn_k = 0
  with pytest.raises(UserError, match="knn_k=0"):
    run_job(config, str(tmp_path))


def test_absl_entry_prints_one_line_error(tmp_path):
  cmd = [sys.executable, "-m", "palm_jax.main", "--config=configs/linear_eval.py",
         f"--workdir={tmp_path}", "--config.data.train=npz:/no/such/train.npz"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "error: npz file '/no/such/train.npz' does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_linear_eval_on_the_shared_cifar_subset(shared_dir, tmp_path):
  root = shared_dir / "data" / "cifar_subset"
  config = _config("linear_eval", train=f"npz:{root}/cifar10_train_partial.npz",
                   test=f"npz:{root}/cifar10_test_partial.npz")
  config.encoder_init = "random"
  run_job(config, str(tmp_path))
  result = _read(tmp_path, "linear_eval.json")
  assert result["num_train"] == 512 and result["encoder_init"] == "random"
  assert result["test_top1"] > 0.15  # Chance is 0.1; a random tiny encoder gives ~0.28.
