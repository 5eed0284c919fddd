"""StyleGAN2-ADA generator: parity with the official fixture, fast ops vs slow references."""
import contextlib
import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax import bench
from palm_jax.models import stylegan2 as sg
from palm_jax.runtime.errors import UserError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def fixture(shared_dir):
  data = np.load(shared_dir / "fixtures" / "stylegan2_ada_small.npz")
  return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def gen(shared_dir):
  return sg.load_generator(shared_dir / "fixtures" / "stylegan2_ada_small.npz")


def _nhwc(x):
  return np.transpose(x, (0, 2, 3, 1))


# ------------------------------------------------------------------- fixture parity ---

def test_ws_match_official(gen, fixture):
  for psi, name in ((1.0, "ws_psi1p0"), (0.7, "ws_psi0p7")):
    ws = np.asarray(gen.map(fixture["z"], fixture["labels"], truncation_psi=psi))
    assert ws.shape == (8, gen.num_ws, gen.w_dim) == (8, 8, 64)
    np.testing.assert_allclose(ws, fixture[name], rtol=0, atol=1e-5)


def test_images_match_official_fp32(gen, fixture):
  z, labels = fixture["z"], fixture["labels"]
  for psi, name in ((1.0, "img_psi1p0"), (0.7, "img_psi0p7")):
    img = np.asarray(gen.generate(z, labels, truncation_psi=psi, noise_mode="const"))
    assert img.shape == (8, 32, 32, 3) and img.dtype == np.float32
    assert np.abs(img - _nhwc(fixture[name])).max() < 1e-4
  img = np.asarray(gen.generate(z, labels, noise_mode="none"))
  assert np.abs(img - _nhwc(fixture["img_psi1p0_noise_none"])).max() < 1e-4


# The generator candidates the GPU bench chooses between: every up-conv implementation and
# modulation form, also mixed per resolution, in bf16 (transpose: its blur runs in bf16).
CANDIDATES = [("polyphase", "activations"), ("transpose", "activations"),
              ("polyphase", "weights"), ("8:transpose,16:polyphase", "4:weights,8:weights")]


@pytest.mark.parametrize("up_impl,modulation", CANDIDATES)
def test_bf16_close_to_fp32(gen, fixture, up_impl, modulation):
  fast = gen.with_dtype(jnp.bfloat16).with_impl(up_impl, modulation)
  img = np.asarray(fast.generate(fixture["z"], fixture["labels"]))
  ref = _nhwc(fixture["img_psi1p0"])
  assert np.linalg.norm(img - ref) / np.linalg.norm(ref) < 2e-2


def test_candidates_match_official_fp32(gen, fixture):
  img = np.asarray(gen.with_impl("transpose", "weights").generate(fixture["z"],
                                                                  fixture["labels"]))
  assert np.abs(img - _nhwc(fixture["img_psi1p0"])).max() < 1e-4


def test_per_resolution_choices():
  assert sg.choice_for_resolution("8:transpose,16:polyphase", 8, sg.UP_IMPLS, "x") == "transpose"
  assert sg.choice_for_resolution("8:transpose", 32, sg.UP_IMPLS, "x") == "polyphase"
  assert sg.choice_for_resolution("weights", 4, sg.MODULATIONS, "x") == "weights"
  with pytest.raises(UserError, match="config.generator_up_impl='8:fast'"):
    sg.validate_impls("8:fast", "activations", field="config.generator_")
  with pytest.raises(UserError, match="modulation='fused'"):
    sg.validate_impls("polyphase", "fused")


# ----------------------------------------------------- slow references (official maths) ---

def _ref_upfirdn2d(x, f, up=1, pad=(0, 0), gain=1.0):
  """Official upfirdn2d (up, pad, FIR as a true convolution) on NCHW torch tensors."""
  n, c, h, w = x.shape
  x = x.reshape(n, c, h, 1, w, 1)
  x = torch.nn.functional.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
  p0, p1 = pad
  x = torch.nn.functional.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
  x = x[:, :, max(-p0, 0):x.shape[2] - max(-p1, 0), max(-p0, 0):x.shape[3] - max(-p1, 0)]
  f = torch.as_tensor(f * gain, dtype=x.dtype).flip([0, 1])
  return torch.nn.functional.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)


