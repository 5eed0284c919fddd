"""Images for people: float [-1, 1] or uint8 batches → grids → PNG files."""
from __future__ import annotations

import os

import numpy as np


def to_uint8(images) -> np.ndarray:
  """Maps float images in [-1, 1] (or uint8, returned as is) to uint8 [0, 255].

  Same rounding as NVIDIA's `(img * 127.5 + 128).clamp(0, 255)`.
  """
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.asarray(images, np.float32) * 127.5 + 128.0, 0, 255).astype(np.uint8)


def make_grid(images, pad: int = 1, pad_value: int = 255) -> np.ndarray:
  """Tiles `[rows, cols, H, W, C]` images into one `[rows*(H+pad)+pad, cols*(W+pad)+pad, C]`.

  Single-channel images are repeated to RGB so every grid is an RGB PNG.
  """
  images = to_uint8(images)
  if images.ndim != 5:
    raise ValueError(f"make_grid wants [rows, cols, H, W, C], got shape {images.shape}")
  rows, cols, h, w, c = images.shape
  if c == 1:
    images, c = np.repeat(images, 3, axis=-1), 3
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
  for r in range(rows):
    for k in range(cols):
      y, x = pad + r * (h + pad), pad + k * (w + pad)
      grid[y:y + h, x:x + w] = images[r, k]
  return grid


def save_png(path: str, image) -> str:
  """Writes an `[H, W, C]` (uint8 or float [-1, 1]) image atomically; returns the path."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = to_uint8(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)
  return path
