"""TFDS splits as NumPy arrays, read without TensorFlow when the data is prepared as ArrayRecord.

`tensorflow_datasets` is imported only when a `tfds:` spec is loaded. The order of attempts:

1. `tfds.data_source(name, split=..., download=False)`: random access to data prepared in
   the ArrayRecord (or Parquet) format; decoding needs no TensorFlow.
2. The data is not prepared and `download=True`: `builder.download_and_prepare(
   file_format="array_record")`. TFDS's builders for cifar10, cifar100, svhn_cropped and
   celeb_a use TensorFlow while preparing, so this needs `pip install tensorflow` and
   internet access once; afterwards step 1 reads the files without TensorFlow.
3. The data is prepared only as TFRecord (TFDS's default format): read with
   `builder.as_dataset` when TensorFlow is installed.

Anything else raises one `UserError` saying what to install, or where prepared data or a
manual archive must go (`data_dir`, default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`;
manual downloads in `<data_dir>/downloads/manual/`). To prepare once on a machine with
internet:  pip install tensorflow tensorflow-datasets importlib_resources
           tfds build cifar10 --file_format=array_record --data_dir=DIR
Images are converted to uint8 RGB and resized to `image_size` chunk by chunk, so CelebA's
full-resolution images are never held in memory all at once.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Iterator

import numpy as np
from absl import logging

from palm_jax.data.preprocess import resize_images, to_uint8_rgb
from palm_jax.runtime.errors import UserError

_CHUNK = 1024
# TFDS feature holding the image / class of the datasets users name in configs.
_IMAGE_KEYS = ("image", "img")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("tfds: dataset specs need TensorFlow Datasets; run `pip install "
                    "tensorflow-datasets` (or use an npz: or folder: spec).") from e
  return tfds


def _has_tensorflow() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _prepare_hint(name: str, data_dir: str) -> str:
  return (f"prepare it once where there is internet with `pip install tensorflow "
          f"tensorflow-datasets importlib_resources && tfds build {name} "
          f"--file_format=array_record --data_dir={data_dir}` and pass "
          f"--config.data.tfds_data_dir={data_dir} (manual archives go in "
          f"{data_dir}/downloads/manual/)")


def _read_data_source(source: Any, limit: int | None) -> Iterator[list[dict]]:
  """Yields lists of decoded examples from a TFDS random-access source, chunk by chunk."""
  n = len(source) if limit is None else min(limit, len(source))
  for start in range(0, n, _CHUNK):
    keys = list(range(start, min(start + _CHUNK, n)))
    try:
      yield list(source.__getitems__(keys))
    except TypeError:  # Some sources (tfds.testing.mock_data) read one record at a time.
      yield [source[k] for k in keys]


def _read_tf_dataset(builder: Any, split: str, limit: int | None) -> Iterator[list[dict]]:
  """Yields lists of examples from TFRecord files through TensorFlow (step 3)."""
  tfds = _import_tfds()
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if limit is not None:
    ds = ds.take(limit)
  chunk = []
  for example in tfds.as_numpy(ds):
    chunk.append(example)
    if len(chunk) == _CHUNK:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _open(tfds: Any, name: str, split: str, data_dir: str | None, download: bool):
  """Returns `(builder, iterator factory)` for the split, trying steps 1–3 of the module doc."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(f"tfds:{name} is not a TFDS dataset; use e.g. tfds:cifar10:test, "
                    "tfds:cifar100:test, tfds:svhn_cropped:test or tfds:celeb_a:test.") from e
  where = str(builder.data_dir)
  root = str(getattr(builder, "_data_dir_root", None) or data_dir or "~/tensorflow_datasets")
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return builder, lambda limit: _read_data_source(source, limit)
  except (ValueError, KeyError) as e:
    if "split" in str(e).lower() and builder.is_prepared():
      splits = sorted(builder.info.splits.keys())
      raise UserError(f"tfds:{name} has no split {split!r}; use one of {splits}.") from e
    first_error = e
  except Exception as e:  # pylint: disable=broad-except
    first_error = e
  if builder.is_prepared():
    if _has_tensorflow():
      return builder, lambda limit: _read_tf_dataset(builder, split, limit)
    raise UserError(
        f"tfds:{name} is prepared at {where} as TFRecord, which needs TensorFlow to read; "
        f"`pip install tensorflow`, or rebuild it for TensorFlow-free reading with "
        f"`tfds build {name} --file_format=array_record --data_dir={root}`.")
  if not download:
    raise UserError(f"tfds:{name} is not prepared at {where} and downloads are off "
                    f"(config.data.download=False); {_prepare_hint(name, root)}.")
  if not _has_tensorflow():
    raise UserError(f"tfds:{name} is not prepared at {where} and preparing it needs "
                    f"TensorFlow; `pip install tensorflow importlib_resources` and rerun with "
                    f"internet access, or {_prepare_hint(name, root)}.")
  logging.info("Preparing tfds:%s in %s (ArrayRecord) after: %s", name, where, first_error)
  try:
    builder.download_and_prepare(file_format="array_record")
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f"preparing tfds:{name} in {where} failed ({msg}); "
                    f"{_prepare_hint(name, root)}.") from e
  return builder, lambda limit: _read_data_source(source, limit)


def load_tfds(name: str, split: str, *, image_size: int | None = 32, limit: int | None = None,
              data_dir: str | None = None, download: bool = True, coarse: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None, int | None, tuple[str, ...]]:
  """Reads one TFDS split → `(uint8 [N, S, S, 3], int64 [N] or None, num_classes, names)`.

  Labels come from the `label` feature (`coarse_label` with `coarse=True`, CIFAR-100's 20
  superclasses); datasets without one (celeb_a) give `labels=None`. `limit` reads only the
  first `limit` examples of the split.
  """
  tfds = _import_tfds()
  builder, read = _open(tfds, name, split, data_dir, download)
  features = builder.info.features
  label_key = "coarse_label" if coarse else "label"
  if coarse and label_key not in features:
    raise UserError(f"tfds:{name} has no coarse_label feature; drop the :coarse option "
                    "(only cifar100 has superclass labels).")
  image_key = next((k for k in _IMAGE_KEYS if k in features), None)
  if image_key is None:
    raise UserError(f"tfds:{name} has no image feature (it has {sorted(features.keys())}); "
                    "use an image dataset such as cifar10 or svhn_cropped.")
  has_labels = label_key in features
  images, labels = [], []
  for chunk in read(limit):
    batch = [np.asarray(ex[image_key]) for ex in chunk]
    if image_size is None or len({b.shape for b in batch}) == 1:
      imgs = to_uint8_rgb(np.stack(batch), source=f"tfds:{name}")
      images.append(resize_images(imgs, image_size))
    else:  # Differently sized images: convert and resize one by one.
      images.append(np.concatenate([resize_images(to_uint8_rgb(b[None], source=name),
                                                  image_size) for b in batch]))
    if has_labels:
      labels.append(np.asarray([ex[label_key] for ex in chunk], np.int64))
  size = image_size or 32
  images = np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8)
  num_classes, names = None, ()
  if has_labels:
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
    feature = features[label_key]
    num_classes = getattr(feature, "num_classes", None)
    names = tuple(getattr(feature, "names", None) or ())
  return images, (labels if has_labels else None), num_classes, names
