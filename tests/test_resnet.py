"""CIFAR ResNet: exact ResNet-18 size, shapes, BatchNorm train/eval behaviour, image I/O."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from palm_jax.models import resnet
from palm_jax.runtime import images as host_images
from palm_jax.runtime.errors import UserError


def test_resnet18_exact_parameter_count_and_feature_shape():
  model = resnet.resnet18()
  x = jnp.zeros((4, 32, 32, 3), jnp.uint8)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  # torchvision-style CIFAR ResNet-18 has 11,173,962 parameters with its 10-way classifier
  # (512·10 + 10 = 5,130); the encoder is the rest.
  assert resnet.count_params(variables["params"]) == 11_168_832 == 11_173_962 - 5_130
  # Running mean and variance of every BN channel: 2·(64 + 4·(64+128+256+512) + 3 shortcuts).
  bn_channels = 64 + 4 * (64 + 128 + 256 + 512) + (128 + 256 + 512)
  assert resnet.count_params(variables["batch_stats"]) == 2 * bn_channels
  out = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert out.shape == (4, 512) and out.dtype == jnp.float32
  assert "stem_conv" in variables["params"] and "stage3_block1" in variables["params"]


@pytest.fixture(scope="module")
def tiny():
  model = resnet.resnet_tiny()
  x = jax.random.randint(jax.random.key(1), (6, 16, 16, 3), 0, 256).astype(jnp.uint8)
  # An "rbg" key: XLA:CPU compiles threefry-based parameter init several times slower.
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  return model, variables, x


def test_tiny_shapes_dtypes_and_uint8_float_agree(tiny):
  model, variables, x = tiny
  feats = model.apply(variables, x)
  assert feats.shape == (6, 16) and feats.dtype == jnp.float32
  # The same images as float [-1, 1] give the same features (one input convention).
  np.testing.assert_allclose(model.apply(variables, resnet.images_to_float(x)), feats,
                             rtol=1e-5, atol=1e-6)
  bf16 = resnet.resnet_tiny(dtype=jnp.bfloat16)
  out = bf16.apply(variables, x)  # same params (float32), bf16 compute, float32 features
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, feats, rtol=0.1, atol=0.05)


def test_batchnorm_eval_is_per_sample_train_uses_and_updates_batch_stats(tiny):
  model, variables, x = tiny
  # Eval: running averages, so a sample's features do not depend on its batch-mates.
  np.testing.assert_allclose(model.apply(variables, x[:2]), model.apply(variables, x)[:2],
                             rtol=1e-5, atol=1e-6)
  # Train: batch statistics, so they do; and batch_stats move by momentum 0.9.
  feats, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  feats2, _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
  assert np.abs(np.asarray(feats[:2]) - np.asarray(feats2)).max() > 1e-3
  # Stem BN: new_mean = 0.9·0 + 0.1·mean(conv(x)), new_var = 0.9·1 + 0.1·var(conv(x)).
  kernel = variables["params"]["stem_conv"]["kernel"]
  conv = jax.lax.conv_general_dilated(
      resnet.normalize_images(x), kernel, (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
  stats = updates["batch_stats"]["stem_bn"]
  np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var((0, 1, 2)), rtol=1e-4)


def test_image_conversions_match_host_helper_and_normalisation():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1.1, 1.1, size=(5, 4, 4, 3)).astype(np.float32)
  u = resnet.images_to_uint8(jnp.asarray(x))
  assert u.dtype == jnp.uint8
  np.testing.assert_array_equal(np.asarray(u), host_images.to_uint8(x))
  back = np.asarray(resnet.images_to_float(u))
  inside = np.abs(x) <= 1
  assert np.abs(back - x)[inside].max() <= 1 / 127.5 + 1e-6
  # uint8 and float inputs meet at the same normalised values.
  u8 = rng.integers(0, 256, size=(3, 2, 2, 3), dtype=np.uint8)
  expect = (u8 / 255.0 - np.array(resnet.CIFAR_MEAN)) / np.array(resnet.CIFAR_STD)
  np.testing.assert_allclose(resnet.normalize_images(jnp.asarray(u8)), expect, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(resnet.normalize_images(resnet.images_to_float(u8)), expect,
                             rtol=1e-5, atol=1e-5)


def test_infer_resnet_rebuilds_architecture_from_params(tiny):
  model, variables, _ = tiny
  rebuilt = resnet.infer_resnet(variables["params"])
  assert rebuilt.stage_sizes == (1, 1) and rebuilt.width == 8 and rebuilt.feature_dim == 16
  with pytest.raises(UserError, match="stem_conv"):
    resnet.infer_resnet({"dense": {}})
