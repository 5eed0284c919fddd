"""Dataset specs → `Dataset(images uint8 [N, 32, 32, 3], labels int64 [N] | None)`.

A spec is one string, as configs and command lines carry it:

  tfds:<name>:<split>     a TFDS split, e.g. `tfds:cifar10:test`, `tfds:svhn_cropped:test`,
                          `tfds:celeb_a:test`, `tfds:cifar10:train[:5000]` (see tfds_source)
  npz:<path>              a NumPy archive with `images` ([N, H, W, 3] uint8, or floats in
                          [0, 1]) and optionally `labels` (int [N]) and `coarse_labels`
  folder:<path>           an image folder: one sub-folder per class, or flat (labels None)
  interp:<spec>           the "Interp" OOD set: image i is the rounded mean of images
                          perm[i] and perm[i+1 mod N] of <spec> under a seeded permutation,
                          so every image is blended with a different one (N images, no labels)

Options follow as `:key` or `:key=value` (order free, after the spec):
  :coarse                 labels from `coarse_labels` (npz) / `coarse_label` (tfds cifar100)
  :limit=N                keep only the first N images (cheap smoke runs)
A path may itself contain `:`; only trailing tokens that are exactly an option are read as
options. Spec strings contain no commas, so a config can list several separated by commas
(`config.data.ood`); `parse_spec_list` splits such a list.

LSUN, used by the paper for OOD, has no TFDS split at 32×32: download the resized test set
(e.g. ODIN's `LSUN_resize`) and pass `folder:/path/to/LSUN_resize`.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from palm_jax.data.preprocess import resize_images, to_uint8_rgb
from palm_jax.runtime.errors import UserError, require

KINDS = ("tfds", "npz", "folder", "interp")
_OPTION = re.compile(r"^(coarse|limit=\d+)$")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A parsed spec: `kind` in KINDS; `target` the TFDS name / path / inner spec string."""
  kind: str
  target: str
  split: str | None = None
  coarse: bool = False
  limit: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """One split in memory.

  images: uint8 `[N, S, S, 3]` (S = 32 unless another image size was asked for).
  labels: int64 `[N]` class ids, or None (unlabelled sets: flat folders, interp, celeb_a).
  num_classes: number of classes (from TFDS metadata, the class folders, or max label + 1).
  name: a short human name (`cifar10:test`, the npz file's stem, the folder's name, `interp`).
  spec: the spec string it was loaded from.
  class_names: class names where the source knows them, else ().
  """
  images: np.ndarray
  labels: np.ndarray | None
  num_classes: int | None
  name: str
  spec: str
  class_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return int(self.images.shape[0])


def _split_tokens(text: str) -> list[str]:
  """Splits on ':' outside square brackets (TFDS splits such as `train[:10%]` keep theirs)."""
  tokens, depth, current = [], 0, []
  for ch in text:
    depth += {"[": 1, "]": -1}.get(ch, 0)
    if ch == ":" and depth == 0:
      tokens.append("".join(current))
      current = []
    else:
      current.append(ch)
  tokens.append("".join(current))
  return tokens


def parse_spec(spec: str) -> DatasetSpec:
  """Parses one spec string (see the module doc); raises UserError on a malformed one."""
  require(isinstance(spec, str) and ":" in spec and "," not in spec,
          f"dataset spec {spec!r} is malformed; write one of tfds:<name>:<split>, "
          "npz:/path/file.npz, folder:/path or interp:<spec>.")
  kind, rest = spec.split(":", 1)
  require(kind in KINDS,
          f"dataset spec {spec!r} starts with unknown kind {kind!r}; use one of "
          f"{', '.join(k + ':' for k in KINDS)}.")
  if kind == "interp":
    inner = parse_spec(rest)  # Validates the inner spec now, not halfway through a job.
    require(inner.kind != "interp", f"dataset spec {spec!r} nests interp:; use it once.")
    return DatasetSpec("interp", rest)
  tokens = _split_tokens(rest)
  options = []
  while len(tokens) > 1 and _OPTION.match(tokens[-1]):
    options.append(tokens.pop())
  coarse = "coarse" in options
  limits = [int(o.split("=")[1]) for o in options if o.startswith("limit=")]
  limit = limits[0] if limits else None
  require(limit is None or limit > 0, f"dataset spec {spec!r} has limit=0; use limit=N, N>0.")
  if kind == "tfds":
    require(len(tokens) == 2 and all(tokens),
            f"dataset spec {spec!r} is malformed; write tfds:<name>:<split>, e.g. "
            "tfds:cifar10:test.")
    return DatasetSpec("tfds", tokens[0], tokens[1], coarse, limit)
  path = ":".join(tokens)
  require(bool(path), f"dataset spec {spec!r} has no path; write {kind}:/path/to/data.")
  return DatasetSpec(kind, os.path.expanduser(path), None, coarse, limit)


def parse_spec_list(specs: str) -> list[str]:
  """`"npz:/a.npz, tfds:svhn_cropped:test"` → `["npz:/a.npz", "tfds:svhn_cropped:test"]`."""
  out = [s.strip() for s in (specs or "").split(",") if s.strip()]
  for s in out:
    parse_spec(s)
  return out


