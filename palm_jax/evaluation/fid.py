"""FID and KID with the FID Inception-v3 in Flax, from a user-supplied weight file.

The weights cannot be downloaded at run time: pass the pytorch-fid file
`pt_inception-2015-12-05-6726825d.pth` (a PyTorch state dict; reading it needs torch) or a
`.npz` with the same keys (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`,
...; convert once with `python -c "from palm_jax.evaluation import fid;
fid.convert('in.pth', 'out.npz')"`, then no torch is needed). The network is pytorch-fid's
`InceptionV3` up to the 2048-d pool3 features:
bilinear resize to 299x299 (align_corners=False), `2x - 1`, torchvision's stem and blocks
with FIDInceptionA/C/E_1/E_2 (average pools exclude padding; the last block max-pools).
Every convolution is `relu(BN(conv(x)))` with BN eps 1e-3. Channel widths follow the
file, so a small random network of the same structure (tests) runs the same code.

  FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))     (S: unbiased covariance)
  KID = mean over subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import UserError, require

_FEATURES = 2048


def _scaled(n: int, scale: float) -> int:
  return max(1, int(round(n * scale)))


class BasicConv(nn.Module):
  """`relu(BN_eval(conv(x)))`, torchvision's BasicConv2d (no conv bias, BN eps 1e-3)."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel
    w = self.param("kernel", nn.initializers.lecun_normal(),
                   (kh, kw, x.shape[-1], self.features))
    bn = {k: self.param(k, init, (self.features,)) for k, init in (
        ("scale", nn.initializers.ones), ("bias", nn.initializers.zeros),
        ("mean", nn.initializers.zeros), ("var", nn.initializers.ones))}
    ph, pw = self.padding
    x = jax.lax.conv_general_dilated(x, w, (self.stride, self.stride), [(ph, ph), (pw, pw)],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = (x - bn["mean"]) * (bn["scale"] * jax.lax.rsqrt(bn["var"] + 1e-3)) + bn["bias"]
    return jax.nn.relu(x)


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3, stride 1, padding 1, count_include_pad=False."""
  window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  s = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  return s / jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)


def _max_pool(x: jax.Array, stride: int, pad: int) -> jax.Array:
  p = ((0, 0), (pad, pad), (pad, pad), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), p)


class InceptionFID(nn.Module):
  """pytorch-fid InceptionV3 -> pool3 features [N, 2048*scale] from uint8/float images.

  `scale` multiplies every channel width (1.0 for the real network). Input: images
  [N, H, W, 3], uint8 or float in [0, 1]; resized to `resize` x `resize` bilinearly.
  """
  scale: float = 1.0
  resize: int = 299

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    s = lambda n: _scaled(n, self.scale)  # noqa: E731
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    n = x.shape[0]
    x = jax.image.resize(x, (n, self.resize, self.resize, x.shape[-1]), "linear",
                         antialias=False)
    x = 2 * x - 1
    conv = lambda name, f, k, st=1, pad=(0, 0): BasicConv(  # noqa: E731
        s(f), k if isinstance(k, tuple) else (k, k), st, pad, name=name)
    x = conv("Conv2d_1a_3x3", 32, 3, 2)(x)
    x = conv("Conv2d_2a_3x3", 32, 3)(x)
    x = conv("Conv2d_2b_3x3", 64, 3, 1, (1, 1))(x)
    x = _max_pool(x, 2, 0)
    x = conv("Conv2d_3b_1x1", 80, 1)(x)
    x = conv("Conv2d_4a_3x3", 192, 3)(x)
    x = _max_pool(x, 2, 0)
    for name, pool in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):   # A
      p = lambda b, *a, name=name, **k: conv(f"{name}.{b}", *a, **k)  # noqa: E731
      b1 = p("branch1x1", 64, 1)(x)
      b5 = p("branch5x5_2", 64, 5, 1, (2, 2))(p("branch5x5_1", 48, 1)(x))
      b3 = p("branch3x3dbl_1", 64, 1)(x)
      b3 = p("branch3x3dbl_3", 96, 3, 1, (1, 1))(p("branch3x3dbl_2", 96, 3, 1, (1, 1))(b3))
      bp = p("branch_pool", pool, 1)(_avg_pool_exclude_pad(x))
      x = jnp.concatenate([b1, b5, b3, bp], -1)
    b3 = conv("Mixed_6a.branch3x3", 384, 3, 2)(x)                                # B
    bd = conv("Mixed_6a.branch3x3dbl_1", 64, 1)(x)
    bd = conv("Mixed_6a.branch3x3dbl_2", 96, 3, 1, (1, 1))(bd)
    bd = conv("Mixed_6a.branch3x3dbl_3", 96, 3, 2)(bd)
    x = jnp.concatenate([b3, bd, _max_pool(x, 2, 0)], -1)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                     ("Mixed_6e", 192)):                                           # C
      p = lambda b, *a, name=name, **k: conv(f"{name}.{b}", *a, **k)  # noqa: E731
      b1 = p("branch1x1", 192, 1)(x)
      b7 = p("branch7x7_1", c7, 1)(x)
      b7 = p("branch7x7_2", c7, (1, 7), 1, (0, 3))(b7)
      b7 = p("branch7x7_3", 192, (7, 1), 1, (3, 0))(b7)
      bd = p("branch7x7dbl_1", c7, 1)(x)
      for i, (f, k, pad) in enumerate(((c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)),
                                       (c7, (7, 1), (3, 0)), (192, (1, 7), (0, 3)))):
        bd = p(f"branch7x7dbl_{i + 2}", f, k, 1, pad)(bd)
      bp = p("branch_pool", 192, 1)(_avg_pool_exclude_pad(x))
      x = jnp.concatenate([b1, b7, bd, bp], -1)
    b3 = conv("Mixed_7a.branch3x3_2", 320, 3, 2)(conv("Mixed_7a.branch3x3_1", 192, 1)(x))  # D
    b7 = conv("Mixed_7a.branch7x7x3_1", 192, 1)(x)
    b7 = conv("Mixed_7a.branch7x7x3_2", 192, (1, 7), 1, (0, 3))(b7)
    b7 = conv("Mixed_7a.branch7x7x3_3", 192, (7, 1), 1, (3, 0))(b7)
    b7 = conv("Mixed_7a.branch7x7x3_4", 192, 3, 2)(b7)
    x = jnp.concatenate([b3, b7, _max_pool(x, 2, 0)], -1)
    for name in ("Mixed_7b", "Mixed_7c"):                                          # E
      p = lambda b, *a, name=name, **k: conv(f"{name}.{b}", *a, **k)  # noqa: E731
      b1 = p("branch1x1", 320, 1)(x)
      b3 = p("branch3x3_1", 384, 1)(x)
      b3 = jnp.concatenate([p("branch3x3_2a", 384, (1, 3), 1, (0, 1))(b3),
                            p("branch3x3_2b", 384, (3, 1), 1, (1, 0))(b3)], -1)
      bd = p("branch3x3dbl_2", 384, 3, 1, (1, 1))(p("branch3x3dbl_1", 448, 1)(x))
      bd = jnp.concatenate([p("branch3x3dbl_3a", 384, (1, 3), 1, (0, 1))(bd),
                            p("branch3x3dbl_3b", 384, (3, 1), 1, (1, 0))(bd)], -1)
      pooled = _avg_pool_exclude_pad(x) if name == "Mixed_7b" else _max_pool(x, 1, 1)
      bp = p("branch_pool", 192, 1)(pooled)
      x = jnp.concatenate([b1, b3, bd, bp], -1)
    return jnp.mean(x, axis=(1, 2))


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  require(os.path.isfile(path), f"Inception weight file {path!r} does not exist; download "
          "pytorch-fid's pt_inception-2015-12-05-6726825d.pth elsewhere and point "
          "config.fid.inception at it.")
  if path.endswith(".npz"):
    with np.load(path) as f:
      return {k: np.asarray(f[k]) for k in f.files}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f"reading {path!r} needs PyTorch, which is not installed; convert it "
                    "once to .npz on a machine that has torch: `python -c \"from palm_jax."
                    "evaluation import fid; fid.convert('IN.pth', 'OUT.npz')\"`.") from e
  sd = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def params_from_state_dict(sd: dict[str, np.ndarray]) -> tuple[dict, float]:
  """pytorch-fid state dict -> (Flax params of `InceptionFID`, width scale)."""
  key = "Conv2d_1a_3x3.conv.weight"
  require(key in sd, f"the Inception weight file has no {key!r}; it must be pytorch-fid's "
                     "FID Inception state dict (pt_inception-2015-12-05-*.pth) or an .npz of "
                     "its keys.")
  scale = sd[key].shape[0] / 32.0
  params = {}
  for name in {k.rsplit(".", 2)[0] for k in sd if k.endswith(".conv.weight")}:
    bn = f"{name}.bn."
    params[name] = {"kernel": np.transpose(sd[f"{name}.conv.weight"], (2, 3, 1, 0)),
                    "scale": sd[bn + "weight"], "bias": sd[bn + "bias"],
                    "mean": sd[bn + "running_mean"], "var": sd[bn + "running_var"]}
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), scale


@functools.lru_cache(maxsize=None)
def _compiled_apply(scale: float, resize: int) -> Callable:
  """One jitted forward per network shape, shared by every InceptionFeatures."""
  model = InceptionFID(scale=scale, resize=resize)
  return jax.jit(lambda params, x: model.apply({"params": params}, x))


class InceptionFeatures:
  """Loads the weights once; `__call__(images uint8 [N, H, W, 3]) -> float64 [N, 2048]`."""

  def __init__(self, path: str, *, batch_size: int = 250, resize: int = 299):
    sd = _read_state_dict(path)
    params, scale = params_from_state_dict(sd)
    self.model = InceptionFID(scale=scale, resize=resize)
    self.params = params
    self.batch_size = batch_size
    want = jax.eval_shape(self.model.init, jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3), jnp.uint8))["params"]
    bad = [f"{layer}.{k}" for layer, leaves in want.items() for k, leaf in leaves.items()
           if layer not in params or params[layer][k].shape != leaf.shape]
    require(not bad, f"the Inception weights in {path!r} do not fit pytorch-fid's FID "
                     f"Inception-v3 (missing or misshapen: {', '.join(bad[:3])}); use "
                     "pt_inception-2015-12-05-6726825d.pth or an .npz of its keys.")
    self._apply = _compiled_apply(scale, resize)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(images), self.batch_size):
      chunk = np.asarray(images[i:i + self.batch_size])
      pad = self.batch_size - len(chunk)   # one compiled shape for every batch
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
      out.append(np.asarray(self._apply(self.params, chunk))[:len(chunk) - pad])
    return np.concatenate(out).astype(np.float64)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """`||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))` without scipy: the trace of the
  square root is `sum sqrt(eig(A S2 A))`, A = S1^(1/2) (symmetric PSD, via eigh)."""
  w, v = np.linalg.eigh(sigma1)
  a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  eig = np.linalg.eigvalsh(a @ sigma2 @ a)
  tr_sqrt = np.sum(np.sqrt(np.clip(eig, 0, None)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and unbiased covariance [D, D] of features [N, D] (pytorch-fid's np.cov)."""
  return features.mean(0), np.cov(features, rowvar=False)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> float:
  """NVIDIA's KID: mean over subsets of size m of the unbiased MMD^2, cubic kernel."""
  rng = np.random.default_rng(seed)
  d = real.shape[1]
  m = min(len(real), len(fake), max_subset_size)
  t = 0.0
  for _ in range(num_subsets):
    x = fake[rng.choice(len(fake), m, replace=False)]
    y = real[rng.choice(len(real), m, replace=False)]
    a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
    b = (x @ y.T / d + 1) ** 3
    t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
  return float(t / num_subsets / m)


class FidKid:
  """FID/KID of a generator against a fixed set of real images (features cached)."""

  def __init__(self, inception_path: str, real_images: np.ndarray, *, batch_size: int = 250,
               resize: int = 299, kid_subset: int = 1000):
    self.features = InceptionFeatures(inception_path, batch_size=batch_size, resize=resize)
    self.real = self.features(real_images)
    self.real_stats = feature_stats(self.real)
    self.kid_subset = kid_subset

  def __call__(self, sample: Callable[[int, int], np.ndarray], num_images: int) -> dict:
    """`sample(start, count) -> uint8 images`; returns {'fid', 'kid'} on `num_images`."""
    feats, done = [], 0
    while done < num_images:
      count = min(self.features.batch_size, num_images - done)
      feats.append(self.features(sample(done, count)))
      done += count
    fake = np.concatenate(feats)
    mu, sigma = feature_stats(fake)
    return {"fid": frechet_distance(*self.real_stats, mu, sigma),
            "kid": kernel_inception_distance(self.real, fake,
                                             max_subset_size=self.kid_subset)}


def convert(src: str, dst: str) -> None:
  """Writes the arrays of a `.pth` state dict to `.npz` (keys unchanged)."""
  sd: dict[str, Any] = _read_state_dict(src)
  np.savez(dst, **{k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")})
