"""Dataset specs and loaders: npz, image folders, interp, TFDS (mocked), and their errors."""
import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

from palm_jax.data import load_dataset, make_interp, parse_spec, parse_spec_list
from palm_jax.data.preprocess import resize_image, to_uint8_rgb
from palm_jax.runtime.errors import UserError


def _save_npz(path, **arrays):
  np.savez(path, **arrays)
  return f"npz:{path}"


def test_parse_spec_forms():
  s = parse_spec("tfds:cifar10:train[:10%]:limit=5")
  assert (s.kind, s.target, s.split, s.limit, s.coarse) == ("tfds", "cifar10", "train[:10%]",
                                                            5, False)
  s = parse_spec("npz:/data/a:b.npz:coarse")  # A colon inside a path stays in the path.
  assert (s.kind, s.target, s.coarse) == ("npz", "/data/a:b.npz", True)
  s = parse_spec("interp:npz:/x.npz:limit=4")
  assert (s.kind, s.target) == ("interp", "npz:/x.npz:limit=4")
  assert parse_spec_list(" npz:/a.npz, folder:/b ,") == ["npz:/a.npz", "folder:/b"]


@pytest.mark.parametrize("spec, words", [
    ("cifar10", "malformed"), ("foo:bar", "unknown kind"), ("tfds:cifar10", "tfds:<name>"),
    ("npz:", "no path"), ("interp:interp:npz:/a.npz", "nests"), ("npz:/a.npz:limit=0", "limit"),
    ("npz:/a.npz,npz:/b.npz", "malformed")])
def test_bad_specs_raise_one_sentence(spec, words):
  with pytest.raises(UserError, match=words):
    parse_spec(spec)


