"""FID/KID: the Flax FID Inception against a PyTorch re-statement of pytorch-fid's network
(tiny widths, random weights), the formulas against SciPy / NumPy references."""
import numpy as np
import pytest

from palm_jax.evaluation import fid as metrics_fid
from palm_jax.runtime.errors import UserError

SCALE = 1 / 16


def _torch_inception(scale):
  """pytorch-fid's FID InceptionV3 (torchvision layout + FIDInception A/C/E_1/E_2) in
  plain torch, every width multiplied by `scale`; returns (module, forward(x01))."""
  torch = pytest.importorskip("torch")
  nn, F = torch.nn, torch.nn.functional
  s = lambda n: max(1, int(round(n * scale)))  # noqa: E731

  class Basic(nn.Module):
    def __init__(self, cin, cout, **kw):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
      self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  class A(nn.Module):
    def __init__(self, cin, pool):
      super().__init__()
      self.branch1x1 = Basic(cin, s(64), kernel_size=1)
      self.branch5x5_1 = Basic(cin, s(48), kernel_size=1)
      self.branch5x5_2 = Basic(s(48), s(64), kernel_size=5, padding=2)
      self.branch3x3dbl_1 = Basic(cin, s(64), kernel_size=1)
      self.branch3x3dbl_2 = Basic(s(64), s(96), kernel_size=3, padding=1)
      self.branch3x3dbl_3 = Basic(s(96), s(96), kernel_size=3, padding=1)
      self.branch_pool = Basic(cin, s(pool), kernel_size=1)
      self.out = s(64) * 2 + s(96) + s(pool)

    def forward(self, x):
      p = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
      return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                        self.branch_pool(p)], 1)

  class B(nn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = Basic(cin, s(384), kernel_size=3, stride=2)
      self.branch3x3dbl_1 = Basic(cin, s(64), kernel_size=1)
      self.branch3x3dbl_2 = Basic(s(64), s(96), kernel_size=3, padding=1)
      self.branch3x3dbl_3 = Basic(s(96), s(96), kernel_size=3, stride=2)
      self.out = s(384) + s(96) + cin

    def forward(self, x):
      return torch.cat([self.branch3x3(x),
                        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                        F.max_pool2d(x, 3, 2)], 1)

  class C(nn.Module):
    def __init__(self, cin, c7):
      super().__init__()
      c7 = s(c7)
      self.branch1x1 = Basic(cin, s(192), kernel_size=1)
      self.branch7x7_1 = Basic(cin, c7, kernel_size=1)
      self.branch7x7_2 = Basic(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7_3 = Basic(c7, s(192), kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_1 = Basic(cin, c7, kernel_size=1)
      self.branch7x7dbl_2 = Basic(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_3 = Basic(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7dbl_4 = Basic(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_5 = Basic(c7, s(192), kernel_size=(1, 7), padding=(0, 3))
      self.branch_pool = Basic(cin, s(192), kernel_size=1)
      self.out = 4 * s(192)

    def forward(self, x):
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = self.branch7x7dbl_1(x)
      for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                self.branch7x7dbl_5):
        bd = m(bd)
      p = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
      return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(p)], 1)

  class D(nn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1 = Basic(cin, s(192), kernel_size=1)
      self.branch3x3_2 = Basic(s(192), s(320), kernel_size=3, stride=2)
      self.branch7x7x3_1 = Basic(cin, s(192), kernel_size=1)
      self.branch7x7x3_2 = Basic(s(192), s(192), kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7x3_3 = Basic(s(192), s(192), kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7x3_4 = Basic(s(192), s(192), kernel_size=3, stride=2)
      self.out = s(320) + s(192) + cin

    def forward(self, x):
      b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
      return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)

  class E(nn.Module):
    def __init__(self, cin, last):
      super().__init__()
      self.last = last
      self.branch1x1 = Basic(cin, s(320), kernel_size=1)
      self.branch3x3_1 = Basic(cin, s(384), kernel_size=1)
      self.branch3x3_2a = Basic(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3_2b = Basic(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
      self.branch3x3dbl_1 = Basic(cin, s(448), kernel_size=1)
      self.branch3x3dbl_2 = Basic(s(448), s(384), kernel_size=3, padding=1)
      self.branch3x3dbl_3a = Basic(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3dbl_3b = Basic(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
      self.branch_pool = Basic(cin, s(192), kernel_size=1)
      self.out = s(320) + 4 * s(384) + s(192)

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
      p = (F.max_pool2d(x, 3, 1, 1) if self.last
           else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
      return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(p)], 1)

  net = nn.Module()
  net.Conv2d_1a_3x3 = Basic(3, s(32), kernel_size=3, stride=2)
  net.Conv2d_2a_3x3 = Basic(s(32), s(32), kernel_size=3)
  net.Conv2d_2b_3x3 = Basic(s(32), s(64), kernel_size=3, padding=1)
  net.Conv2d_3b_1x1 = Basic(s(64), s(80), kernel_size=1)
  net.Conv2d_4a_3x3 = Basic(s(80), s(192), kernel_size=3)
  blocks, c = [], s(192)
  for name, make in (("Mixed_5b", lambda c: A(c, 32)), ("Mixed_5c", lambda c: A(c, 64)),
                     ("Mixed_5d", lambda c: A(c, 64)), ("Mixed_6a", B),
                     ("Mixed_6b", lambda c: C(c, 128)), ("Mixed_6c", lambda c: C(c, 160)),
                     ("Mixed_6d", lambda c: C(c, 160)), ("Mixed_6e", lambda c: C(c, 192)),
                     ("Mixed_7a", D), ("Mixed_7b", lambda c: E(c, False)),
                     ("Mixed_7c", lambda c: E(c, True))):
    block = make(c)
    setattr(net, name, block)
    blocks.append(block)
    c = block.out
  net.fc = nn.Linear(c, 1008)
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, t in net.state_dict().items():
      if name.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
      elif t.is_floating_point():
        # He-scaled convolutions and BN near identity keep the random features alive.
        gain = np.sqrt(2.0 / t[0].numel()) if t.ndim > 1 else 0.1
        t.copy_(torch.randn(t.shape, generator=gen) * gain + (name.endswith("bn.weight")))
  net.eval()

  def forward(x01, size):
    with torch.no_grad():
      x = F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False)
      x = 2 * x - 1
      x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
      x = F.max_pool2d(x, 3, 2)
      x = F.max_pool2d(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)), 3, 2)
      for block in blocks:
        x = block(x)
      return x.mean(dim=(2, 3)).numpy()
  return net, forward


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
  torch = pytest.importorskip("torch")
  net, forward = _torch_inception(SCALE)
  d = tmp_path_factory.mktemp("inception")
  pth = str(d / "pt_inception-tiny.pth")
  torch.save(net.state_dict(), pth)
  npz = str(d / "pt_inception-tiny.npz")
  metrics_fid.convert(pth, npz)
  return pth, npz, forward


def test_inception_matches_torch_reference(tiny_weights):
  torch = pytest.importorskip("torch")
  pth, npz, forward = tiny_weights
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  ref = forward(torch.tensor(images.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32), 75)
  for path in (pth, npz):
    feats = metrics_fid.InceptionFeatures(path, batch_size=8, resize=75)(images)
    assert feats.shape == ref.shape == (4, 128)     # 2048 / 16
    assert feats.std(0).mean() > 1e-3      # the random features do vary with the image
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5)


def test_missing_or_wrong_weights_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    metrics_fid.InceptionFeatures(str(tmp_path / "nope.pth"))
  bad = tmp_path / "bad.npz"
  np.savez(bad, foo=np.zeros(3))
  with pytest.raises(UserError, match="Conv2d_1a_3x3"):
    metrics_fid.InceptionFeatures(str(bad))


def test_frechet_distance_matches_scipy_reference():
  linalg = pytest.importorskip("scipy.linalg")
  rng = np.random.default_rng(1)
  a = rng.normal(size=(300, 16))
  b = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
  mu1, s1 = metrics_fid.feature_stats(a)
  mu2, s2 = metrics_fid.feature_stats(b)
  np.testing.assert_allclose(s1, np.cov(a, rowvar=False))
  covmean = linalg.sqrtm(s1 @ s2).real            # pytorch-fid's formula
  ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
  np.testing.assert_allclose(metrics_fid.frechet_distance(mu1, s1, mu2, s2), ref, rtol=1e-6)
  assert abs(metrics_fid.frechet_distance(mu1, s1, mu1, s1)) < 1e-6


def test_kid_matches_numpy_unbiased_mmd():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(40, 8))
  fake = rng.normal(size=(30, 8)) + 0.5
  # One subset of everything (m = 30 of each, drawn without replacement = a permutation
  # for fake): the unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, written out term by term.
  kid = metrics_fid.kernel_inception_distance(real, fake, num_subsets=1, seed=3)
  rng2 = np.random.default_rng(3)
  x = fake[rng2.choice(30, 30, replace=False)]
  y = real[rng2.choice(40, 30, replace=False)]
  k = lambda u, v: (u @ v.T / 8 + 1) ** 3  # noqa: E731
  m = 30
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
         - 2 * kxy.mean())
  np.testing.assert_allclose(kid, mmd, rtol=1e-10)


def test_fid_kid_end_to_end(tiny_weights):
  _, npz, _ = tiny_weights
  rng = np.random.default_rng(4)
  reals = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
  metric = metrics_fid.FidKid(npz, reals, batch_size=8, resize=75, kid_subset=24)
  same = metric(lambda start, count: reals[start:start + count], 24)
  other = metric(lambda start, count: reals[start:start + count] // 4, 24)
  # Identical sets: FID 0; the unbiased KID of a set against itself is only O(1/m) away.
  assert abs(same["fid"]) < 1e-6
  assert other["fid"] > 1e-3 and other["kid"] > 10 * abs(same["kid"])
