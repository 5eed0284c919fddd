"""The `gan` job end to end on CPU: a tiny conditional run that is stopped and resumed
from its checkpoint, reaching the same weights as an uninterrupted run; the exported
generator loads with `load_generator`; EMA ramp-up against its formula."""
import importlib.util
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.gan import steps, train
from palm_jax.main import run_job
from palm_jax.models.stylegan2.weights import load_generator
from palm_jax.runtime.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WANDB = importlib.util.find_spec("wandb") is not None
BATCH = 8


def _config(total_steps: int):
  spec = importlib.util.spec_from_file_location(
      "gan_smoke", os.path.join(ROOT, "configs", "gan_smoke.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data = "synthetic:64"
  config.num_devices = 2          # the batch is split over 2 of the 8 simulated devices
  config.resolution = 8
  config.batch_size = BATCH
  config.total_kimg = total_steps * BATCH / 1000
  config.z_dim = config.w_dim = 16
  config.channel_base = 128       # 16 channels at 8x8 and 4x4
  config.channel_max = 16
  config.map_layers = config.d_map_layers = 1
  config.mbstd_group = 4
  config.augpipe = "bc"           # ADA with blit + colour transforms
  config.augment_p = 0.2
  config.d_reg_interval = 4       # R1 at steps 0 and 4
  config.ada_interval = 2
  config.log_every_kimg = 2 * BATCH / 1000
  config.sample_every_kimg = 3 * BATCH / 1000
  config.checkpoint_every_kimg = 3 * BATCH / 1000
  config.sample_cols = 2
  config.sample_max_rows = 3
  return config


def _read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An uninterrupted 6-step run (through `run_job`; logging to W&B offline when wandb is
  installed) and a 3 + 3-step resumed one."""
  whole = str(tmp_path_factory.mktemp("whole"))
  split = str(tmp_path_factory.mktemp("split"))
  config = _config(6)
  with pytest.MonkeyPatch.context() as patch:
    if WANDB:
      import wandb_records  # pylint: disable=g-import-not-at-top
      wandb_records.offline(patch, whole)
      config.log.wandb = True
    run_job(config, whole)
  first = train.train_gan(_config(3), split)
  second = train.train_gan(_config(6), split)
  return whole, split, first, second


def test_resume_reaches_the_same_weights(runs):
  whole, split, first, second = runs
  assert first == second == os.path.join(split, "generator.npz")
  a = np.load(os.path.join(whole, "generator.npz"))
  b = np.load(second)
  assert set(a.files) == set(b.files)
  for k in a.files:
    if k.startswith("state/"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6, err_msg=k)
  steps_whole = [r["step"] for r in _read_metrics(whole)]
  steps_split = [r["step"] for r in _read_metrics(split)]
  assert steps_whole == [2, 4, 6]
  assert steps_split == [2, 3, 4, 6]     # the first run ended (and logged) at step 3
  rows = _read_metrics(whole)
  for row in rows:
    for key in ("loss_g", "loss_d", "scores_real", "augment_p", "kimg", "sec_per_kimg",
                "kimg_per_sec"):
      assert np.isfinite(row[key]), (key, row)
  assert "loss_r1" in rows[0] and "loss_r1" not in rows[1]   # R1 only at steps 0 and 4
  assert rows[-1]["kimg"] == pytest.approx(6 * BATCH / 1000)
  # ADA moved p away from its start in steps of batch*interval/(ada_kimg*1000).
  step_size = BATCH * 2 / (2.0 * 1000)
  assert any(abs(r["augment_p"] - 0.2) > step_size / 2 for r in rows)


def test_exported_generator_loads_and_samples_exist(runs):
  whole, _, _, _ = runs
  gen = load_generator(os.path.join(whole, "generator.npz"))
  assert gen.c_dim == 10 and gen.img_resolution == 8 and gen.z_dim == 16
  img = gen.generate(jnp.ones((3, 16)), labels=np.array([0, 1, 2]))
  assert img.shape == (3, 8, 8, 3) and np.all(np.isfinite(np.asarray(img)))
  # A finished run is not redone: the PALM job calls train_gan on every (re)start.
  assert train.train_gan(_config(6), whole) == os.path.join(whole, "generator.npz")
  assert [r["step"] for r in _read_metrics(whole)] == [2, 4, 6]
  samples = sorted(os.listdir(os.path.join(whole, "samples")))
  assert samples == ["fakes000000.png", "reals.png"]   # named by whole kimg, as NVIDIA


def test_wandb_gets_the_metrics_and_the_sample_grids(runs):
  wandb_records = pytest.importorskip("wandb_records", reason="wandb is not installed")
  whole = runs[0]
  (run,) = wandb_records.read_offline_runs(os.path.join(whole, "wandb"))
  assert wandb_records.jsonl_matches(whole, [run]) == [2, 4, 6] and run["finished"]
  assert run["images"] and all(names == {"samples"} for names in run["images"].values())
  assert run["config"]["batch_size"] == BATCH and run["config"]["log.wandb"] is True


def test_ema_beta_matches_formula():
  for nimg, rampup in ((0, 0.05), (640, 0.05), (10 ** 7, 0.05), (640, None)):
    ema_nimg = 500 * 1000.0
    if rampup is not None:
      ema_nimg = min(ema_nimg, nimg * rampup)
    want = 0.5 ** (64 / max(ema_nimg, 1e-8))
    got = float(steps.ema_beta(jnp.asarray(nimg), 64, 500.0, rampup))
    np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(steps.ema_beta(jnp.asarray(0), 64, 500.0, 0.05)) == 0.0   # G_ema = G at first


def test_lazy_regularisation_optimiser_correction():
  """NVIDIA: with reg interval k the Adam lr and betas are scaled by k/(k+1)."""
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  tx = steps.make_optimizer(0.0025, 0.99, 1e-8, 16)
  updates, _ = tx.update(grads, tx.init(params), params)
  ratio = 16 / 17
  b2 = 0.99 ** ratio
  v_hat = (1 - b2) * grads["w"] ** 2 / (1 - b2)
  want = -0.0025 * ratio * grads["w"] / (np.sqrt(v_hat) + 1e-8)
  np.testing.assert_allclose(updates["w"], want, rtol=1e-6)
  bad, state = tx.update({"w": jnp.asarray([np.nan, 1.0, 1.0])}, tx.init(params), params)
  assert np.all(np.asarray(bad["w"]) == 0) and int(steps.nonfinite_count(state)) == 1


def test_user_errors_before_compiling(tmp_path):
  config = _config(2)
  config.mbstd_group = 3
  with pytest.raises(UserError, match="mbstd_group=3"):
    train.train_gan(config, str(tmp_path))
  config = _config(2)
  config.augpipe = "nope"
  with pytest.raises(UserError, match="augpipe='nope'"):
    train.train_gan(config, str(tmp_path))
  config = _config(2)
  config.cond, config.data = True, "synthetic:x"
  with pytest.raises(UserError, match="synthetic"):
    train.train_gan(config, str(tmp_path))


def test_synthetic_dataset_is_labelled_and_varied():
  images, labels = train.synthetic_dataset(40, 16, 4)
  assert images.shape == (40, 16, 16, 3) and images.dtype == np.uint8
  assert set(labels) <= {0, 1, 2, 3} and images.std() > 10
  means = [images[labels == k].reshape(-1, 3).mean(0) for k in range(4) if np.any(labels == k)]
  assert np.ptp(np.stack(means), axis=0).max() > 5     # classes differ in colour


def test_stop_signal_saves_and_the_rerun_resumes_exactly(runs, tmp_path, monkeypatch):
  """SIGTERM/SIGINT during the gan job: the step finishes, a checkpoint is saved, the job
  raises `Preempted` (main: one line, exit 3); rerunning reaches the uninterrupted weights."""
  from palm_jax.runtime import preemption
  whole = runs[0]
  calls = []

  def requested(sync=True):
    calls.append(1)
    return len(calls) == 2  # the signal arrives during step 2 (checkpoints: every 3)
  monkeypatch.setattr(preemption, "requested", requested)
  with pytest.raises(preemption.Preempted, match=r"after 0.0 kimg: checkpoint saved at step "
                                                 r"2 in .*rerun the same command"):
    train.train_gan(_config(6), str(tmp_path))
  monkeypatch.undo()
  assert os.listdir(tmp_path / "checkpoints") == ["2"]
  train.train_gan(_config(6), str(tmp_path))
  a, b = np.load(os.path.join(whole, "generator.npz")), np.load(tmp_path / "generator.npz")
  for k in a.files:
    if k.startswith("state/"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6, err_msg=k)
