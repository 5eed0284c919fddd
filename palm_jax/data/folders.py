"""Image folders: `folder:/path` with one sub-folder per class, or flat (unlabelled OOD sets).

Layouts:
  /path/<class_a>/*.png, /path/<class_b>/*.jpg, ...   labelled: class ids follow the sorted
                                                     sub-folder names
  /path/*.png                                        flat: labels are None (e.g. LSUN's
                                                     resized test set for OOD detection)

Files are read with PIL in sorted order (so a `limit` is deterministic); any format PIL
opens is accepted (png, jpg, jpeg, bmp, gif, webp, tif); other files are ignored. Images
are converted to RGB (grayscale repeated, alpha dropped) and centre-cropped and resized to
`image_size` as described in `palm_jax.data.preprocess`.
"""
from __future__ import annotations

import os

import numpy as np

from palm_jax.data.preprocess import resize_image, to_uint8_rgb
from palm_jax.runtime.errors import UserError, require

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _image_files(directory: str) -> list[str]:
  return sorted(
      os.path.join(directory, f) for f in os.listdir(directory)
      if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(directory, f)))


def _read_image(path: str, image_size: int | None) -> np.ndarray:
  """One file → uint8 `[size, size, 3]` (or its native size when `image_size` is None)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as img:
      rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
  except OSError as e:
    raise UserError(f"cannot read image {path} ({e}); delete or replace that file.") from e
  rgb = to_uint8_rgb(rgb[None], source=path)[0]
  return rgb if image_size is None else resize_image(rgb, image_size)


def find_folder_images(root: str) -> tuple[list[str], list[int] | None, tuple[str, ...]]:
  """Lists `(files, labels or None, class_names)` of an image folder (see module doc)."""
  require(os.path.isdir(root),
          f"image folder {root!r} does not exist; pass folder:/path/to/a/directory of "
          "images (one sub-folder per class, or images directly inside).")
  classes = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
  per_class = [(c, _image_files(os.path.join(root, c))) for c in classes]
  per_class = [(c, files) for c, files in per_class if files]
  if per_class:
    names = tuple(c for c, _ in per_class)
    files = [f for _, fs in per_class for f in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return files, labels, names
  files = _image_files(root)
  require(bool(files),
          f"image folder {root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}) directly "
          "or in sub-folders; point folder: at the directory that contains them.")
  return files, None, ()


def load_folder(root: str, *, image_size: int | None = 32, limit: int | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
  """Reads an image folder → `(uint8 [N, S, S, 3], int64 [N] or None, class_names)`.

  With `limit`, only the first `limit` files in sorted order (over all classes) are read.
  """
  files, labels, names = find_folder_images(root)
  if limit is not None:
    files = files[:limit]
    labels = labels[:limit] if labels is not None else None
  images = [_read_image(f, image_size) for f in files]
  if image_size is None:
    shapes = {im.shape for im in images}
    require(len(shapes) <= 1,
            f"image folder {root!r} mixes image sizes {sorted(shapes)[:3]}; set an image "
            "size (config.data.image_size) so they are resized to one.")
  stacked = (np.stack(images) if images
             else np.zeros((0, image_size or 32, image_size or 32, 3), np.uint8))
  return stacked, (np.asarray(labels, np.int64) if labels is not None else None), names
