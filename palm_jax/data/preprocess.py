"""Image arrays from any loader → `uint8 [N, size, size, 3]`, the one layout evaluation reads.

Every loader (TFDS, `.npz`, image folders) hands its images here, so the conventions are
the same whatever the source:
  * grayscale `[N, H, W]` or `[N, H, W, 1]` is repeated to RGB, RGBA drops alpha;
  * channels-first `[N, 3, H, W]` is transposed to channels-last;
  * floats must lie in [0, 1] and are mapped to uint8 by `round(255 * x)`;
  * a non-square image is centre-cropped to a square, then resized with PIL's antialiased
    bilinear filter to `size × size` (CelebA's 218×178 faces keep their aspect ratio);
    images already at the target size are returned untouched (no resampling blur).
"""
from __future__ import annotations

import numpy as np

from palm_jax.runtime.errors import require


def to_uint8_rgb(images: np.ndarray, *, source: str) -> np.ndarray:
  """Layout and dtype: `[N, H, W]` / `[N, H, W, C]` / `[N, C, H, W]` → uint8 `[N, H, W, 3]`.

  `source` names the data in error messages (a spec or a file).
  """
  images = np.asarray(images)
  require(images.ndim in (3, 4) and images.shape[0] >= 0,
          f"{source} holds images of shape {images.shape}; expected [N, H, W, 3] (or "
          "[N, H, W] grayscale); re-save them in that layout.")
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3, 4):
    images = np.transpose(images, (0, 2, 3, 1))  # NCHW → NHWC.
  require(images.shape[-1] in (1, 3, 4),
          f"{source} holds images of shape {images.shape} with no channel axis of size 1, "
          "3 or 4; re-save them as [N, H, W, 3].")
  if images.dtype != np.uint8:
    if np.issubdtype(images.dtype, np.floating):
      lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 1.0)
      require(lo >= 0.0 and hi <= 1.0,
              f"{source} holds float images in [{lo:.3g}, {hi:.3g}]; floats must lie in "
              "[0, 1] (or save uint8 images in [0, 255]).")
      images = np.round(images * 255.0).astype(np.uint8)
    else:
      lo, hi = (int(images.min()), int(images.max())) if images.size else (0, 0)
      require(lo >= 0 and hi <= 255,
              f"{source} holds {images.dtype} images in [{lo}, {hi}]; integer images must "
              "lie in [0, 255].")
      images = images.astype(np.uint8)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  elif images.shape[-1] == 4:
    images = images[..., :3]
  return np.ascontiguousarray(images)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """One uint8 `[H, W, 3]` image → centre-cropped, resized uint8 `[size, size, 3]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  if (h, w) == (size, size):
    return image
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = image[top:top + side, left:left + side]
  pil = Image.fromarray(square).resize((size, size), resample=Image.BILINEAR)
  return np.asarray(pil, dtype=np.uint8)


def resize_images(images: np.ndarray, size: int | None) -> np.ndarray:
  """uint8 `[N, H, W, 3]` → uint8 `[N, size, size, 3]` (no-op when `size` is None or equal)."""
  if size is None or images.shape[1:3] == (size, size):
    return images
  out = np.empty((images.shape[0], size, size, 3), np.uint8)
  for i, image in enumerate(images):
    out[i] = resize_image(image, size)
  return out