def load_npz(path: str, *, coarse: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads `images` and `labels` (or `coarse_labels`) from an .npz; labels may be absent."""
  require(os.path.isfile(path),
          f"npz file {path!r} does not exist; pass npz:/path/to/file.npz (e.g. "
          "npz:../shared/data/cifar_subset/cifar10_test_partial.npz).")
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"cannot read {path!r} as an .npz archive ({type(e).__name__}); pass a "
                    "file written by numpy.savez with keys images and labels.") from e
  with archive:
    keys = sorted(archive.files)
    require("images" in keys,
            f"npz file {path!r} has no 'images' array (it has {keys}); save the images under "
            "the key 'images' ([N, H, W, 3] uint8).")
    label_key = "coarse_labels" if coarse else "labels"
    require(not coarse or label_key in keys,
            f"npz file {path!r} has no 'coarse_labels' (it has {keys}); drop the :coarse "
            "option or add that array.")
    images = archive["images"]
    labels = archive[label_key] if label_key in keys else None
  if labels is not None:
    labels = np.asarray(labels)
    require(labels.ndim == 1 and labels.shape[0] == images.shape[0]
            and np.issubdtype(labels.dtype, np.integer),
            f"npz file {path!r} has '{label_key}' of shape {labels.shape} and dtype "
            f"{labels.dtype} for {images.shape[0]} images; save one integer label per image.")
    require(labels.size == 0 or labels.min() >= 0,
            f"npz file {path!r} has negative '{label_key}'; class ids must be 0..C-1.")
    labels = labels.astype(np.int64)
  return images, labels


def make_interp(images: np.ndarray, seed: int) -> np.ndarray:
  """The Interp OOD set: `out[i] = round((x[p[i]] + x[p[(i+1) % N]]) / 2)`, p a seeded shuffle.

  images: uint8 `[N, H, W, 3]` with N >= 2 → uint8 `[N, H, W, 3]`; each image is averaged
  with a different one (so none equals an input unless two inputs were equal).
  """
  n = images.shape[0]
  require(n >= 2, f"interp: needs at least 2 images to average pairs, got {n}; use a "
                  "larger in-distribution set.")
  perm = np.random.default_rng(seed).permutation(n)
  a = images[perm].astype(np.uint16)
  b = images[np.roll(perm, -1)].astype(np.uint16)
  return ((a + b + 1) // 2).astype(np.uint8)


def _short_name(parsed: DatasetSpec) -> str:
  if parsed.kind == "tfds":
    return f"{parsed.target}:{parsed.split}"
  if parsed.kind == "npz":
    return os.path.splitext(os.path.basename(parsed.target))[0]
  return os.path.basename(os.path.normpath(parsed.target))


def load_dataset(spec: str, *, image_size: int | None = 32, limit: int | None = None,
                 seed: int = 0, data_dir: str | None = None, download: bool = True
                 ) -> Dataset:
  """Loads a dataset spec (module doc) into memory as a `Dataset`.

  Args:
    spec: e.g. `tfds:cifar10:test`, `npz:/path/file.npz`, `folder:/path`, `interp:<spec>`.
    image_size: side S of the returned `[N, S, S, 3]` images (None keeps the source size;
      a folder of mixed sizes then raises).
    limit: keep only the first `limit` images (a `:limit=N` option in the spec wins).
    seed: shuffles the pairs of `interp:`.
    data_dir: TFDS data directory (None: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    download: let TFDS prepare a missing dataset (needs TensorFlow and internet).
  """
  parsed = parse_spec(spec)
  if parsed.kind == "interp":
    inner = load_dataset(parsed.target, image_size=image_size, limit=limit, seed=seed,
                         data_dir=data_dir, download=download)
    return Dataset(make_interp(inner.images, seed), None, None, "interp", spec)
  limit = parsed.limit if parsed.limit is not None else limit
  num_classes, names = None, ()
  if parsed.kind == "tfds":
    from palm_jax.data.tfds_source import load_tfds  # pylint: disable=g-import-not-at-top
    images, labels, num_classes, names = load_tfds(
        parsed.target, parsed.split, image_size=image_size, limit=limit, data_dir=data_dir,
        download=download, coarse=parsed.coarse)
  elif parsed.kind == "npz":
    images, labels = load_npz(parsed.target, coarse=parsed.coarse)
    if limit is not None:
      images = images[:limit]
      labels = labels[:limit] if labels is not None else None
    images = resize_images(to_uint8_rgb(images, source=spec), image_size)
  else:
    from palm_jax.data.folders import load_folder  # pylint: disable=g-import-not-at-top
    require(not parsed.coarse, f"dataset spec {spec!r}: :coarse applies to npz: and tfds: "
                               "specs only; drop it.")
    images, labels, names = load_folder(parsed.target, image_size=image_size, limit=limit)
    num_classes = len(names) or None
  if labels is not None and num_classes is None:
    num_classes = int(labels.max()) + 1 if labels.size else 0
  require(len(images) > 0, f"dataset {spec!r} is empty; check the path, split or limit.")
  return Dataset(images, labels, num_classes, _short_name(parsed), spec, names)