def test_npz_loader_labels_coarse_limit_and_conversions(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  spec = _save_npz(tmp_path / "a.npz", images=images, labels=np.arange(6) % 3,
                   coarse_labels=np.arange(6) % 2)
  ds = load_dataset(spec)
  assert ds.images.dtype == np.uint8 and ds.images.shape == (6, 32, 32, 3)
  np.testing.assert_array_equal(ds.images, images)
  assert ds.labels.dtype == np.int64 and list(ds.labels) == [0, 1, 2, 0, 1, 2]
  assert ds.num_classes == 3 and ds.name == "a" and len(ds) == 6
  assert list(load_dataset(spec + ":coarse").labels) == [0, 1, 0, 1, 0, 1]
  assert len(load_dataset(spec + ":limit=4")) == 4 and len(load_dataset(spec, limit=2)) == 2
  # Floats in [0, 1], grayscale, channels-first and other sizes all become uint8 RGB 32x32.
  gray = _save_npz(tmp_path / "g.npz", images=np.full((2, 48, 64), 0.5, np.float32))
  ds = load_dataset(gray)
  assert ds.labels is None and ds.images.shape == (2, 32, 32, 3)
  assert np.all(ds.images == 128)
  nchw = _save_npz(tmp_path / "c.npz", images=np.transpose(images, (0, 3, 1, 2)))
  np.testing.assert_array_equal(load_dataset(nchw).images, images)
  assert load_dataset(spec, image_size=16).images.shape == (6, 16, 16, 3)


def test_npz_errors(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    load_dataset(f"npz:{tmp_path}/missing.npz")
  with pytest.raises(UserError, match="no 'images'"):
    load_dataset(_save_npz(tmp_path / "k.npz", x=np.zeros((2, 4, 4, 3), np.uint8)))
  ok = _save_npz(tmp_path / "ok.npz", images=np.zeros((2, 4, 4, 3), np.uint8),
                 labels=np.zeros(2, np.int64))
  with pytest.raises(UserError, match="coarse_labels"):
    load_dataset(ok + ":coarse")
  with pytest.raises(UserError, match="one integer label per image"):
    load_dataset(_save_npz(tmp_path / "l.npz", images=np.zeros((2, 4, 4, 3), np.uint8),
                           labels=np.zeros(3)))
  with pytest.raises(UserError, match=r"floats must lie in \[0, 1\]"):
    load_dataset(_save_npz(tmp_path / "f.npz", images=-np.ones((2, 4, 4, 3), np.float32)))
  (tmp_path / "bad.npz").write_text("not an archive")
  with pytest.raises(UserError, match="cannot read"):
    load_dataset(f"npz:{tmp_path}/bad.npz")


def _write_image(path, array):
  Image.fromarray(array).save(path)


def test_folder_loader_class_folders_and_flat(tmp_path):
  root = tmp_path / "classes"
  for c, colour in (("cat", 10), ("dog", 200)):
    (root / c).mkdir(parents=True)
    _write_image(root / c / "0.png", np.full((40, 30, 3), colour, np.uint8))
    _write_image(root / c / "1.jpg", np.full((32, 32, 3), colour, np.uint8))
    _write_image(root / c / "2.png", np.full((64, 64), colour, np.uint8))  # Grayscale.
  (root / "dog" / "notes.txt").write_text("ignored")
  ds = load_dataset(f"folder:{root}")
  assert ds.images.shape == (6, 32, 32, 3) and ds.images.dtype == np.uint8
  assert list(ds.labels) == [0, 0, 0, 1, 1, 1] and ds.class_names == ("cat", "dog")
  assert ds.num_classes == 2 and ds.name == "classes"
  assert abs(int(ds.images[0].mean()) - 10) <= 2 and abs(int(ds.images[4].mean()) - 200) <= 2
  assert len(load_dataset(f"folder:{root}:limit=4")) == 4
  flat = tmp_path / "lsun"
  flat.mkdir()
  for i in range(3):
    _write_image(flat / f"{i}.png", np.full((36, 36, 4), 50 * i, np.uint8))  # RGBA.
  ds = load_dataset(f"folder:{flat}")
  assert ds.labels is None and ds.num_classes is None and ds.images.shape == (3, 32, 32, 3)


def test_folder_errors(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    load_dataset(f"folder:{tmp_path}/nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="holds no images"):
    load_dataset(f"folder:{tmp_path}/empty")
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
  with pytest.raises(UserError, match="cannot read image"):
    load_dataset(f"folder:{tmp_path}/broken")


def test_interp_is_the_rounded_mean_of_distinct_pairs(tmp_path):
  n = 9
  images = np.random.default_rng(0).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
  out = make_interp(images, seed=3)
  assert out.dtype == np.uint8 and out.shape == images.shape
  wide = images.astype(int)
  uses = np.zeros(n, int)
  for o in out.astype(int):  # Each output is the rounded mean of exactly one pair i != j.
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
             if np.array_equal((wide[i] + wide[j] + 1) // 2, o)]
    assert len(pairs) == 1
    uses[list(pairs[0])] += 1
  assert (uses == 2).all()  # A shuffled cycle: every image is blended twice.
  np.testing.assert_array_equal(out, make_interp(images, seed=3))
  assert not np.array_equal(out, make_interp(images, seed=4))
  spec = _save_npz(tmp_path / "t.npz", images=images, labels=np.zeros(n, np.int64))
  ds = load_dataset(f"interp:{spec}", seed=3, image_size=None)
  assert ds.labels is None and ds.name == "interp"
  np.testing.assert_array_equal(ds.images, out)
  with pytest.raises(UserError, match="at least 2 images"):
    make_interp(images[:1], seed=0)


def test_preprocess_resize_centre_crops():
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, 10:30] = 255  # The centre square is white, the side bands black.
  out = resize_image(img, 8)
  assert out.shape == (8, 8, 3) and out.min() >= 250
  assert to_uint8_rgb(np.zeros((1, 5, 5, 1), np.uint8), source="x").shape == (1, 5, 5, 3)


def test_tfds_missing_package_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import` now fails.
  with pytest.raises(UserError, match="pip install tensorflow-datasets"):
    load_dataset("tfds:cifar10:test")


def test_tfds_mock_data_without_tensorflow():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5):
    ds = load_dataset("tfds:cifar10:test")
    assert ds.images.shape == (5, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.num_classes == 10
    assert ((ds.labels >= 0) & (ds.labels < 10)).all() and ds.name == "cifar10:test"
    coarse = load_dataset("tfds:cifar100:train:coarse:limit=3")
    assert coarse.num_classes == 20 and len(coarse) == 3
    faces = load_dataset("tfds:celeb_a:test")  # 218x178 → centre-cropped, resized to 32.
    assert faces.images.shape == (5, 32, 32, 3) and faces.labels is None
    with pytest.raises(UserError, match="no coarse_label"):
      load_dataset("tfds:svhn_cropped:test:coarse")
  with pytest.raises(UserError, match="not a TFDS dataset"):
    load_dataset("tfds:no_such_dataset_xyz:test")


def test_tfds_unprepared_data_names_the_fix(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(UserError, match="not prepared.*tfds build cifar10"):
    load_dataset("tfds:cifar10:test", data_dir=str(tmp_path), download=False)
  if importlib.util.find_spec("tensorflow") is None:
    with pytest.raises(UserError, match="needs TensorFlow"):
      load_dataset("tfds:cifar10:test", data_dir=str(tmp_path), download=True)


def test_shared_cifar_subsets(shared_dir):
  root = shared_dir / "data" / "cifar_subset"
  ds = load_dataset(f"npz:{root}/cifar10_test_partial.npz")
  assert ds.images.shape == (1017, 32, 32, 3) and ds.num_classes == 10
  assert set(np.unique(ds.labels)) == set(range(10))
  coarse = load_dataset(f"npz:{root}/cifar100_test_partial.npz:coarse")
  assert len(coarse) == 916 and coarse.labels.max() < 20