def _ref_modconv(x, weight, styles, demodulate, up, taps):
  """Official fused modulated_conv2d: per-sample weights, conv2d / convT + FIR, per sample."""
  w = weight[None] * styles[:, None, :, None, None]                       # [N, O, I, k, k]
  if demodulate:
    w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
  k, f_len = weight.shape[-1], len(taps)
  out = []
  for n in range(x.shape[0]):
    if up == 1:
      out.append(torch.nn.functional.conv2d(x[n:n + 1], w[n], padding=k // 2))
      continue
    # conv2d_resample(up=2, padding=k//2, flip_weight=False) as the official code does it.
    px0 = k // 2 + (f_len + 1) // 2 - (k - 1)
    px1 = k // 2 + (f_len - 2) // 2 - (k - 2)
    pxt = max(min(-px0, -px1), 0)
    t = torch.nn.functional.conv_transpose2d(x[n:n + 1], w[n].transpose(0, 1), stride=2,
                                             padding=pxt)
    out.append(_ref_upfirdn2d(t, sg.fir_filter_2d(taps), pad=(px0 + pxt, px1 + pxt), gain=4))
  return torch.cat(out)


@pytest.mark.parametrize("up,impl,taps", [
    (1, "polyphase", (1, 3, 3, 1)),
    (2, "polyphase", (1, 3, 3, 1)),
    (2, "transpose", (1, 3, 3, 1)),
    (2, "polyphase", (1, 2, 1)),
    (2, "transpose", (1, 2, 1)),
])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_slow_reference(up, impl, taps, demodulate):
  _check_modulated_conv(up, impl, taps, demodulate, "activations")


@pytest.mark.parametrize("up,impl,taps,demodulate", [
    (1, "polyphase", (1, 3, 3, 1), True),
    (2, "polyphase", (1, 3, 3, 1), True),
    (2, "transpose", (1, 2, 1), False),
])
def test_fused_modulation_matches_slow_reference(up, impl, taps, demodulate):
  _check_modulated_conv(up, impl, taps, demodulate, "weights")


def _check_modulated_conv(up, impl, taps, demodulate, modulation):
  rng = np.random.default_rng(0)
  n, h, i, o = 3, 5, 6, 7                                  # non-square channels, odd size
  x = rng.standard_normal((n, i, h, h)).astype(np.float32)
  weight = rng.standard_normal((o, i, 3, 3)).astype(np.float32)
  styles = rng.standard_normal((n, i)).astype(np.float32)
  ref = _ref_modconv(torch.tensor(x), torch.tensor(weight), torch.tensor(styles),
                     demodulate, up, taps).numpy()
  got = sg.modulated_conv2d(jnp.asarray(_nhwc(x)), jnp.asarray(weight), jnp.asarray(styles),
                            demodulate=demodulate, up=up, resample_filter=taps, up_impl=impl,
                            modulation=modulation, precision=jax.lax.Precision.HIGHEST)
  assert got.shape == (n, up * h, up * h, o)
  np.testing.assert_allclose(np.asarray(got), _nhwc(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 1)])
def test_upsample_2x_matches_official_upsample2d(taps):
  x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
  f_len = len(taps)
  ref = _ref_upfirdn2d(torch.tensor(x), sg.fir_filter_2d(taps), up=2,
                       pad=((f_len + 1) // 2, (f_len - 2) // 2), gain=4).numpy()
  got = np.asarray(sg.upsample_2x(jnp.asarray(_nhwc(x)), taps))
  np.testing.assert_allclose(got, _nhwc(ref), rtol=1e-5, atol=1e-5)


def test_demodulation_coefficients_equal_per_sample_weight_norms():
  rng = np.random.default_rng(2)
  weight = rng.standard_normal((4, 3, 3, 3))
  styles = rng.standard_normal((2, 3))
  per_sample = weight[None] * styles[:, None, :, None, None]
  ref = 1 / np.sqrt((per_sample ** 2).sum(axis=(2, 3, 4)) + 1e-8)
  got = sg.demodulation_coefficients(jnp.asarray(weight, jnp.float32),
                                     jnp.asarray(styles, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


# ------------------------------------------------------------- module behaviour/API ---

def test_truncation_cutoff_and_w_avg_update(gen, fixture):
  z, c = jnp.asarray(fixture["z"]), jax.nn.one_hot(fixture["labels"], 10)

  @jax.jit
  def run(variables):
    apply = functools.partial(gen.module.apply, variables, z, c, method="mapping")
    return apply(1.0), apply(0.5, 3), apply(update_w_avg=True, mutable=["buffers"])[1]
  full, cut, updates = run(gen.variables)
  w_avg = gen.buffers["mapping"]["w_avg"]
  np.testing.assert_allclose(cut[:, :3], w_avg + 0.5 * (full[:, :3] - w_avg), atol=1e-6)
  np.testing.assert_allclose(cut[:, 3:], full[:, 3:], atol=1e-6)
  mean = full[:, 0].mean(axis=0)
  np.testing.assert_allclose(updates["buffers"]["mapping"]["w_avg"],
                             mean + 0.995 * (w_avg - mean), atol=1e-6)


def test_synthesize_random_noise_and_chunking(gen, fixture):
  ws = fixture["ws_psi0p7"]
  a = gen.synthesize(ws, noise_mode="random", rng=jax.random.key(1))
  b = gen.synthesize(ws, noise_mode="random", rng=jax.random.key(2))
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  chunked = gen.synthesize(ws, noise_mode="const", chunk_size=3)   # 3 chunks, last padded
  assert np.abs(np.asarray(chunked) - _nhwc(fixture["img_psi0p7"])).max() < 1e-4


def test_handle_rejects_bad_inputs(gen, fixture):
  z = fixture["z"]
  with pytest.raises(UserError, match="labels must lie in"):
    gen.map(z, np.full(8, 10))
  with pytest.raises(UserError, match=r"z must have shape \[N, 32\]"):
    gen.map(z[:, :5], fixture["labels"])
  with pytest.raises(UserError, match="labels are required"):
    gen.map(z)
  with pytest.raises(UserError, match="needs rng"):
    gen.generate(z, fixture["labels"], noise_mode="random")


def test_config_counts_and_rejections():
  cfg = sg.GeneratorConfig.from_kwargs(
      z_dim=0, c_dim=3, w_dim=8, img_resolution=64, img_channels=1,
      synthesis_kwargs=dict(channel_base=1024, channel_max=128, num_fp16_res=4))
  assert cfg.num_ws == 10
  assert cfg.channels == {4: 128, 8: 128, 16: 64, 32: 32, 64: 16}
  assert sg.GeneratorConfig.from_kwargs(**cfg.to_kwargs()) == cfg
  with pytest.raises(UserError, match="architecture 'resnet' is not supported"):
    sg.GeneratorConfig.from_kwargs(4, 0, 8, 8, 3, synthesis_kwargs=dict(architecture="resnet"))
  with pytest.raises(UserError, match=r"unsupported keys \['bogus'\]"):
    sg.GeneratorConfig.from_kwargs(4, 0, 8, 8, 3, mapping_kwargs=dict(bogus=1))


def test_init_generator_without_z():
  gen = sg.init_generator(jax.random.key(0), z_dim=0, c_dim=3, w_dim=8, img_resolution=4,
                          img_channels=1, mapping_kwargs=dict(num_layers=1, w_avg_beta=None),
                          synthesis_kwargs=dict(channel_base=64, channel_max=8))
  assert gen.num_ws == 2 and gen.params["synthesis"]["b4"]["const"].shape == (8, 4, 4)
  assert "buffers" not in gen.variables or "mapping" not in gen.buffers   # no w_avg
  ws = gen.map(None, np.array([0, 2]))
  assert ws.shape == (2, 2, 8) and np.isfinite(np.asarray(ws)).all()
  with pytest.raises(UserError, match="w_avg_beta=None"):
    gen.map(None, np.array([0, 2]), truncation_psi=0.5)


def test_bench_generator_tiny():
  args = bench.parse_args(["generator", "--channels=8", "--batch_sizes=4", "--iters=1",
                           "--warmup=1", "--z_dim=8", "--w_dim=8", "--resolution=4",
                           "--dtype=float32"])
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rows = bench.bench_generator(args)
  assert rows[0]["batch"] == 4 and rows[0]["images_per_s"] > 0
  assert "img/s" in out.getvalue() and "TFLOP/s" in out.getvalue()
  cifar = sg.GeneratorConfig.from_kwargs(512, 10, 512, 32, 3,
                                         synthesis_kwargs=dict(channel_base=16384))
  assert bench.generator_flops_per_image(cifar) / 1e9 == pytest.approx(8.0, abs=0.01)
  assert bench.generator_flops_per_image(cifar, True) / 1e9 == pytest.approx(12.76, abs=0.01)
  json.dumps(rows)
